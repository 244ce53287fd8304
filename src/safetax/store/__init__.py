"""One interface over the URIs that inputs and outputs are given as.

- a local path or ``file://`` path: the embedded default (laptop, local runner);
- ``s3://bucket/prefix``: MinIO or any S3 API (:mod:`safetax.store.s3`; endpoint and
  credentials from ``SAFETAX_S3_*`` environment variables);
- a hub id (``org/name``) for models and datasets, where the cluster is online.

:func:`fetch` turns any of them into a local path (downloading and caching
``s3://`` content by digest); :func:`publish` stores a finished local directory
under a URI with a manifest written last; :func:`resolve_model` gives what
``from_pretrained`` accepts.
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

__all__ = [
    "COMPLETE", "HUB_ID", "MANIFEST", "Manifest", "StoreError", "atomic_dir", "cache_root", "fetch", "is_complete",
    "is_hub_id", "is_s3", "publish", "read_json", "require_complete", "resolve_model", "write_json",
]


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def is_hub_id(uri: str) -> bool:
    """True for ``org/name`` that is not an existing local path (paths starting with /, ., ~,
    file:// or s3:// never match the pattern)."""
    return bool(HUB_ID.match(uri)) and not Path(uri).expanduser().exists()


def fetch(uri: str, what: str) -> Path:
    """A local path for a local or ``s3://`` URI that must exist; ``what`` names the parameter in errors."""
    if is_s3(uri):
        from safetax.store.s3 import S3Store

        return S3Store().fetch(uri, cache_root() / "s3", what)
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.exists():
        raise StoreError(f"{what}: {uri!r} does not exist")
    return path



def publish(local_dir: Path, uri: str) -> Manifest:
    """Store a finished directory under ``uri`` (``s3://`` or a local path) with a manifest written last."""
    if is_s3(uri):
        from safetax.store.s3 import S3Store

        return S3Store().publish(local_dir, uri)
    manifest = Manifest.of_dir(Path(local_dir), upload_id="local")
    with atomic_dir(Path(uri.removeprefix("file://")).expanduser()) as tmp:
        shutil.copytree(local_dir, tmp, dirs_exist_ok=True)
        # Local entries sit at their own paths, not under an upload id.
        files = tuple(type(f)(path=f.path, key=f.path, sha256=f.sha256, size=f.size) for f in manifest.files)
        manifest = Manifest(upload_id=manifest.upload_id, created=manifest.created, files=files)
        (tmp / MANIFEST).write_text(manifest.to_json())
    return manifest


def resolve_model(uri: str, what: str = "model") -> str:
    """A model reference that ``from_pretrained`` accepts: a local directory (``s3://`` ones downloaded
    and cached first) or a hub id."""
    if is_s3(uri):
        path = fetch(uri, what)
    else:
        path = Path(uri.removeprefix("file://")).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise StoreError(f"{what}: {uri!r} is a directory without config.json or adapter_config.json")
        return str(path)
    if not is_hub_id(uri):
        raise StoreError(f"{what}: {uri!r} does not exist (expected a model directory, an s3:// URI or a hub id 'org/name')")
    return uri
