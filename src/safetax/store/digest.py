"""The identity of a model (or adapter) reference: what the generation and verdict caches key on, and what the audit
ledger records. One reference, one digest, wherever it is read:

- a published directory (``s3://`` or local, with ``MANIFEST.json``): its manifest's digest (the files' sha256);
- a snapshot directory in the HF cache (``.../models--org--name/snapshots/<commit>``): the digest of
  ``hub:org/name@<commit>`` (a commit names its files exactly; no file is read);
- a hub id (``org/name``): the same digest for the commit its main branch names now (:func:`safetax.store.hub.revision`:
  one metadata request, or the local HF cache's ``refs/main`` offline), so a new revision is a new model; a pinned
  id (``org/name@<commit>``) for its commit. :attr:`ModelIdentity.pinned` names the identified weights exactly
  (``org/name@<commit>``), so a later stage loads what was identified even after a new push;
- any other local directory: the digest of its files (:meth:`Manifest.of_dir`).

>>> hub_snapshot(Path("/hf/hub/models--org--tiny/snapshots/0123456789abcdef0123456789abcdef01234567"))
('org/tiny', '0123456789abcdef0123456789abcdef01234567')
>>> hub_snapshot(Path("/models/tiny")) is None
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from safetax.store import is_hub_id, split_hub_id
from safetax.store.local import StoreError
from safetax.store.uri import local_path, parse_store_uri
from safetax.store.manifest import MANIFEST, Manifest

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelIdentity:
    digest: str
    files: tuple[str, ...] | None  # paths relative to the directory when known without a download; None for a hub id
    pinned: str  # the URI of exactly these weights: a hub id pinned to the identified commit, any other URI as given


def hub_snapshot(path: Path) -> tuple[str, str] | None:
    """(repo id, commit) of a snapshot directory in the HF cache layout, else None."""
    repo, snapshots = path.parent.parent.name, path.parent.name
    if snapshots != "snapshots" or not repo.startswith("models--") or not _COMMIT.match(path.name):
        return None
    return repo.removeprefix("models--").replace("--", "/"), path.name


def _hub_digest(repo_id: str, commit: str) -> str:
    return hashlib.sha256(f"hub:{repo_id}@{commit}".encode()).hexdigest()


def identify(uri: str, what: str = "model") -> ModelIdentity:
    """The digest of the weights ``uri`` names (see the module docstring) and its files; a StoreError naming
    ``what`` (the parameter) and the URI otherwise."""
    parsed = parse_store_uri(uri, what)
    if parsed.is_s3:
        from safetax.store.objects import read_text

        text = read_text(f"{uri.rstrip('/')}/{MANIFEST}")
        if text is None:
            raise StoreError(f"{what}: {uri!r} has no {MANIFEST} (not a complete published directory)")
        return _of_manifest(Manifest.from_json(text, uri), uri)
    path = local_path(uri, what)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return _of_manifest(Manifest.from_json((path / MANIFEST).read_text(), str(path / MANIFEST)), uri)
        pinned = hub_snapshot(path.resolve())
        if pinned is not None:
            return ModelIdentity(_hub_digest(*pinned), tuple(sorted(p.name for p in path.iterdir() if p.is_file())), uri)
        return _of_manifest(Manifest.of_dir(path, upload_id="local"), uri)
    if is_hub_id(uri):
        from safetax.store.hub import revision

        repo, commit = split_hub_id(uri)[0], revision(uri, what)
        return ModelIdentity(_hub_digest(repo, commit), None, f"{repo}@{commit}")
    raise StoreError(f"{what}: {uri!r} is neither a directory, an s3:// published directory nor a hub id")


def content_digest(uri: str, what: str = "model") -> str:
    """The digest of the weights ``uri`` names (see the module docstring)."""
    return identify(uri, what).digest


def _of_manifest(manifest: Manifest, uri: str) -> ModelIdentity:
    return ModelIdentity(manifest.digest, tuple(f.path for f in manifest.files), uri)
