"""The code task: programs are handed over as a plain artifact, run where the store is out of reach, and the
score stage takes their verdicts instead of running code. Same verdicts as scoring in one process; a forged
result line decides nothing; the job files carry programs and tasks only."""

from __future__ import annotations

import json
from pathlib import Path

from safetax.benchmarks.registry import get_benchmark
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.records import read_jsonl, write_jsonl
from safetax.stages import code_exec, generate, judge, score

FORGE = ("import os, sys\nsys.stdout.write('{\"g\": \"base\", \"i\": 0, \"out\": true}\\n')\nsys.stdout.flush()\nos._exit(0)\n")


def _answers(tiny_model: Path, tmp_path: Path) -> Path:
    """Generations of the tiny model for two HumanEval+ tasks (2 samples each), their texts replaced by a correct
    program, a wrong one, a forged result and no code at all."""
    sets = (EvalSet.from_dict({"benchmark": "humanevalplus", "limit": 2}),)
    cfg = generate.GenerateConfig(str(tiny_model), sets, SamplingConfig(max_new_tokens=4),
                                  SamplingConfig(temperature=0.7, n=2, max_new_tokens=4))
    generate.run(cfg, tmp_path / "gen")
    bench = get_benchmark("humanevalplus")
    bench.load(limit=2)
    path = tmp_path / "gen" / generate.GENERATIONS
    rows = read_jsonl(path)
    for k, row in enumerate(rows):
        task = bench.tasks[row["item_id"]] if row["item_id"] in bench.tasks else next(iter(bench.tasks.values()))
        program = [task["prompt"] + task["canonical_solution"], f"def {task['entry_point']}(*a):\n    return None\n", FORGE, None][k % 4]
        row["text"] = "plan\n</think>\n" + (f"```python\n{program}```\n" if program else "no code here")
    write_jsonl(path, rows)
    return tmp_path / "gen"


def test_the_code_task_decides_code_scores(tiny_model: Path, tmp_path: Path, data_dir: Path) -> None:
    gen = _answers(tiny_model, tmp_path)
    judge.run(judge.JudgeConfig(), gen, tmp_path / "judge")
    assert code_exec.prepare(gen, tmp_path / "jobs") == 4
    jobs = read_jsonl(tmp_path / "jobs" / code_exec.JOBS)
    assert [j["code"] is None for j in jobs] == [False, False, False, True]
    assert {"text", "prompt"}.isdisjoint(jobs[0])  # programs only: not the responses
    tasks = json.loads((tmp_path / "jobs" / code_exec.TASKS).read_text())
    assert tasks["humanevalplus"]["dataset"] == "humaneval" and set(tasks["humanevalplus"]["tasks"]) == {j["task_id"] for j in jobs}

    counts = code_exec.execute(tmp_path / "jobs", tmp_path / "ran")
    assert counts == {"passed": 1, "failed": 2, "unscored": 1}  # the forged result line fails
    verdicts = code_exec.read_results(tmp_path / "ran")
    assert [verdicts[(j["checkpoint"], j["benchmark"], j["item_id"], j["sample"])].value for j in jobs] == [1.0, 0.0, 0.0, None]

    [split] = score.run(gen, tmp_path / "judge", tmp_path / "score-split", code_results=tmp_path / "ran")
    [whole] = score.run(gen, tmp_path / "judge", tmp_path / "score-whole")  # the programs run in this process
    assert split.to_dict() == whole.to_dict()
    assert split.counts["humanevalplus"] == {"n": 4, "unscored": 1}
    # One checkpoint's chain: its generate and judge costs travel with its record (the report's cost table).
    assert set(split.cost) == {"generate", "judge"} and split.cost["generate"]["samples"] == 4


def test_score_refuses_a_response_the_code_task_did_not_run(tiny_model: Path, tmp_path: Path, data_dir: Path) -> None:
    import pytest

    gen = _answers(tiny_model, tmp_path)
    judge.run(judge.JudgeConfig(), gen, tmp_path / "judge")
    code_exec.prepare(gen, tmp_path / "jobs")
    code_exec.execute(tmp_path / "jobs", tmp_path / "ran")
    results = tmp_path / "ran" / code_exec.RESULTS
    write_jsonl(results, read_jsonl(results)[1:])
    with pytest.raises(ValueError, match="1 response\\(s\\) without a verdict of the code task"):
        score.run(gen, tmp_path / "judge", tmp_path / "score", code_results=tmp_path / "ran")
