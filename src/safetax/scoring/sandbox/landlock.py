"""Landlock (Linux >= 5.13): a process limits its own file, TCP and signal reach, without privileges (stdlib only).

Used by the jail (``jail.py``): the code may read and execute under the interpreter's directories, read and
write in its working directory and ``/dev/null`` & co., and nothing else (no ``/proc``, home, cache, data,
service-account token). With ABI >= 4 it may not bind or connect TCP sockets; with ABI >= 6 it may not
signal, or connect to abstract Unix sockets of, processes outside its sandbox. Rights a kernel's ABI does
not know stay unrestricted (e.g. ``truncate`` before ABI 3); the ABI in force is logged by the scorer.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Sequence

_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446  # syscall numbers, the same on every architecture
_RULE_PATH_BENEATH = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing, disabled, or refused by a seccomp profile."""
    v = _libc.syscall(_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return int(v) if v > 0 else 0


def _fs_rights(version: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    rights |= (1 << 13) if version >= 2 else 0  # refer
    rights |= _TRUNCATE if version >= 3 else 0
    rights |= _IOCTL_DEV if version >= 5 else 0
    return rights


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return ret


def prepare(version: int, read: Sequence[str], write: Sequence[str], devices: Sequence[str]) -> int:
    """A ruleset fd: read+execute beneath ``read``, everything beneath ``write``, read/write on ``devices``.

    Opens the paths now (call it before dropping privileges); missing paths are skipped.
    """
    handled = _fs_rights(version)
    file_rights = handled & (_EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV)
    attr = _RulesetAttr(handled, _NET_BIND_TCP | _NET_CONNECT_TCP if version >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if version >= 6 else 0)
    size = 8 if version < 4 else 16 if version < 6 else 24
    ruleset = _check(_libc.syscall(_CREATE, ctypes.byref(attr), size, 0), "create_ruleset")
    rules = [(p, _EXECUTE | _READ_FILE | _READ_DIR) for p in read] + [(p, handled) for p in write]
    rules += [(p, _READ_FILE | _WRITE_FILE) for p in devices]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            allowed = rights & (handled if stat.S_ISDIR(os.fstat(fd).st_mode) else file_rights)
            rule = _PathBeneath(allowed, fd)
            _check(_libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0), f"add_rule {path}")
        finally:
            os.close(fd)
    return ruleset


def restrict(ruleset: int) -> None:
    """Enforce the ruleset on the calling thread and its future children (needs ``PR_SET_NO_NEW_PRIVS``)."""
    try:
        _check(_libc.syscall(_RESTRICT, ruleset, 0), "restrict_self")
    finally:
        os.close(ruleset)
