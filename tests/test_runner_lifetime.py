"""A task of a local run ends with its runner, also when the runner is killed with SIGKILL (no cleanup runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_a_task_ends_when_its_runner_is_killed() -> None:
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, "SAFETAX_RUNNER_PID": str(runner.pid)}
    task = subprocess.Popen([sys.executable, "-c", "from safetax.timing import setup_logging; import time; setup_logging(); "
                             "print('training', flush=True); time.sleep(60)"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert task.stdout is not None and task.stdout.readline().strip() == "training"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        start = time.monotonic()
        assert task.wait(timeout=10) == 137
        assert time.monotonic() - start < 5
    finally:
        for p in (runner, task):
            if p.poll() is None:
                p.kill()


def test_a_task_without_a_runner_is_not_watched() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SAFETAX_RUNNER_PID"}
    out = subprocess.run([sys.executable, "-c", "from safetax.timing import setup_logging; import threading; setup_logging(); "
                          "print([t.name for t in threading.enumerate()])"], env=env, capture_output=True, text=True, check=True)
    assert "safetax-runner-watch" not in out.stdout
