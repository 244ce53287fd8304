"""A seccomp-BPF filter for model-written code (Linux, x86_64 and aarch64; stdlib only).

Installed by the jail (``jail.py``) as the last step before ``exec``, after ``PR_SET_NO_NEW_PRIVS``; it
cannot be removed and is inherited by every child. It works without privileges and without user
namespaces, so it also holds where the namespaces are refused. Denied (errno EPERM, ``clone3`` ENOSYS so
that libc falls back to ``clone``):

- escapes: creating any socket (``socketpair`` stays), ``ptrace``, ``process_vm_*``, ``kcmp``,
  ``pidfd_getfd``, ``process_madvise``, ``clone``/``unshare``/``setns`` with namespace flags, every mount
  call, ``chroot``, ``setsid``/``setpgid`` (leaving the process group the scorer kills), ``io_uring`` (which
  creates sockets and opens files past a syscall filter), ``bpf``, ``perf_event_open``, ``userfaultfd``,
  the kernel keyring, ``open_by_handle_at``/``name_to_handle_at``, ``fanotify_init``;
- the system's state, should the code keep a capability: kernel log, host and domain names, clocks,
  reboot, kernel modules, kexec, I/O ports, swap, process accounting, quotas, ``vhangup``;
- System V and POSIX message-queue IPC (``shm*``, ``sem*``, ``msg*``, ``mq_*``): without an IPC namespace
  two runs could pass each other outputs through a segment that outlives them;
- acting on another process: ``prlimit64``, ``sched_setaffinity``/``setscheduler``/``setparam``/``setattr``,
  ``migrate_pages`` and ``move_pages`` unless their pid is 0 (self), ``setpriority`` and ``ioprio_set``
  unless they name the calling process (0);
- with ``no_processes``: ``fork``, ``vfork`` and ``clone`` (errno EAGAIN, like ``RLIMIT_NPROC``, which
  binds no uid 0 process).

Another architecture, or the x32 ABI, gets the whole process killed (x32: ENOSYS).
"""

from __future__ import annotations

import ctypes
import os
import platform

# name -> (x86_64, aarch64) syscall number; None: not on that architecture. From 424 on the same everywhere.
_NR: dict[str, tuple[int | None, int | None]] = {
    "socket": (41, 198), "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kcmp": (312, 272), "pidfd_getfd": (438, 438), "process_madvise": (440, 440), "unshare": (272, 97),
    "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442), "setsid": (112, 157),
    "setpgid": (109, 154), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "fanotify_init": (300, 262),
    # the system's state
    "syslog": (103, 116), "sethostname": (170, 161), "setdomainname": (171, 162), "settimeofday": (164, 170),
    "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171), "reboot": (169, 142),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "iopl": (172, None), "ioperm": (173, None), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "vhangup": (153, 58), "lookup_dcookie": (212, 18),
    # IPC
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "shmdt": (67, 197), "semget": (64, 190),
    "semop": (65, 193), "semtimedop": (220, 192), "semctl": (66, 191), "msgget": (68, 186), "msgsnd": (69, 189),
    "msgrcv": (70, 188), "msgctl": (71, 187), "mq_open": (240, 180), "mq_unlink": (241, 181),
    "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183), "mq_notify": (244, 184),
    "mq_getsetattr": (245, 185),
    # filtered on their arguments, or with no_processes
    "prlimit64": (302, 261), "sched_setaffinity": (203, 122), "sched_setscheduler": (144, 119),
    "sched_setparam": (142, 118), "sched_setattr": (314, 274), "migrate_pages": (256, 238),
    "move_pages": (279, 239), "setpriority": (141, 140), "ioprio_set": (251, 30), "clone": (56, 220),
    "clone3": (435, 435), "fork": (57, None), "vfork": (58, None),
}
_SELF_ONLY: dict[str, tuple[tuple[int, int], ...]] = {  # syscall -> (argument, value) pairs that name the caller
    "prlimit64": ((0, 0),), "sched_setaffinity": ((0, 0),), "sched_setscheduler": ((0, 0),),
    "sched_setparam": ((0, 0),), "sched_setattr": ((0, 0),), "migrate_pages": ((0, 0),), "move_pages": ((0, 0),),
    "setpriority": ((0, 0), (1, 0)),  # PRIO_PROCESS, who = 0
    "ioprio_set": ((0, 1), (1, 0)),  # IOPRIO_WHO_PROCESS, who = 0
}
_DENY = tuple(n for n in _NR if n not in _SELF_ONLY and n not in ("clone", "clone3", "fork", "vfork"))
_PROCESSES = ("fork", "vfork", "clone")
_ARCH = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}  # machine -> (AUDIT_ARCH_*, column of _NR)
_NS_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _EAGAIN, _ENOSYS = 1, 11, 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
Insn = tuple[int, int, int, int]


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def supported() -> bool:
    """Whether this machine's architecture has a filter here."""
    return platform.machine() in _ARCH


def _ret_if(nr: int | None, action: int) -> list[Insn]:
    return [] if nr is None else [(_JEQ, 0, 1, nr), (_RET, 0, 0, action)]


def _self_only(nr: int | None, conds: tuple[tuple[int, int], ...]) -> list[Insn]:
    """Allow syscall ``nr`` only when each argument (its low 32 bits: a pid or an int) has the given value."""
    if nr is None:
        return []
    block: list[Insn] = [(_JEQ, 0, 2 * len(conds) + 2, nr)]  # another syscall: skip this block
    for k, (arg, value) in enumerate(conds):
        block += [(_LD_W_ABS, 0, 0, 16 + 8 * arg), (_JEQ, 0, 2 * (len(conds) - k - 1) + 1, value)]
    return block + [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _ERRNO | _EPERM)]


def program(machine: str, no_processes: bool = False) -> list[Insn]:
    """The filter as (code, jt, jf, k) instructions over ``struct seccomp_data`` (nr at 0, arch at 4, args at 16).

    >>> prog = program("aarch64")
    >>> prog[:3] == [(0x20, 0, 0, 4), (0x15, 1, 0, 0xC00000B7), (0x06, 0, 0, 0x80000000)]
    True
    >>> len(program("x86_64", no_processes=True)) - len(program("x86_64"))  # fork, vfork, clone
    6
    """
    arch, col = _ARCH[machine]
    nr = {name: nums[col] for name, nums in _NR.items()}
    prog: list[Insn] = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, _KILL_PROCESS), (_LD_W_ABS, 0, 0, 0)]
    if machine == "x86_64":  # x32 syscalls have bit 30 set
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _ERRNO | _ENOSYS)]
    prog += _ret_if(nr["clone3"], _ERRNO | _ENOSYS)
    for name in _DENY:
        prog += _ret_if(nr[name], _ERRNO | _EPERM)
    for name in _PROCESSES if no_processes else ():
        prog += _ret_if(nr[name], _ERRNO | _EAGAIN)
    for name, conds in _SELF_ONLY.items():  # each block ends in a return: the accumulator is reloaded per block
        prog += _self_only(nr[name], conds)
    # clone: allowed unless its flags (args[0], low 32 bits) ask for a new namespace
    prog += [(_JEQ, 0, 3, nr["clone"]), (_LD_W_ABS, 0, 0, 16), (_JSET, 0, 1, _NS_FLAGS),
             (_RET, 0, 0, _ERRNO | _EPERM), (_RET, 0, 0, _ALLOW)]
    return prog


def install(no_processes: bool = False) -> None:
    """Install the filter on the calling thread (and its future children); needs ``PR_SET_NO_NEW_PRIVS`` set."""
    insns = program(platform.machine(), no_processes)
    arr = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    prog = _Prog(len(insns), arr)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")
