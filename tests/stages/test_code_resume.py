"""Resume of the code task across processes, through the run store's chunk area and pre-signed URLs only: a SIGKILL
once chunks hold 90 % of the programs, and a rerun (a new process without any store credential, as a KFP retry's new
pod) runs <= 10 % of them and writes the same results as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from safetax.stages import code_exec
from safetax.store.s3 import S3Store
from safetax.testing.code_jobs import DRIVER, write_code_jobs

TASKS, CHUNK = 10, 2  # 10 HumanEval+ tasks x (a right and a wrong program) = 20 programs in 10 chunks



def write_jobs(jobs_dir: Path) -> None:
    """The job files the judge task would write: each task answered by its canonical solution and by a wrong one."""
    write_code_jobs(jobs_dir, TASKS)


def _start(jobs: Path, out: Path, pause: float = 0.0) -> subprocess.Popen[bytes]:
    # No store credential and no store URI: only the URLs in the jobs artifact, as in the code task's pod.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFETAX_S3_", "AWS_"))} | {"OMP_NUM_THREADS": "1"}
    args = {"jobs": str(jobs), "out": str(out), "pause": pause}
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_at_90_percent_then_rerun_runs_at_most_10_percent(s3_env, data_dir: Path, tmp_path: Path) -> None:
    write_jobs(tmp_path / "whole-jobs")
    code_exec.plan_chunks(tmp_path / "whole-jobs", chunk_jobs=CHUNK)  # no store: chunks in its own output directory
    whole = code_exec.execute(tmp_path / "whole-jobs", tmp_path / "whole")
    assert (whole["passed"], whole["failed"], whole["executed"]) == (TASKS, TASKS, 2 * TASKS)

    write_jobs(tmp_path / "jobs")
    partial = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/partial/code/base"
    code_exec.plan_chunks(tmp_path / "jobs", partial, chunk_jobs=CHUNK)
    plan = json.loads((tmp_path / "jobs" / code_exec.CHUNKS).read_text())
    assert sorted(plan["chunks"]) == code_exec.chunk_names(2 * TASKS, CHUNK) and "s3://" not in json.dumps(plan)
    store = S3Store()

    def chunks() -> int:
        return sum(k.endswith(".jsonl") for k in store.keys(partial) or [])

    proc = _start(tmp_path / "jobs", tmp_path / "ran", pause=1.0)
    deadline = time.monotonic() + 300
    while chunks() < 9 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the pod is preempted after its 9th of 10 chunks
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and chunks() == 9, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert not (tmp_path / "ran" / "COMPLETE").exists()

    rerun = _start(tmp_path / "jobs", tmp_path / "ran")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert (counts["executed"], counts["resumed"]) == (2, 18)
    assert counts["executed"] <= 0.1 * 2 * TASKS
    assert (tmp_path / "ran" / code_exec.RESULTS).read_text() == (tmp_path / "whole" / code_exec.RESULTS).read_text()
    assert chunks() == 0  # removed (through the DELETE URLs) once the results are written


def test_the_urls_are_used_only_where_programs_cannot_read_them(tmp_path: Path, monkeypatch) -> None:
    from safetax.scoring.sandbox import Isolation

    plan = tmp_path / code_exec.CHUNKS
    plan.write_text("{}")
    plan.chmod(0o644)
    assert code_exec.hidden_from_code(plan, Isolation(namespaces=True))
    assert code_exec.hidden_from_code(plan, Isolation(landlock=7))
    assert not code_exec.hidden_from_code(plan, Isolation())  # no layer: the programs read what the scorer reads
    monkeypatch.setattr(code_exec, "read_paths", lambda: (str(tmp_path),))  # the file among what programs may read
    assert not code_exec.hidden_from_code(plan, Isolation(landlock=7))
    if os.geteuid() == 0:  # uid 65534 alone: a file of root's with mode 0600
        assert code_exec.hidden_from_code(plan, Isolation(uid=65534)) and plan.stat().st_mode & 0o777 == 0o600


def test_chunk_urls_not_used_when_expired_or_exposed(s3_env, data_dir: Path, tmp_path: Path, caplog) -> None:
    import logging

    from safetax.scoring.sandbox import Isolation, isolation

    write_jobs(tmp_path / "jobs")
    partial = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}/partial/code/base"
    code_exec.plan_chunks(tmp_path / "jobs", partial, chunk_jobs=CHUNK)
    store = S3Store()
    with caplog.at_level(logging.WARNING, logger="safetax"):
        # Isolation(): a sandbox that hides nothing (root without layers) could read the URLs: not used, nothing kept.
        store.put_bytes(f"{partial}/{json.loads((tmp_path / 'jobs' / code_exec.CHUNKS).read_text())['fingerprint'][:16]}/00000.jsonl", b"[]\n")
        code_exec.execute(tmp_path / "jobs", tmp_path / "bare", iso=Isolation())
        assert "cannot keep programs from reading code_chunks.json" in caplog.text
        assert len(store.keys(partial) or []) == 1  # not read, not written, not cleared
        plan = json.loads((tmp_path / "jobs" / code_exec.CHUNKS).read_text())
        (tmp_path / "jobs" / code_exec.CHUNKS).write_text(json.dumps({**plan, "expires_at": "2020-01-01T00:00:00Z"}))
        counts = code_exec.execute(tmp_path / "jobs", tmp_path / "late", iso=isolation())
        assert "their URLs expired at 2020-01-01T00:00:00Z" in caplog.text and counts["executed"] == 2 * TASKS
    assert (tmp_path / "late" / code_exec.RESULTS).read_text() == (tmp_path / "bare" / code_exec.RESULTS).read_text()
