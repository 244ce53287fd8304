"""A seccomp-BPF deny list for model-written code (Linux, x86_64 and aarch64; stdlib only).

Installed by the jail (``jail.py``) as the last step before ``exec``, after ``PR_SET_NO_NEW_PRIVS``; it
cannot be removed and is inherited by every child. It works without privileges and without user
namespaces, so it also holds where the namespaces are refused. Denied (errno EPERM, ``clone3`` ENOSYS so
that libc falls back to ``clone``): creating any socket (``socketpair`` stays), ``ptrace`` and
``process_vm_*`` (reading other processes' memory), ``clone``/``unshare``/``setns`` with namespace flags,
every mount call, ``setsid``/``setpgid`` (leaving the process group the scorer kills), ``io_uring``
(which creates sockets and opens files past a syscall filter), ``bpf``, ``perf_event_open``,
``userfaultfd``, the kernel keyring and ``open_by_handle_at``. Another architecture, or the x32 ABI,
gets the whole process killed (x32: ENOSYS).
"""

from __future__ import annotations

import ctypes
import os
import platform

_DENY = ("socket", "ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount", "umount2",
         "pivot_root", "chroot", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
         "setsid", "setpgid", "open_by_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register",
         "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")
_NEW = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "mount_setattr": 442}
# machine -> (AUDIT_ARCH_*, syscall numbers); the numbers from 424 on are the same on every architecture.
_ARCH: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {"socket": 41, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
                            "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
                            "chroot": 161, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
                            "add_key": 248, "request_key": 249, "setsid": 112, "setpgid": 109, "clone": 56,
                            "open_by_handle_at": 304, **_NEW}),
    "aarch64": (0xC00000B7, {"socket": 198, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
                             "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
                             "chroot": 51, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219,
                             "add_key": 217, "request_key": 218, "setsid": 157, "setpgid": 154, "clone": 220,
                             "open_by_handle_at": 265, **_NEW}),
}
_NS_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def supported() -> bool:
    """Whether this machine's architecture has a filter here."""
    return platform.machine() in _ARCH


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions over ``struct seccomp_data`` (nr at 0, arch at 4, args at 16)."""
    arch, nr = _ARCH[machine]
    prog = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, _KILL_PROCESS), (_LD_W_ABS, 0, 0, 0)]
    if machine == "x86_64":  # x32 syscalls have bit 30 set
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _ERRNO | _ENOSYS)]
    prog += [(_JEQ, 0, 1, nr["clone3"]), (_RET, 0, 0, _ERRNO | _ENOSYS)]
    for name in _DENY:
        prog += [(_JEQ, 0, 1, nr[name]), (_RET, 0, 0, _ERRNO | _EPERM)]
    # clone: allowed unless its flags (args[0], low 32 bits) ask for a new namespace
    prog += [(_JEQ, 0, 3, nr["clone"]), (_LD_W_ABS, 0, 0, 16), (_JSET, 0, 1, _NS_FLAGS),
             (_RET, 0, 0, _ERRNO | _EPERM), (_RET, 0, 0, _ALLOW)]
    return prog


def install() -> None:
    """Install the filter on the calling thread (and its future children); needs ``PR_SET_NO_NEW_PRIVS`` set."""
    insns = program(platform.machine())
    arr = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    prog = _Prog(len(insns), arr)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")
