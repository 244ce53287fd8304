"""One interface over the URIs that inputs and outputs are given as.

- a local path or ``file://`` path: the embedded default (laptop, local runner);
- ``s3://bucket/prefix``: MinIO or any S3 API (:mod:`safetax.store.s3`; endpoint and
  credentials from ``SAFETAX_S3_*`` environment variables);
- a hub id (``org/name``) for models and datasets, where the cluster is online (or the repo is in
  the local HF cache; :mod:`safetax.store.hub`); ``org/name@<commit>`` (40 hex digits) pins a model to one
  commit, loaded from that commit's snapshot whatever the main branch names later.

:func:`fetch` turns a local or ``s3://`` URI into a local path (downloading and caching ``s3://``
content by digest); :func:`local_model_dir` turns any model URI, hub ids included, into a local
directory with the model's files (what merge, analyze and the weight readers open);
:func:`resolve_model` gives what ``from_pretrained`` accepts (a hub id stays an id: a stage that
needs only the tokenizer downloads no weights); :func:`check_reachable` checks a URI cheaply before
any GPU pod starts; :func:`publish` stores a finished local directory under a URI with a manifest
written last; :func:`input_dir` reads an upstream stage's output, following the pointer a stage
leaves in its KFP artifact when the run has a store (:mod:`safetax.store.pointer`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from safetax.store.local import (
    COMPLETE,
    HUB_ID,
    StoreError,
    atomic_dir,
    cache_root,
    is_complete,
    read_json,
    require_complete,
    write_json,
)
from safetax.store.manifest import MANIFEST, Manifest
from safetax.store.pointer import POINTER, input_dir, leave_pointer
from safetax.store.uri import StoreURI, local_path, parse_store_uri

__all__ = [
    "COMPLETE", "HUB_ID", "MANIFEST", "POINTER", "Manifest", "StoreError", "StoreURI", "atomic_dir", "cache_root",
    "check_reachable", "fetch", "input_dir", "is_complete", "is_hub_id", "split_hub_id", "is_s3", "leave_pointer", "local_model_dir",
    "local_path", "parse_store_uri", "publish", "read_json", "require_complete", "resolve_model", "write_json",
]


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def is_hub_id(uri: str) -> bool:
    """True for ``org/name`` or ``org/name@<commit>`` (40 hex digits) that is not an existing local path (paths
    starting with /, ., ~, file:// or s3:// never match the pattern)."""
    return bool(HUB_ID.match(uri)) and not Path(uri).expanduser().exists()


def split_hub_id(uri: str) -> tuple[str, str | None]:
    """(repo id, pinned commit or None) of a hub id.

    >>> split_hub_id("org/name"), split_hub_id("org/name@" + "a" * 40)[1] == "a" * 40
    (('org/name', None), True)
    """
    repo, _, commit = uri.partition("@")
    return repo, commit or None


def fetch(uri: str, what: str) -> Path:
    """A local path for a local or ``s3://`` URI that must exist; ``what`` names the parameter in errors."""
    if parse_store_uri(uri, what).is_s3:
        from safetax.store.s3 import S3Store

        return S3Store().fetch(uri, cache_root() / "s3", what)
    path = local_path(uri, what)
    if not path.exists():
        raise StoreError(f"{what}: {uri!r} does not exist")
    return path



def publish(local_dir: Path, uri: str) -> Manifest:
    """Store a finished directory under ``uri`` (``s3://`` or a local path) with a manifest written last.

    A local republish is rename-based (:func:`~safetax.store.local.atomic_dir`): the new copy is complete
    before it is swapped in, and the old one is removed only after."""
    if parse_store_uri(uri, "publish").is_s3:
        from safetax.store.s3 import S3Store

        return S3Store().publish(local_dir, uri)
    manifest = Manifest.of_dir(Path(local_dir), upload_id="local")
    with atomic_dir(local_path(uri, "publish")) as tmp:
        shutil.copytree(local_dir, tmp, dirs_exist_ok=True)
        # Local entries sit at their own paths, not under an upload id.
        files = tuple(type(f)(path=f.path, key=f.path, sha256=f.sha256, size=f.size) for f in manifest.files)
        manifest = Manifest(upload_id=manifest.upload_id, created=manifest.created, files=files)
        (tmp / MANIFEST).write_text(manifest.to_json())
    return manifest


def local_model_dir(uri: str, what: str = "model") -> Path:
    """The local directory of a model (or adapter) given as a directory, ``file://`` path, ``s3://`` URI
    (downloaded and cached by digest) or hub id (downloaded to the HF cache; offline: found there)."""
    if parse_store_uri(uri, what).is_s3:
        path = fetch(uri, what)
    else:
        path = local_path(uri, what)
        if not path.exists() and is_hub_id(uri):
            from safetax.store.hub import snapshot

            path = snapshot(uri, what)
    if not path.exists():
        raise StoreError(f"{what}: {uri!r} does not exist (expected a model directory, an s3:// URI or a hub id 'org/name', "
                         "optionally pinned to a commit: 'org/name@<40 hex digits>')")
    if not path.is_dir():
        raise StoreError(f"{what}: {uri!r} is a file, not a model directory")
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise StoreError(f"{what}: {uri!r} is a directory without config.json or adapter_config.json")
    return path


def resolve_model(uri: str, what: str = "model") -> str:
    """A model reference that ``from_pretrained`` accepts: a hub id as it is (transformers downloads
    what it loads to the same HF cache), anything else (a pinned hub id ``org/name@<commit>`` too) as
    :func:`local_model_dir`."""
    if is_hub_id(uri) and split_hub_id(uri)[1] is None:
        return uri
    return str(local_model_dir(uri, what))


def check_reachable(uri: str, what: str, repo_type: str = "model") -> None:
    """Raise a StoreError naming ``what`` (the parameter) and ``uri`` unless the input can be read from
    here; cheap, nothing is downloaded. A local path must exist; an ``s3://`` URI must be a published
    directory, an object, or a file inside a published directory; a hub id (``repo_type`` "model" or
    "dataset") must be in the local HF cache when offline, else pass the hub's access check (gated
    and private repos need ``HF_TOKEN``)."""
    if not uri:
        raise StoreError(f"{what}: no URI given")
    if parse_store_uri(uri, what).is_s3:
        from safetax.store.s3 import S3Store

        S3Store(retries=2, backoff_s=0.2).check(uri, what)
        return
    path = local_path(uri, what)
    if path.exists():
        return
    if is_hub_id(uri):
        from safetax.store.hub import check

        check(uri, what, repo_type)
        return
    raise StoreError(f"{what}: {uri!r} does not exist (expected a local path, an s3:// URI or a hub id 'org/name')")
