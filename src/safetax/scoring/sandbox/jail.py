"""The trusted first stage of a sandboxed run: ``python -I -S jail.py CONFIG_JSON`` (stdlib only).

It runs in the child before any untrusted code, then ``exec``s the interpreter on ``main.py``. Each step
is switched by CONFIG (the scorer probes once which ones the kernel allows, ``sandbox.isolation``):

1. namespaces: ``unshare`` mount, network, PID, IPC and UTS namespaces (and a user namespace first when
   not root), then fork: the code runs as PID 1 of the new PID namespace, so when it exits or is killed the
   kernel kills every process left in it. The outer process only waits; on SIGTERM (the scorer's time
   limit) it SIGKILLs the inner one. The new network namespace has only a loopback device, down.
2. a new root: a tmpfs holding read-only binds of the interpreter's directories and of ``/dev/null`` & co.,
   a size-limited tmpfs ``/sandbox`` as the only writable place and working directory (``/tmp`` links to
   it); ``pivot_root`` and the old root detached. No ``/proc``, ``/sys``, home, cache, data or secrets.
3. uid/gid 65534 and no supplementary groups when started as root.
   Before it the bounding set is emptied and the securebits locked, after it every capability is dropped
   (:mod:`.caps`): the code has none, even where it runs as uid 0 (a root scorer without the uid layer).
4. ``PR_SET_NO_NEW_PRIVS``, resource limits, Landlock, the seccomp filter, a parent-death signal. Without
   the namespaces the working directory is the host's and may not be written (Landlock, and 0 bytes per
   file): no run can fill the host's disk.

The status fd gets ``ok`` just before ``exec`` (which closes it) or ``fail <step>: <error>``: the scorer
tells a sandbox that could not be set up (its own failure) from code that failed (a score of 0).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys

if __package__:  # imported as part of the package (tests)
    from safetax.scoring.sandbox import caps, landlock, seccomp
else:  # run as a script, ``-I -S``: its stdlib-only siblings by path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import caps  # type: ignore[no-redef]
    import landlock  # type: ignore[no-redef]
    import seccomp  # type: ignore[no-redef]

_NEWNS, _NEWUTS, _NEWIPC, _NEWUSER, _NEWPID, _NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000
_RDONLY, _NOSUID, _NODEV, _NOEXEC, _REMOUNT, _BIND, _REC, _PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
_NOATIME, _NODIRATIME, _RELATIME, _DETACH = 1024, 2048, 1 << 21, 2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom")
WORKDIR = "/sandbox"
_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {dst}")


def _locked_flags(path: str) -> int:
    """The source mount's flags that a read-only remount must keep (else EPERM in a user namespace)."""
    f = os.statvfs(path).f_flag
    pairs = ((os.ST_NOSUID, _NOSUID), (os.ST_NODEV, _NODEV), (os.ST_NOEXEC, _NOEXEC), (os.ST_NOATIME, _NOATIME),
             (os.ST_NODIRATIME, _NODIRATIME), (os.ST_RELATIME, _RELATIME))
    return sum(m for st, m in pairs if f & st)


def _enter_namespaces(user_ns: bool, status_fd: int) -> None:
    """Unshare the namespaces and fork; returns in the inner process (PID 1), the outer one never returns."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(_NEWNS | _NEWNET | _NEWPID | _NEWIPC | _NEWUTS | (_NEWUSER if user_ns else 0)), "unshare")
    if user_ns:  # map our own ids only: inside, the same unprivileged user
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    pid = os.fork()
    if pid == 0:
        _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        return
    os.close(status_fd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _expose(root: str, path: str) -> None:
    """Make ``path`` appear read-only at the same place under ``root`` (a symlink stays a symlink)."""
    dst = root + path
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), dst)
        return
    if os.path.isdir(path):
        os.makedirs(dst, exist_ok=True)
    else:
        open(dst, "a").close()
    _mount(path, dst, None, _BIND | _REC)
    _mount(None, dst, None, _REMOUNT | _BIND | _RDONLY | _NOSUID | _NODEV | _locked_flags(path))


def _new_root(cfg: dict, uid: int, gid: int) -> None:
    """Build the sandbox's root filesystem from the host tmp dir (cwd) and ``pivot_root`` into it."""
    with open(cfg["program"], "rb") as f:
        program = f.read()
    _mount(None, "/", None, _REC | _PRIVATE)  # nothing below propagates back to the host
    root = os.path.abspath("root")
    os.mkdir(root, 0o755)
    _mount("tmpfs", root, "tmpfs", _NOSUID | _NODEV, "size=1m,mode=0755")
    for path in cfg["read"]:
        _expose(root, path)
    os.makedirs(root + "/dev")
    for dev in DEVICES:
        open(f"{root}/dev/{dev}", "a").close()
        _mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, _BIND)
    os.makedirs(root + WORKDIR)
    _mount("tmpfs", root + WORKDIR, "tmpfs", _NOSUID | _NODEV,
           f"size={int(cfg['workdir_mb'])}m,mode=0700,uid={uid},gid={gid}")
    main = f"{root}{WORKDIR}/{os.path.basename(cfg['program'])}"
    with open(main, "wb") as f:
        f.write(program)
    os.chown(main, uid, gid)
    if not os.path.lexists(root + "/tmp"):  # a read-only path under /tmp (a venv there) keeps /tmp; TMPDIR is WORKDIR anyway
        os.symlink(WORKDIR, root + "/tmp")
    os.mkdir(root + "/.old")
    _check(_libc.syscall(_PIVOT_ROOT[platform.machine()], root.encode(), (root + "/.old").encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", _DETACH), "umount old root")
    os.rmdir("/.old")
    _mount(None, "/", None, _REMOUNT | _BIND | _RDONLY | _NOSUID | _NODEV)
    os.chdir(WORKDIR)


def _limits(lim: dict) -> None:
    for res, value in ((resource.RLIMIT_AS, lim["as"]), (resource.RLIMIT_CPU, lim["cpu"]),
                       (resource.RLIMIT_FSIZE, lim["fsize"]), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NPROC, lim["nproc"])):
        hard = resource.getrlimit(res)[1]  # a lower limit set from outside (the pod, ulimit) stays
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status = int(cfg["status_fd"])
    step = "config"
    try:
        run_uid = cfg["uid"] if cfg["uid"] is not None else os.getuid()
        run_gid = cfg["uid"] if cfg["uid"] is not None else os.getgid()
        workdir = os.getcwd()
        if cfg["namespaces"]:
            step = "namespaces"
            _enter_namespaces(cfg["user_ns"], status)
            step = "mounts"
            _new_root(cfg, run_uid, run_gid)
            workdir = WORKDIR
        ruleset = None
        if cfg["landlock"]:
            step = "landlock"
            writable = [workdir] if cfg["namespaces"] else []  # else the host's disk: read-only
            ruleset = landlock.prepare(cfg["landlock"], cfg["read"] + ([] if writable else [workdir]), writable,
                                       [f"/dev/{d}" for d in DEVICES])
        step = "caps"
        caps.bound()
        if cfg["uid"] is not None:
            step = "uid"
            os.setgroups([])
            os.setgid(run_gid)
            os.setuid(run_uid)
        step = "limits"
        _limits(cfg["limits"])
        step = "caps"
        caps.clear()
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        if ruleset is not None:
            step = "landlock"
            landlock.restrict(ruleset)
        if cfg["seccomp"]:
            step = "seccomp"
            seccomp.install(no_processes=int(cfg["limits"]["nproc"]) == 0)
        step = "exec"
        _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")  # cleared by setuid
        env = dict(cfg["env"], HOME=workdir, TMPDIR=workdir)
        os.write(status, b"ok\n")
        os.set_inheritable(status, False)
        os.execve(cfg["argv"][0], cfg["argv"], env)
    except BaseException as e:  # noqa: BLE001 - every failure is reported on the status fd
        try:
            os.write(status, f"fail {step}: {e}\n".encode())
        finally:
            os._exit(120)


if __name__ == "__main__":
    main()
