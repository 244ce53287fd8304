"""Local directories: atomic publication with a ``COMPLETE`` marker, JSON helpers, the cache root.

A stage writes into a temporary sibling directory and only a finished
directory, with a ``COMPLETE`` marker written last, is moved into place. A
reader trusts only directories with the marker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"
POINTER = "STORE_POINTER.json"  # left instead of the data when the run has a store (safetax.store.pointer)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class StoreError(ValueError):
    """A URI that does not resolve to anything usable."""


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success mark it complete and move it to ``final``.

    On failure the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE).write_text("")
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def require_complete(path: Path, what: str) -> Path:
    """An input directory written by an earlier stage; refuse a half-written one, and a store pointer
    (whose data is in the store: read it through :func:`safetax.store.input_dir`)."""
    if (path / POINTER).is_file():
        raise StoreError(f"{what}: {path} holds a pointer to the run store, not the data; read it through "
                         "safetax.store.input_dir")
    if not is_complete(path):
        raise StoreError(f"{what}: {path} is not a complete stage output (no {COMPLETE} marker)")
    return path


def cache_root() -> Path:
    """``$SAFETAX_CACHE`` if set, else ``~/.cache/safetax``: the demo model and other derived data."""
    env = os.environ.get("SAFETAX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "safetax"
