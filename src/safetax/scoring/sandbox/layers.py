"""Which isolation this machine allows model-written code: probed once per process, logged once.

The layers, strongest first; each is tried and dropped, with the reason, when the kernel or the container
refuses it (the log line and ``Isolation.describe()`` say which are in force):

- ``namespaces``: user (when not root), mount, network, PID, IPC and UTS namespaces and a new root that
  holds only the interpreter's directories: the code sees no host file, no ``/proc``, no network and no
  other process, and its whole process tree dies with it. Needs root, or unprivileged user namespaces
  (often refused by a container runtime's default seccomp profile or by AppArmor).
- ``uid``: when the scorer runs as root, the code runs as uid/gid 65534 without groups. Without it (and
  without namespaces) the code runs as uid 0: still without any capability (the jail drops them all,
  :mod:`.caps`), but owner of root's files and of no other uid's, so this state is logged as a warning.
- ``landlock``: file access limited to reading the interpreter's directories and writing the working
  directory (without the namespaces: only reading it); no TCP (ABI >= 4); no signals to processes
  outside the sandbox (ABI >= 6). Works without privileges where the kernel has Landlock and the seccomp
  profile allows its three syscalls.
- ``seccomp``: no sockets, ptrace, namespaces, mounts, io_uring, setsid, System V or POSIX message-queue
  IPC, kernel or system settings, no limits or scheduling of other processes, no new process
  (:mod:`.seccomp`).

Always: an empty environment, no capabilities, resource limits (no new processes: ``RLIMIT_NPROC`` binds
every non-root uid), and the scorer made non-dumpable, so that no process of its uid can read its memory
or its ``/proc/<pid>/environ`` (it does not protect against root).

Operators: ``SAFETAX_SANDBOX_REQUIRE=namespaces,landlock,seccomp,uid`` (any subset) makes scoring fail
when a listed layer is not in force (a root scorer should list ``uid``, or ``namespaces``);
``SAFETAX_SANDBOX_DISABLE`` (same names) switches layers off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Collection
from dataclasses import dataclass, replace

from safetax.scoring.sandbox import landlock, seccomp

log = logging.getLogger(__name__)
NOBODY = 65534  # uid/gid of the code when the scorer is root
LAYERS = ("namespaces", "uid", "landlock", "seccomp")
_PROBE = "import sys; sys.stdout.write('safetax-sandbox-probe')"
_PR_SET_DUMPABLE, _PR_GET_DUMPABLE = 4, 3
_lock = threading.Lock()
_current: Isolation | None = None


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (the scorer's failure, never the code's)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"code sandbox: {step}: {message}")
        self.step = step


@dataclass(frozen=True)
class Isolation:
    """The isolation layers in force for sandboxed code."""

    namespaces: bool = False  # mount, network, PID, IPC, UTS namespaces and a new root
    user_ns: bool = False  # ... created in a user namespace (the scorer is not root)
    uid: int | None = None  # the code's uid when the scorer is root; None: the scorer's own uid
    landlock: int = 0  # the Landlock ABI in force; 0: off
    seccomp: bool = False
    notes: tuple[str, ...] = ()  # why a layer is off

    @property
    def hides_host_files(self) -> bool:
        """The code can open no file outside its sandbox (data, cache, secrets, ``/proc``)."""
        return self.namespaces or self.landlock > 0

    @property
    def protects_cache(self) -> bool:
        """The code can neither read nor write the scorer's 0700 cache directory."""
        return self.hides_host_files or self.uid is not None

    def has(self, layer: str) -> bool:
        return {"namespaces": self.namespaces, "uid": self.uid is not None, "landlock": self.landlock > 0,
                "seccomp": self.seccomp}[layer]

    def describe(self) -> str:
        parts = []
        if self.namespaces:
            parts.append(f"{'user+' if self.user_ns else ''}mount+net+pid+ipc+uts namespaces with a new root")
        if self.uid is not None:
            parts.append(f"uid {self.uid}")
        if self.landlock:
            scope = (", no tcp" if self.landlock >= 4 else "") + (", no outside signals" if self.landlock >= 6 else "")
            parts.append(f"landlock ABI {self.landlock} (files{scope})")
        if self.seccomp:
            parts.append("seccomp (no sockets, ptrace, namespaces, mounts, IPC, other processes' limits)")
        parts.append("empty environment, no capabilities, rlimits, scorer non-dumpable")
        off = [layer for layer in LAYERS if not self.has(layer) and (layer != "uid" or os.geteuid() == 0)]
        text = ", ".join(parts)
        if not off:
            return text
        return text + f"; OFF: {', '.join(off)}" + (f" ({'; '.join(self.notes)})" if self.notes else "")


def strong_enough(iso: Isolation, euid: int | None = None) -> bool:
    """Whether ``iso`` is logged at INFO: host files hidden, seccomp on, the code not root (uid layer or namespaces).

    >>> strong_enough(Isolation(landlock=7, seccomp=True), euid=1000)
    True
    >>> strong_enough(Isolation(landlock=7, seccomp=True), euid=0)  # root scorer, code as uid 0
    False
    """
    root = (os.geteuid() if euid is None else euid) == 0
    return iso.hides_host_files and iso.seccomp and not (root and iso.uid is None and not iso.namespaces)


def harden_parent() -> bool:
    """Make the scorer non-dumpable: no process of its uid may ptrace it or read its memory or environ."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


def _layer_of(step: str, plan: Isolation) -> str | None:
    """The layer to drop after a failure at ``step`` (or of the interpreter, step "exec")."""
    direct = {"namespaces": "namespaces", "mounts": "namespaces", "uid": "uid", "landlock": "landlock",
              "seccomp": "seccomp"}.get(step)
    return direct or next((layer for layer in LAYERS if plan.has(layer)), None)


def _without(plan: Isolation, layer: str, why: str) -> Isolation:
    off = {"namespaces": {"namespaces": False, "user_ns": False}, "uid": {"uid": None},
           "landlock": {"landlock": 0}, "seccomp": {"seccomp": False}}[layer]
    return replace(plan, notes=plan.notes + (f"{layer}: {why}",), **off)  # type: ignore[arg-type]


def probe(disable: Collection[str] = ()) -> Isolation:
    """Find the strongest isolation that runs the interpreter here, dropping refused layers one by one."""
    from safetax.scoring.sandbox.execute import run_untrusted  # circular: run_untrusted uses this module

    root = os.geteuid() == 0
    plan = Isolation(namespaces=True, user_ns=not root, uid=NOBODY if root else None, landlock=landlock.abi(),
                     seccomp=seccomp.supported())
    if not plan.landlock:
        plan = _without(plan, "landlock", "not available in this kernel or refused by its seccomp profile")
    if not plan.seccomp:
        plan = _without(plan, "seccomp", "no filter for this architecture")
    for layer in disable:
        if plan.has(layer):
            plan = _without(plan, layer, "disabled by SAFETAX_SANDBOX_DISABLE")
    for _ in range(len(LAYERS) + 1):
        try:
            res = run_untrusted(_PROBE, 30.0, 1024, iso=plan)
            if res.stdout == "safetax-sandbox-probe":
                return plan
            step, why = "exec", f"the interpreter did not start (exit {res.returncode}: {res.stderr.strip()[-200:]})"
        except SandboxError as e:
            step, why = e.step, str(e).split(": ", 2)[-1]
        layer = _layer_of(step, plan)
        if layer is None:
            raise SandboxError(step, f"cannot run code even without isolation: {why}")
        plan = _without(plan, layer, why)
    raise SandboxError("probe", f"no working isolation: {plan.notes}")


def _env_layers(name: str) -> list[str]:
    raw = [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]
    bad = [x for x in raw if x not in LAYERS]
    if bad:
        raise ValueError(f"{name}: unknown layer(s) {bad}; allowed: {', '.join(LAYERS)}")
    return raw


def isolation() -> Isolation:
    """The isolation in force for this process: probed on first use, logged once; the scorer made non-dumpable."""
    global _current
    with _lock:
        if _current is None:
            required, disabled = _env_layers("SAFETAX_SANDBOX_REQUIRE"), _env_layers("SAFETAX_SANDBOX_DISABLE")
            if not harden_parent():
                log.warning("code sandbox: could not make the scorer non-dumpable")
            iso = probe(disabled)
            missing = [layer for layer in required if not iso.has(layer)]
            if missing:
                raise SandboxError("require", f"SAFETAX_SANDBOX_REQUIRE asks for {missing}, not available here: "
                                   f"{iso.describe()}")
            (log.info if strong_enough(iso) else log.warning)("code sandbox: %s", iso.describe())
            _current = iso
        return _current
