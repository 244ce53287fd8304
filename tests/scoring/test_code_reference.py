"""A canonical solution that gives no output for some input leaves its task unscored, never compared with None.

Where the reference raised, was killed or could not import, there is no expected output: a program that returns
None must not pass there (it did: ``None == None``), a correct one cannot be told from a wrong one, and nothing of
that run may be signed into the expected-output cache, so that a later process runs the reference again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safetax.scoring import code as code_mod
from safetax.scoring import code_cache
from safetax.scoring.code import REFERENCE_FAILED, _canonical_entry, _verdict, score_programs
from safetax.scoring.sandbox import ExecResult, isolation
from safetax.stages import code_exec

RAISES_ON_2 = "    if x == 2:\n        raise ValueError('no reference output')\n    return x + 1\n"
FIXED = "    return x + 1\n"
NONE_PROGRAM = "def inc(x):\n    return None\n"
RIGHT_PROGRAM = "def inc(x):\n    return x + 1\n"
WRONG_PROGRAM = "def inc(x):\n    return x\n"
WRONG = (0.0, "base:fail plus:fail (base[0]: wrong output; plus[0]: wrong output)")
SCORED = [WRONG, (1.0, "base:pass plus:pass"), WRONG]  # the None, right and wrong programs under a working reference


def _task(tid: str, canonical: str) -> dict[str, Any]:
    return {"task_id": tid, "prompt": "def inc(x):\n", "canonical_solution": canonical, "entry_point": "inc",
            "base_input": [[1], [2]], "plus_input": [[3], [4]], "atol": 0}


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new scoring process: no expected outputs held in memory."""
    monkeypatch.setattr(code_mod, "_memo", {})


def _score(tasks: dict[str, dict[str, Any]], cache: Path) -> list[tuple[float | None, str]]:
    """(value, reason) of the None, right and wrong programs for every task, in that order."""
    programs = [NONE_PROGRAM, RIGHT_PROGRAM, WRONG_PROGRAM]
    ids = [tid for tid in tasks for _ in programs]
    scores = score_programs(programs * len(tasks), ids, tasks, "humaneval", cache_dir=cache)
    return [(s.value, s.reason) for s in scores]


def _cached(cache: Path) -> dict[str, Any]:
    """The verified entries of every expected-output cache file under ``cache``."""
    return {tid: e for p in (cache / "code-expected").glob("humaneval-*.json") for tid, e in code_cache.load(p).items()}


def test_a_failed_reference_input_leaves_the_task_unscored_and_uncached(tmp_path: Path) -> None:
    assert isolation().protects_cache, "this test checks the cache on disk, written only under such a sandbox"
    tasks = {"T/bad": _task("T/bad", RAISES_ON_2), "T/good": _task("T/good", FIXED)}
    # The None program would have matched on base[1]; the right one is unscored too: no input decides alone.
    assert _score(tasks, tmp_path) == [(None, f"{REFERENCE_FAILED} 1 input(s) (base[1])")] * 3 + SCORED
    # The good task's entry was signed into the cache; the failed one's was not.
    assert set(_cached(tmp_path)) == {"T/good"}


def test_a_rerun_retries_the_reference_and_a_fixed_one_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    real = code_mod._canonical_entry

    def counted(tid: str, task: dict[str, Any], res: ExecResult) -> dict[str, Any]:
        ran.append(tid)
        return real(tid, task, res)

    monkeypatch.setattr(code_mod, "_canonical_entry", counted)
    tasks = {"T/bad": _task("T/bad", RAISES_ON_2), "T/good": _task("T/good", FIXED)}
    _score(tasks, tmp_path)
    monkeypatch.setattr(code_mod, "_memo", {})  # the next scoring process
    assert [v for v, _ in _score(tasks, tmp_path)] == [None] * 3 + [0.0, 1.0, 0.0]
    assert ran == ["T/bad", "T/good", "T/bad"]  # the failed reference ran again, the good one came from the cache

    fixed = {"T/bad": _task("T/bad", FIXED)}  # the reference repaired: its outputs, then a normal verdict
    assert _score(fixed, tmp_path) == SCORED
    assert _cached(tmp_path)["T/bad"]["failed"] == []


def test_a_reference_that_cannot_load_fails_every_input(tmp_path: Path) -> None:
    tasks = {"T/import": _task("T/import", "    import safetax_no_such_module\n    return x + 1\n"),
             "T/load": {**_task("T/load", FIXED), "prompt": "import safetax_no_such_module\ndef inc(x):\n"}}
    got = _score(tasks, tmp_path)  # raised on every input; could not even be loaded
    assert got[:3] == [(None, f"{REFERENCE_FAILED} 4 input(s) (base[0], base[1], plus[0], ...)")] * 3
    assert got[3:] == got[:3]
    assert _cached(tmp_path) == {}


def test_a_killed_reference_decides_nothing_the_candidate_outputs() -> None:
    """The red-team PoC: the canonical run was killed before printing a line."""
    task = {"task_id": "T/0", "entry_point": "f", "base_input": [[1], [2]], "plus_input": [[3]], "atol": 0}
    exp = _canonical_entry("T/0", task, ExecResult(None, "", "killed", True, 300.0))
    assert exp["failed"] == ["base[0]", "base[1]", "plus[0]"]

    def lines(outs: dict[str, list[Any]]) -> str:
        return "\n".join(json.dumps({"g": g, "i": i, "t": 0.0, "out": v})
                         for g, vs in outs.items() for i, v in enumerate(vs))

    for outs in ({"base": [None, None], "plus": [None]}, {"base": [2, 3], "plus": [4]}):
        s = _verdict("code", ExecResult(0, lines(outs), "", False, 0.1), task, exp, "humaneval")
        assert (s.value, s.reason) == (None, f"{REFERENCE_FAILED} 3 input(s) (base[0], base[1], plus[0])")


def test_a_resumed_chunk_with_a_failed_reference_runs_again() -> None:
    job = {"checkpoint": "base", "benchmark": "humanevalplus", "item_id": "T/bad", "sample": 0, "task_id": "T/bad",
           "code": RIGHT_PROGRAM}
    row = {**{k: job[k] for k in code_exec.KEYS}, "value": None, "answer": RIGHT_PROGRAM,
           "reason": f"{REFERENCE_FAILED} 1 input(s) (base[1])"}
    assert "retry the reference" in str(code_exec.chunk_problem([row], [job]))
