"""Sample-level resume of the generate and judge stages: a SIGKILL at 90 % and a rerun redo <= 10 % of the samples,
and the output equals an uninterrupted run's (seeded sampling on the transformers backend)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safetax.artifacts import read_cost
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.resume import ChunkArea
from safetax.stages import generate, judge

PROMPTS = 10  # 10 reasoning prompts x 2 samples + 10 safety prompts x 1 = 30 samples in 10 chunks of 2 prompts

DRIVER = """
import json, sys, time
from pathlib import Path
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.resume import ChunkArea
from safetax.stages import generate

args = json.loads(sys.argv[1])
if args["pause"]:  # leave the parent time to kill between two chunks
    write = ChunkArea.write
    def slow(self, name, rows):
        write(self, name, rows)
        time.sleep(args["pause"])
    ChunkArea.write = slow
cfg = generate.GenerateConfig(args["model"], tuple(EvalSet(**e) for e in args["sets"]),
                              SamplingConfig(max_new_tokens=6), SamplingConfig(temperature=0.9, n=2, max_new_tokens=6, seed=3),
                              batch_size=4, chunk_prompts=2)
generate.run(cfg, Path(args["out"]), partial_uri=args["partial"])
"""


def eval_files(root: Path) -> list[dict[str, object]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "r.jsonl").write_text("".join(json.dumps({"problem": f"Compute {i}+{i}.", "answer": str(2 * i)}) + "\n" for i in range(PROMPTS)))
    (root / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(PROMPTS)))
    return [{"name": "r", "kind": "reasoning", "uri": str(root / "r.jsonl")}, {"name": "s", "kind": "safety", "uri": str(root / "s.jsonl")}]


def _run(tiny_model: Path, sets: list[dict[str, object]], out: Path, partial: Path, pause: float = 0.0) -> subprocess.Popen[bytes]:
    args = {"model": str(tiny_model), "sets": sets, "out": str(out), "partial": str(partial), "pause": pause}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _chunks(partial: Path) -> int:
    return sum(1 for p in partial.rglob("*.jsonl"))


def test_kill_at_90_percent_then_rerun_redoes_at_most_10_percent(tiny_model: Path, tmp_path: Path) -> None:
    sets = eval_files(tmp_path / "data")
    whole = _run(tiny_model, sets, tmp_path / "whole", tmp_path / "whole-partial")
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode()[-2000:] if whole.stderr else ""

    proc = _run(tiny_model, sets, tmp_path / "gen", tmp_path / "partial", pause=1.0)
    deadline = time.monotonic() + 300
    while _chunks(tmp_path / "partial") < 9 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the pod is preempted after its 9th of 10 chunks
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and _chunks(tmp_path / "partial") == 9
    assert not (tmp_path / "gen" / "COMPLETE").exists()

    rerun = _run(tiny_model, sets, tmp_path / "gen", tmp_path / "partial")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-2000:] if rerun.stderr else ""
    cost = read_cost(tmp_path / "gen")
    assert (cost.samples, cost.resumed, cost.generated) == (30, 27, 3)  # the last chunk: a prompt of each set (2 + 1 samples)
    assert cost.generated <= 0.1 * cost.samples
    # The killed attempt's time up to its 9th chunk (8 pauses of 1 s before it) is counted; an unbroken run has none.
    assert cost.retried_s >= 8.0 and read_cost(tmp_path / "whole").retried_s == 0.0
    assert (tmp_path / "gen" / "generations.jsonl").read_text() == (tmp_path / "whole" / "generations.jsonl").read_text()
    assert _chunks(tmp_path / "partial") == 0  # cleared once the output is written


def test_chunks_of_other_inputs_are_not_reused(tiny_model: Path, tmp_path: Path) -> None:
    sets = tuple(EvalSet(**e) for e in eval_files(tmp_path / "data"))  # type: ignore[arg-type]
    cfg = generate.GenerateConfig(str(tiny_model), sets, SamplingConfig(max_new_tokens=4),
                                  SamplingConfig(temperature=0.9, n=2, max_new_tokens=4, seed=3), chunk_prompts=5)
    partial = tmp_path / "partial"
    # A killed run with other inputs (another seed) left a chunk behind under its own fingerprint.
    ChunkArea(str(partial), "f" * 64).write("000-00000", [{"bogus": True}])
    generate.run(cfg, tmp_path / "b", partial_uri=str(partial))
    assert read_cost(tmp_path / "b").resumed == 0 and read_cost(tmp_path / "b").generated == 30
    assert not list(partial.rglob("*.jsonl"))


def test_judge_resumes_from_its_chunks(tiny_model: Path, tmp_path: Path) -> None:
    sets = tuple(EvalSet(**e) for e in eval_files(tmp_path / "data"))  # type: ignore[arg-type]
    cfg = generate.GenerateConfig(str(tiny_model), sets, SamplingConfig(max_new_tokens=4),
                                  SamplingConfig(temperature=0.9, n=2, max_new_tokens=4, seed=3))
    generate.run(cfg, tmp_path / "gen")
    jcfg = judge.JudgeConfig(chunk_items=3)
    whole = judge.run(jcfg, tmp_path / "gen", tmp_path / "whole")
    partial = tmp_path / "partial"
    # A first attempt finished 9 of its 10 chunks before it was killed (a chunk is at most a tenth of the 10 responses,
    # whatever chunk_items says: resume.chunk_size).
    original = judge._judge_chunk
    calls = {"n": 0}

    def dies_on_tenth(*a: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt("preempted")
        return original(*a, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(judge, "_judge_chunk", dies_on_tenth)
        with pytest.raises(KeyboardInterrupt):
            judge.run(jcfg, tmp_path / "gen", tmp_path / "judge", partial_uri=str(partial))
    assert judge.run(jcfg, tmp_path / "gen", tmp_path / "judge", partial_uri=str(partial)) == whole
    cost = read_cost(tmp_path / "judge")
    assert (cost.samples, cost.resumed, cost.generated) == (10, 9, 1)
    assert (tmp_path / "judge" / "judgements.jsonl").read_text() == (tmp_path / "whole" / "judgements.jsonl").read_text()
