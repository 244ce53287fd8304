"""The content digest of a model (or adapter) reference: what the generation and verdict caches key on.

- a published directory (``s3://`` or local, with ``MANIFEST.json``): its manifest's digest (the files' sha256);
- a snapshot directory in the HF cache (``.../models--org--name/snapshots/<commit>``): the digest of
  ``hub:org/name@<commit>`` (a commit names its files exactly; no file is read);
- any other local directory: the digest of its files (:meth:`Manifest.of_dir`);
- a hub id not resolved to a snapshot: the digest of ``hub:<id>`` (the audit's identity of a hub checkpoint; the
  caches never key on it: the generate and judge stages resolve a hub id to its snapshot directory first, see
  :func:`safetax.store.local_model_dir`, so the weights they load are the ones their keys name).

>>> hub_snapshot(Path("/hf/hub/models--org--tiny/snapshots/0123456789abcdef0123456789abcdef01234567"))
('org/tiny', '0123456789abcdef0123456789abcdef01234567')
>>> hub_snapshot(Path("/models/tiny")) is None
True
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from safetax.store import is_hub_id
from safetax.store.local import StoreError
from safetax.store.uri import local_path, parse_store_uri
from safetax.store.manifest import MANIFEST, Manifest

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_snapshot(path: Path) -> tuple[str, str] | None:
    """(repo id, commit) of a snapshot directory in the HF cache layout, else None."""
    repo, snapshots = path.parent.parent.name, path.parent.name
    if snapshots != "snapshots" or not repo.startswith("models--") or not _COMMIT.match(path.name):
        return None
    return repo.removeprefix("models--").replace("--", "/"), path.name


def content_digest(uri: str, what: str = "model") -> str:
    """The digest of the weights ``uri`` names (see the module docstring); a StoreError naming ``what`` otherwise."""
    parsed = parse_store_uri(uri, what)
    if parsed.is_s3:
        from safetax.store.objects import read_text

        text = read_text(f"{uri.rstrip('/')}/{MANIFEST}")
        if text is None:
            raise StoreError(f"{what}: {uri!r} has no {MANIFEST} (not a complete published directory)")
        return Manifest.from_json(text, uri).digest
    path = local_path(uri, what)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return Manifest.from_json((path / MANIFEST).read_text(), str(path / MANIFEST)).digest
        pinned = hub_snapshot(path.resolve())
        if pinned is not None:
            return hashlib.sha256(f"hub:{pinned[0]}@{pinned[1]}".encode()).hexdigest()
        return Manifest.of_dir(path, upload_id="local").digest
    if is_hub_id(uri):
        return hashlib.sha256(f"hub:{uri}".encode()).hexdigest()
    raise StoreError(f"{what}: {uri!r} is neither a directory, an s3:// published directory nor a hub id")
