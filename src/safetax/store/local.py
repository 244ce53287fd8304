"""Local directories: atomic publication with a ``COMPLETE`` marker, JSON helpers, the cache root.

A stage writes into a temporary sibling directory (``.<name>.tmp-<pid>-<nonce>``) and only a
finished directory, with a ``COMPLETE`` marker written last, is moved into place. A reader trusts
only directories with the marker, and listings never show temporary siblings (:func:`is_temp_name`).

Replacing an existing directory is rename-based (:func:`swap_in`): the new directory is complete
before anything happens to the old one; the two are exchanged in one ``renameat2(RENAME_EXCHANGE)``
where the kernel and filesystem offer it, else the old one is renamed aside and the new one renamed
in; the old copy is removed only after. A kill at any point leaves the old or the new directory
complete at ``final`` (on the two-rename fallback, a kill between the renames leaves ``final``
absent with both copies intact beside it), never half of one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"
FAILED = "FAILED"  # left, with the error's first line, in the output directory of a stage that failed
POINTER = "STORE_POINTER.json"  # left instead of the data when the run has a store (safetax.store.pointer)
# org/name, optionally pinned to a commit: org/name@<40 hex digits>
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?:@[0-9a-f]{40})?$")


class StoreError(ValueError):
    """A URI that does not resolve to anything usable."""


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


_TEMP_NAME = re.compile(r"^\..+\.((tmp|old)-\d+(-[0-9a-f]{8})?|lock)$")


def is_temp_name(name: str) -> bool:
    """Whether a file or directory name is one of our temporary siblings or lock files (never a published entry).

    >>> [is_temp_name(n) for n in (".ckpt.tmp-4711-0a1b2c3d", ".ckpt.old-12-deadbeef", ".x.json.tmp-9", ".x.json.lock",
    ...                            "ckpt", ".hidden")]
    [True, True, True, True, False, False]
    """
    return bool(_TEMP_NAME.match(name))


def temp_sibling(final: Path, kind: str = "tmp") -> Path:
    """A fresh temporary name beside ``final``: unique per process and call, so two writers (two pods
    sharing a volume may share a pid) never collide."""
    return final.parent / f".{final.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` (glibc >= 2.28), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``); False where the kernel,
    the filesystem or libc cannot (the caller falls back to two renames)."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, final: Path) -> None:
    """Put the finished directory ``new`` at ``final``; whatever was at ``final`` is removed after.

    See the module docstring for what a kill at each step leaves.
    """
    if not final.exists() and not final.is_symlink():
        try:
            os.rename(new, final)
            return
        except OSError as e:  # created in the meantime by another writer: swap with it
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
    if exchange(new, final):
        _remove(new)  # now holds the old directory
        return
    aside = temp_sibling(final, "old")
    os.rename(final, aside)
    os.rename(new, final)
    _remove(aside)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success mark it complete and swap it in at ``final`` (:func:`swap_in`).

    On failure the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE).write_text("")
        swap_in(tmp, final)
    finally:
        _remove(tmp)


@contextmanager
def file_lock(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created if missing) for the block: one process at a time
    on this machine (and across NFS clients, where Linux maps flock to byte-range locks). Lock files are
    never removed: removing one while another process waits on it would let a third one in."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def mark_failed(out_dir: Path, message: str, keep: Sequence[str] = ()) -> None:
    """Replace ``out_dir`` by a directory holding only ``FAILED`` (``message``) and the files named in
    ``keep`` that it holds (a failed stage's ``metrics.prom``): no partial output stays visible, and no
    ``COMPLETE`` marker, so no later stage reads it."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)
    tmp.mkdir()
    try:
        for name in keep:
            if (out_dir / name).is_file():
                shutil.copyfile(out_dir / name, tmp / name)
        (tmp / FAILED).write_text(message.rstrip("\n") + "\n", encoding="utf-8")
        swap_in(tmp, out_dir)
    finally:
        _remove(tmp)


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
    if (path / FAILED).is_file() and not is_complete(path):
        first = (path / FAILED).read_text(encoding="utf-8", errors="replace").partition("\n")[0]
        raise StoreError(f"{what}: {path} is the output of a stage that failed ({first})")
    if not is_complete(path):
        raise StoreError(f"{what}: {path} is not a complete stage output (no {COMPLETE} marker)")
    return path


def cache_root() -> Path:
    """``$SAFETAX_CACHE`` if set, else ``~/.cache/safetax``: the demo model and other derived data."""
    env = os.environ.get("SAFETAX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "safetax"
