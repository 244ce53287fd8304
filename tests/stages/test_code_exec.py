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
    assert counts == {"passed": 1, "failed": 2, "unscored": 1, "executed": 3, "resumed": 0}  # the forged result line fails
    plan = json.loads((tmp_path / "jobs" / code_exec.CHUNKS).read_text())
    assert set(plan) == {"fingerprint", "chunk_jobs"}  # no store: no chunk URLs, no directory
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



def test_a_rerun_runs_only_the_chunks_an_interrupted_attempt_left(tiny_model: Path, tmp_path: Path, data_dir: Path,
                                                                  monkeypatch) -> None:
    """Chunks of one program each in a local chunk area (a local store): the attempt dies in its third chunk; the rerun
    reads the first two back, runs again a chunk that is not its program's verdict, and writes the same results."""
    import pytest

    from safetax.resume import ChunkArea

    gen = _answers(tiny_model, tmp_path)
    code_exec.prepare(gen, tmp_path / "whole-jobs")
    code_exec.execute(tmp_path / "whole-jobs", tmp_path / "whole")
    partial = tmp_path / "partial"
    code_exec.prepare(gen, tmp_path / "jobs", partial_uri=str(partial), chunk_jobs=1)
    plan = json.loads((tmp_path / "jobs" / code_exec.CHUNKS).read_text())
    assert plan["dir"] == str(partial) and plan["chunk_jobs"] == 1
    original, calls = code_exec._run_chunk, {"n": 0}

    def dies_in_third(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("preempted")
        return original(*a, **kw)

    with monkeypatch.context() as mp:
        mp.setattr(code_exec, "_run_chunk", dies_in_third)
        with pytest.raises(KeyboardInterrupt):
            code_exec.execute(tmp_path / "jobs", tmp_path / "ran")
    area = ChunkArea(str(partial), plan["fingerprint"])
    assert [area.has(n) for n in code_exec.chunk_names(4, 1)] == [True, True, False, False]
    counts = code_exec.execute(tmp_path / "jobs", tmp_path / "ran")
    assert (counts["resumed"], counts["executed"]) == (2, 1)  # chunk 3 holds the response without code
    assert (tmp_path / "ran" / code_exec.RESULTS).read_text() == (tmp_path / "whole" / code_exec.RESULTS).read_text()
    assert not list(partial.rglob("*.jsonl"))  # cleared once the results are written

    rows = read_jsonl(tmp_path / "whole" / code_exec.RESULTS)
    area = ChunkArea(str(partial), plan["fingerprint"])
    area.write("00000", [{**rows[0], "value": 0.5}])  # not a verdict: run again
    area.write("00001", [rows[1]])
    Path(area.uri_of("00002")).write_text("{not json\n")  # not JSON lines: run again
    counts = code_exec.execute(tmp_path / "jobs", tmp_path / "again")
    assert (counts["resumed"], counts["executed"]) == (1, 2)  # chunks 0 and 2 run; chunk 3 has no program
    assert (tmp_path / "again" / code_exec.RESULTS).read_text() == (tmp_path / "whole" / code_exec.RESULTS).read_text()


def test_a_chunk_counts_only_when_it_holds_its_programs_verdicts() -> None:
    jobs = [{"checkpoint": "base", "benchmark": "humanevalplus", "item_id": f"HumanEval/{i}", "sample": 0, "task_id": f"HumanEval/{i}",
             "code": None if i == 2 else f"def f{i}(): pass\n"} for i in range(3)]
    keys = ("checkpoint", "benchmark", "item_id", "sample")
    good = [{**{k: j[k] for k in keys}, "value": v, "answer": j["code"], "reason": r}
            for j, v, r in zip(jobs, [1.0, 0.0, None], ["base:pass plus:pass", "base:fail plus:fail", "no fenced code block"])]
    assert code_exec.chunk_problem(good, jobs) is None
    bad = {
        "a row short": good[:2],
        "not a list": {"rows": good},
        "another response": [good[1], good[0], good[2]],
        "a value outside {1.0, 0.0, None}": [{**good[0], "value": 0.5}, *good[1:]],
        "a bool for a float": [{**good[0], "value": True}, *good[1:]],
        "an int for a float": [{**good[0], "value": 1}, *good[1:]],
        "a verdict for no code": [*good[:2], {**good[2], "value": 0.0}],
        "no verdict for a program": [{**good[0], "value": None}, *good[1:]],
        "another program": [{**good[0], "answer": "def g(): pass\n"}, *good[1:]],
        "a pass whose reason fails": [{**good[0], "reason": "base:fail plus:pass"}, *good[1:]],
        "a fail whose reason passes": [good[0], {**good[1], "reason": "base:pass plus:pass"}, good[2]],
        "an extra field": [{**good[0], "note": "x"}, *good[1:]],
        "a missing field": [{k: v for k, v in good[0].items() if k != "reason"}, *good[1:]],
    }
    for what, rows in bad.items():
        assert code_exec.chunk_problem(rows, jobs) is not None, what
