"""Start the jail on a program, read its output against a deadline, kill its whole process tree."""

from __future__ import annotations

import functools
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from safetax.scoring.sandbox.layers import Isolation, SandboxError, isolation

JAIL = Path(__file__).with_name("jail.py")
# The code's whole environment: nothing of the scorer's (no credentials, no cache or data paths).
# PYTHONHASHSEED pins set and dict order; the jail adds HOME and TMPDIR (the working directory).
# One BLAS/OpenMP thread: the code may start no thread (RLIMIT_NPROC), and numpy's import would fail.
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MAX_OUTPUT = 64 << 20  # bytes of stdout kept; more kills the run (the harness's results, JSON lines)
STDERR_TAIL = 4000  # characters of stderr kept
FILE_SIZE = 16 << 20  # RLIMIT_FSIZE, bytes per file
DRAIN_S = 0.5  # after the child exits, how long to read what is left in the pipes
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one sandboxed run."""

    returncode: int | None  # None when killed on timeout
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    truncated: bool = False  # stdout passed the size limit: the run was killed there
    line_times: tuple[float, ...] = ()  # when each "\n" of stdout arrived, seconds after the run started


@functools.cache
def read_paths() -> tuple[str, ...]:
    """What the code may read: the system's library directories and the interpreter's prefixes (resolved)."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                                              os.path.dirname(os.path.realpath(sys.executable)))}
    paths = [p for p in _SYSTEM_DIRS if os.path.lexists(p)] + sorted(prefixes - {"/"})
    dirs = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
    return tuple(p for p in paths if not any(p.startswith(d + "/") for d in dirs))


def run_untrusted(program: str, timeout_s: float, memory_mb: int = 4096, *, iso: Isolation | None = None,
                  max_output: int = MAX_OUTPUT, processes: int = 0, workdir_mb: int = 64) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox; return its output, killing it at ``timeout_s``.

    The code runs with the isolation ``iso`` (default: the strongest this machine allows, probed once, see
    :func:`~safetax.scoring.sandbox.layers.isolation`): an empty environment, stdin closed, a private
    temporary working directory, ``memory_mb`` of address space, CPU seconds ~ ``timeout_s``, 16 MiB per
    file, ``processes`` more processes or threads (0: none; counted per uid by the kernel, and denied by the
    seccomp filter). Without the namespaces the working directory lies on the host's disk and the code may
    not write there (Landlock; 0 bytes per file): it reads its program and nothing else. Stdout is read
    up to ``max_output`` bytes and never waited on past the deadline or after the child exits, so a process
    that escaped and holds the pipe cannot hang the scorer.

    Raises:
        SandboxError: when the sandbox could not be set up (the code never ran).
    """
    iso = iso if iso is not None else isolation()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="safetax-code-", ignore_cleanup_errors=True) as tmp:
        main = Path(tmp) / "main.py"
        main.write_text(program, encoding="utf-8")
        if not iso.namespaces:  # the code's uid may read its program, list and write nothing
            os.chmod(tmp, 0o711)
            main.chmod(0o644)
        status_r, status_w = os.pipe()
        cfg = {"status_fd": status_w, "argv": [sys.executable, "-s", "-P", main.name], "env": ENV,
               "uid": iso.uid, "namespaces": iso.namespaces, "user_ns": iso.user_ns, "landlock": iso.landlock,
               "seccomp": iso.seccomp, "read": list(read_paths()), "program": str(main), "workdir_mb": workdir_mb,
               "limits": {"as": memory_mb << 20, "cpu": math.ceil(timeout_s) + 1,
                          "fsize": FILE_SIZE if iso.namespaces else 0, "nproc": processes}}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(JAIL), json.dumps(cfg)], cwd=tmp, env=ENV,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(status_w,), start_new_session=True,
            )
        finally:
            os.close(status_w)
        try:
            out, err, status, timed_out, truncated, times = _collect(proc, status_r, timeout_s, max_output,
                                                                      iso.namespaces, start)
        finally:
            os.close(status_r)
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
    last = (status.decode("utf-8", "replace").strip().splitlines() or [""])[-1]  # "ok", or "fail <step>: ..." after it
    stderr = err.decode("utf-8", "replace")[-STDERR_TAIL:]
    if last != "ok":
        step, _, msg = last.removeprefix("fail ").partition(":")
        detail = (msg.strip() or "no status") + (f"; stderr: {stderr[-500:]}" if stderr else "")
        raise SandboxError(step.strip() or "start", detail)
    return ExecResult(None if timed_out else proc.returncode, out.decode("utf-8", "replace"), stderr,
                      timed_out, time.monotonic() - start, truncated, times)


def _collect(proc: subprocess.Popen[bytes], status_fd: int, timeout_s: float, max_output: int,
             pidns: bool, start: float) -> tuple[bytes, bytes, bytes, bool, bool, tuple[float, ...]]:
    """Read stdout, stderr and the jail's status until EOF, the deadline, or shortly after the child exits.

    Also notes when each line of stdout arrived (seconds after ``start``, ``time.monotonic``): the scorer's own
    clock on results, which the code cannot set.
    """
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()  # type: ignore[union-attr]
    bufs = {out_fd: bytearray(), err_fd: bytearray(), status_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    stop_at: float | None = None
    timed_out = truncated = False
    times: list[float] = []
    while sel.get_map():
        now = time.monotonic()
        if stop_at is None and proc.poll() is not None:
            stop_at = now + DRAIN_S  # a process still holding the pipe escaped: it is not waited for
        elif stop_at is None and now >= deadline:
            timed_out, stop_at = True, now + DRAIN_S
            _kill(proc, pidns)
        if stop_at is not None and now >= stop_at:
            break
        for key, _ in sel.select(timeout=max(0.0, min(0.1, (stop_at or deadline) - now))):
            try:
                chunk = os.read(key.fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(key.fd)
                continue
            buf = bufs[key.fd]
            buf += chunk
            if key.fd == out_fd:
                times += [time.monotonic() - start] * chunk.count(b"\n")
            if key.fd == out_fd and len(buf) > max_output:
                del buf[max_output:]
                truncated, stop_at = True, now
                _kill(proc, pidns)
            elif key.fd != out_fd and len(buf) > 8 * STDERR_TAIL:
                del buf[: -4 * STDERR_TAIL]
    sel.close()
    if not (timed_out or truncated) and proc.poll() is None:  # pipes closed, process still running
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill(proc, pidns)  # also any process left in its group
    proc.wait()
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), bytes(bufs[status_fd]), timed_out, truncated, tuple(times)


def _kill(proc: subprocess.Popen[bytes], pidns: bool) -> None:
    """Kill the run's whole process tree: PID 1 of its namespace (via the jail), then its process group."""
    if pidns and proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)  # the jail's outer process SIGKILLs the namespace's PID 1
            proc.wait(timeout=1.0)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
