"""One copy of each artifact: with a run store, a stage's KFP output holds a pointer to the store's copy.

With ``store_uri`` set, :func:`safetax.stages.runtime.stage_run` publishes a finished output directory
to ``<store>/<run id>/<stage>/<method>`` and then replaces the KFP artifact directory (in the
pipeline root) by :data:`POINTER` (the store URI and the digest of its manifest) plus the output's
small top-level reports, tables, plots and metrics (:data:`KEEP_SUFFIXES`, up to :data:`KEEP_BYTES`
each: what people open from the KFP UI; data such as ``*.jsonl`` stays in the store only). The store holds the data once: manifests with sha256, resumable
downloads cached by digest, readable by audits and later runs. Without a store nothing changes.

Every stage reads an upstream output through :func:`input_dir`: a plain directory as it is (refused
unless complete), a pointer as the store's copy: a local store's directory itself, an ``s3://`` one
downloaded into the digest cache (``$SAFETAX_CACHE/s3``), only the files the stage names if it names
any (merge reads one epoch of a training run, the gate one checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from safetax.store.local import POINTER, StoreError, atomic_dir, cache_root, require_complete
from safetax.store.manifest import MANIFEST, Manifest
from safetax.store.uri import local_path, parse_store_uri

FORMAT = 1
KEEP_BYTES = 1 << 20  # top-level files up to 1 MiB of these kinds stay beside the pointer
KEEP_SUFFIXES = (".md", ".csv", ".json", ".png", ".prom", ".html", ".txt")


@dataclass(frozen=True)
class Pointer:
    uri: str  # where the store holds the output
    digest: str  # its manifest's digest: the content it had when the stage finished
    files: int
    bytes: int
    kept: tuple[str, ...]  # the small files also left in the KFP artifact


def read_pointer(path: Path) -> Pointer | None:
    """The pointer a stage left in ``path``, or None for a plain output directory."""
    file = Path(path) / POINTER
    if not file.is_file():
        return None
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
        if d.get("format") != FORMAT:
            raise StoreError(f"{file}: pointer format {d.get('format')!r} is not {FORMAT}")
        return Pointer(uri=d["uri"], digest=d["digest"], files=int(d["files"]), bytes=int(d["bytes"]), kept=tuple(d["kept"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{file}: not a store pointer ({type(e).__name__}: {e})") from None


def leave_pointer(out_dir: Path, uri: str, manifest: Manifest) -> Pointer:
    """Replace a published output directory by its pointer and its small top-level files (in one step:
    a failure leaves the directory as it was)."""
    out_dir = Path(out_dir)
    kept = sorted(p.name for p in out_dir.iterdir() if p.is_file() and not p.is_symlink() and p.suffix in KEEP_SUFFIXES
                  and p.stat().st_size <= KEEP_BYTES)
    ptr = Pointer(uri=uri, digest=manifest.digest, files=len(manifest.files), bytes=manifest.total_bytes, kept=tuple(kept))
    with atomic_dir(out_dir) as tmp:
        for name in kept:
            try:
                os.link(out_dir / name, tmp / name)
            except OSError:
                shutil.copyfile(out_dir / name, tmp / name)
        (tmp / POINTER).write_text(json.dumps({"format": FORMAT, **asdict(ptr)}, indent=2, sort_keys=True) + "\n")
    return ptr


def input_dir(path: Path, what: str, only: Sequence[str] | None = None) -> Path:
    """The local directory of an upstream stage's output ``path`` (a KFP input artifact's path).

    A plain directory must be complete (``COMPLETE`` marker) and is returned as it is. A directory
    holding a store pointer resolves to the store's copy, checked against the pointer's manifest
    digest. ``only`` (paths or directory prefixes inside the output, e.g. ``["checkpoints.json",
    "epoch-3"]``) limits an ``s3://`` download to those files; every subset of one output lands in
    the same directory, so paths from an earlier call stay valid. ``what`` names the input in errors.
    """
    ptr = read_pointer(Path(path))
    if ptr is None:
        return require_complete(Path(path), what)
    if parse_store_uri(ptr.uri, what).is_s3:
        from safetax.store.s3 import S3Store

        return S3Store().fetch_published(ptr.uri, ptr.digest, cache_root() / "s3", what, only)
    return _local_copy(ptr, what)


def _local_copy(ptr: Pointer, what: str) -> Path:
    root = local_path(ptr.uri, what)
    if not (root / MANIFEST).is_file():
        raise StoreError(f"{what}: {ptr.uri} has no {MANIFEST}: the published output is gone")
    digest = Manifest.from_json((root / MANIFEST).read_text(encoding="utf-8"), str(root / MANIFEST)).digest
    if digest != ptr.digest:
        raise StoreError(f"{what}: {ptr.uri} was republished with other content since the pointer was written "
                         f"(manifest digest {digest[:12]}..., the pointer's {ptr.digest[:12]}...)")
    return require_complete(root, what)
