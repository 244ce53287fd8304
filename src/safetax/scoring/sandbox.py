"""Run untrusted, model-generated code in a resource-limited subprocess.

This is NOT a security sandbox: there is no network namespace, seccomp filter or chroot.
It limits what a buggy program does by accident (time, memory, file size, new
processes and threads, no stdin, an empty working directory, a stripped
environment); on a cluster the code-execution pods also carry a NetworkPolicy
label that denies all egress. Run it only in such a pod or on a disposable machine.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class ExecResult:
    """Outcome of one sandboxed run."""

    returncode: int | None  # None when killed on timeout
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float


# Trusted first stage: set the limits, then exec the interpreter that runs the untrusted program.
# (Setting them in a ``preexec_fn`` would not be safe with the scorer's threads.)
_TRAMPOLINE = """import os, resource, sys
mem, cpu = int(sys.argv[1]) << 20, int(sys.argv[2])
for lim, v in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, 16 << 20),
               (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    resource.setrlimit(lim, (v, v))
os.execv(sys.executable, [sys.executable, "-s", "-P", "main.py"])
"""


def run_untrusted(program: str, timeout_s: float, memory_mb: int = 4096) -> ExecResult:
    """Run ``program`` in a fresh interpreter with resource limits; kill its process group on timeout.

    What it does: a new ``python -s -P`` process (``-I`` minus ``-E``, so that the stripped
    environment can pin ``PYTHONHASHSEED=0`` for reproducible set/dict order) in its own session,
    in an empty temporary working directory that is deleted afterwards, stdin closed, environment
    reduced to ``PATH``/``LANG``/``PYTHONHASHSEED``, and ``setrlimit``: address space
    ``memory_mb``, CPU seconds, 16 MiB files, no core dumps, no new processes or threads.

    This is NOT a security sandbox (like EvalPlus's ``reliability_guard``). It stops accidents of
    generated code: infinite loops, memory bombs, fork bombs, huge files, writes in the working
    tree. It does not stop deliberate attacks: there is no network/mount/PID namespace, seccomp or
    chroot, so the code can read and write whatever the user can, and open network connections;
    on the cluster, the Kubernetes NetworkPolicy of the scoring pods denies egress. Run model code
    only in such a pod or a throwaway container.
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="safetax-code-") as tmp:
        (Path(tmp) / "main.py").write_text(program, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-s", "-P", "-c", _TRAMPOLINE, str(memory_mb), str(math.ceil(timeout_s) + 1)],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
    return ExecResult(None if timed_out else proc.returncode, out.decode("utf-8", "replace"),
                      err.decode("utf-8", "replace")[-4000:], timed_out, time.perf_counter() - start)
