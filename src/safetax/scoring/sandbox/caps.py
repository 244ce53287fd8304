"""Capabilities: the jail leaves the code none, not even when it runs as uid 0 (stdlib only).

Where the scorer is root and neither the namespaces nor the uid layer are in force, the code would run as
root with every capability of the scorer (read the kernel log, set the clock or the host name, load
modules, raise its own limits). Two steps, around the change of uid:

1. :func:`bound` (needs ``CAP_SETPCAP``, i.e. while still privileged): empty the bounding set, so that no
   ``execve`` can ever grant a capability again, and lock the securebits: ``NOROOT`` (uid 0 gains nothing
   at ``execve``), setuid fix-up on (a change of uid clears the capabilities), no keep-caps, no ambient ones.
2. :func:`clear`: clear the ambient set and ``capset`` the effective, permitted and inheritable sets to
   zero, then check with ``capget`` that they are.

Without ``CAP_SETPCAP`` (any non-root scorer) step 1 is skipped: such a process has no capability to lose,
and ``PR_SET_NO_NEW_PRIVS`` keeps ``execve`` from adding any.
"""

from __future__ import annotations

import ctypes
import os

_PR_CAPBSET_READ, _PR_CAPBSET_DROP, _PR_GET_SECUREBITS, _PR_SET_SECUREBITS = 23, 24, 27, 28
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_SETPCAP = 8
_VERSION_3 = 0x20080522
_NOROOT, _NOROOT_LOCKED, _NO_SETUID_FIXUP_LOCKED, _KEEP_CAPS_LOCKED = 1 << 0, 1 << 1, 1 << 3, 1 << 5
_NO_CAP_AMBIENT_RAISE, _NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 6, 1 << 7
SECUREBITS = (_NOROOT | _NOROOT_LOCKED | _NO_SETUID_FIXUP_LOCKED | _KEEP_CAPS_LOCKED | _NO_CAP_AMBIENT_RAISE
              | _NO_CAP_AMBIENT_RAISE_LOCKED)
_libc = ctypes.CDLL(None, use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def current() -> tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) capability masks."""
    data = (_Data * 2)()
    if _libc.capget(ctypes.byref(_Header(_VERSION_3, 0)), data) != 0:
        raise _fail("capget")
    return tuple(d0 | (d1 << 32) for d0, d1 in ((data[0].effective, data[1].effective),  # type: ignore[return-value]
                                                 (data[0].permitted, data[1].permitted),
                                                 (data[0].inheritable, data[1].inheritable)))


def bounding_set() -> int:
    """The bounding set as a mask (capabilities up to the kernel's last one)."""
    mask = 0
    for cap in range(64):
        ret = _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0)
        if ret < 0:
            break
        mask |= (1 << cap) if ret else 0
    return mask


def bound() -> bool:
    """Empty the bounding set and lock the securebits; False (nothing done) without ``CAP_SETPCAP``."""
    if not current()[0] & (1 << _CAP_SETPCAP):
        return False
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
            raise _fail(f"drop capability {cap} from the bounding set")
    if _libc.prctl(_PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) != 0:
        raise _fail("securebits")
    return True


def clear() -> None:
    """Drop every capability of the calling thread (ambient, effective, permitted, inheritable) and check it."""
    if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
        raise _fail("clear ambient capabilities")
    if _libc.capset(ctypes.byref(_Header(_VERSION_3, 0)), (_Data * 2)()) != 0:
        raise _fail("capset")
    left = current()
    if any(left):
        raise OSError(f"capabilities left after capset: {left}")
