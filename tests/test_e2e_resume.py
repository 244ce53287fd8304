"""Kill and retry through KFP's local runner: the audit pipeline's generate task is SIGKILLed once its chunks in the
run store hold 90 % of the samples; the runner retries it (the platform's retries), and the retry generates only the
rest and writes what an uninterrupted run writes (slow; runs in CI)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from safetax.artifacts import read_cost, read_generations
from safetax.demo import build_demo
from safetax.platform import PlatformConfig
from safetax.runner import run_local

pytestmark = pytest.mark.e2e
PROMPTS = 20  # 10 safety + 10 reasoning prompts, one sample each, one chunk per prompt


def _params(model: Path, safety: Path, reasoning: Path, store: Path, audit: str) -> dict:
    return {"audit_name": audit, "store_uri": str(store), "checkpoints": [str(model)], "profile": "custom",
            "judge_name": "refusal", "generation_cache": "off",
            "custom_profile": {"eval_sets": [{"name": "demo-harmful", "kind": "safety", "uri": str(safety), "limit": PROMPTS // 2},
                                             {"name": "demo-arith", "kind": "reasoning", "uri": str(reasoning), "limit": PROMPTS // 2}],
                               "safety_max_new_tokens": 64, "reasoning_max_new_tokens": 64, "reasoning_samples": 1,
                               "reasoning_temperature": 0.6}}


def _generate_processes() -> list[int]:
    """PIDs of running generate tasks (KFP's executor for the component function ``generate``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"--function_to_execute" in args and args[args.index(b"--function_to_execute") + 1:][:1] == [b"generate"]:
            pids.append(int(entry.name))
    return pids


def _kill_at(store: Path, share: float, done: threading.Event) -> list[int]:
    """SIGKILL the generate task once its chunk area holds ``share`` of the chunks; the PIDs killed."""
    while not done.is_set():
        chunks = list(store.glob("*/partial/generate/**/*.jsonl"))
        if len(chunks) >= share * PROMPTS:
            pids = _generate_processes()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return pids
        time.sleep(0.01)
    return []


def test_a_killed_generate_task_is_retried_and_resumes_from_its_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = build_demo()
    monkeypatch.setenv("SAFETAX_CHUNK_PROMPTS", "1")
    monkeypatch.setenv("SAFETAX_PUSHGATEWAY", "")
    # Retry a failed generate task once, after 1 s (a cluster's default: twice, after 120 s).
    platform = PlatformConfig.from_dict({"stages": {"generate": {"retries": 1, "retry_backoff": "1s"}}})
    store = tmp_path / "store"
    params = _params(assets.model_dir, assets.safety_eval_path, assets.reasoning_eval_path, store, "killed")

    done, killed = threading.Event(), []
    watcher = threading.Thread(target=lambda: killed.extend(_kill_at(store, 0.9, done)), daemon=True)
    watcher.start()
    try:
        run_local("audit", params, tmp_path / "runs", platform=platform, verbose=False, retries=True)
    finally:
        done.set()
        watcher.join()
    assert killed, "the generate task finished before its chunks held 90 % of the samples"

    [run] = [d for d in store.iterdir() if (d / "generate").is_dir()]
    [out] = [d for d in (run / "generate").iterdir() if d.is_dir()]
    cost = read_cost(out)
    assert cost.samples == PROMPTS and cost.resumed >= 0.9 * PROMPTS and cost.generated <= 0.1 * PROMPTS, cost
    assert not list(run.glob("partial/generate/**/*.jsonl"))  # the chunk area is cleared after the output is written

    # An uninterrupted run of the same parameters (another audit, so the checkpoint is new to its ledger).
    run_local("audit", _params(assets.model_dir, assets.safety_eval_path, assets.reasoning_eval_path, store, "whole"),
              tmp_path / "runs", platform=platform, verbose=False, retries=True)
    [other] = [d / "generate" for d in store.iterdir() if (d / "generate").is_dir() and d != run]
    [whole] = [d for d in other.iterdir() if d.is_dir()]
    assert read_cost(whole).generated == PROMPTS
    assert [r.to_dict() for r in read_generations(out)] == [r.to_dict() for r in read_generations(whole)]
