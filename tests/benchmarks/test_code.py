"""HumanEval+ / MBPP+ scoring: canonical solutions pass, wrong/looping/memory-hungry code fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from safetax.benchmarks.registry import Item, get_benchmark
from safetax.scoring.code import extract_code, score_code
from safetax.scoring.sandbox import run_untrusted
from safetax.scoring.sandbox.execute import ENV

# Mbpp/255 (combinations_colors): the canonical solution itself exceeds the limits on plus input 85.
MBPP_KNOWN_BAD = {"Mbpp/255"}


def r1(code: str) -> str:
    return f"reasoning\n</think>\n\nHere is the code:\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def he(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    b = get_benchmark("humanevalplus")
    return b, b.load(str(shared_data / b.default_path)), tmp_path_factory.mktemp("cache")


def test_extract_code() -> None:
    assert extract_code("```python\nx = 1\n```\n</think>\nno code") is None
    assert extract_code("t\n</think>\n```python\na = 1\n```\nthen\n```\nb = 2\n```") == "b = 2\n"
    assert extract_code("t\n</think>\n```python\na = 1\n```\n```text\nout\n```") == "a = 1\n"


def test_humanevalplus_canonical_all_pass(he) -> None:  # type: ignore[no-untyped-def]
    b, items, cache = he
    start = time.perf_counter()
    scores = score_code([r1(b.tasks[i.id]["prompt"] + b.tasks[i.id]["canonical_solution"]) for i in items],
                        items, b.tasks, "humaneval", cache_dir=cache)
    wall = time.perf_counter() - start
    failing = [(i.id, s.reason) for i, s in zip(items, scores) if s.value != 1.0]
    assert len(items) == 164 and failing == []
    assert all(s.reason == "base:pass plus:pass" for s in scores)
    assert wall < 120, f"164 canonical solutions (cold cache) took {wall:.0f}s"


def test_wrong_missing_looping_and_memory_bomb(he) -> None:  # type: ignore[no-untyped-def]
    b, items, cache = he
    it = next(i for i in items if i.id == "HumanEval/0")
    sig = b.tasks[it.id]["prompt"]
    bodies = {
        "wrong": r1(sig + "    return None\n"),
        "none": "thinking\n</think>\n\nI cannot write code.",
        "loop": r1(sig + "    while True:\n        pass\n"),
        "bomb": r1(sig + "    x = bytearray(8 * 1024 ** 3)\n    return True\n"),
    }
    start = time.perf_counter()
    s = dict(zip(bodies, score_code(list(bodies.values()), [it] * 4, b.tasks, "humaneval",
                                    cache_dir=cache, task_timeout_s=4, memory_mb=1024)))
    assert time.perf_counter() - start < 30
    assert s["wrong"].value == 0.0 and s["wrong"].reason.startswith("base:fail plus:fail")
    assert s["none"].value is None
    assert s["loop"].value == 0.0 and "timeout" in s["loop"].reason
    assert s["bomb"].value == 0.0 and "MemoryError" in s["bomb"].reason


def test_run_untrusted_limits() -> None:
    res = run_untrusted("import time\nwhile True:\n    pass\n", timeout_s=1.0, memory_mb=512)
    assert res.timed_out and res.returncode is None and res.wall_s < 10
    res = run_untrusted("x = bytearray(4 * 1024 ** 3)\n", timeout_s=10.0, memory_mb=512)
    assert not res.timed_out and res.returncode != 0 and "MemoryError" in res.stderr
    res = run_untrusted("import os\nprint(os.getcwd(), sorted(os.environ))\n", timeout_s=10.0, memory_mb=512)
    cwd, env = res.stdout.split(" ", 1)
    assert cwd == "/sandbox" or "safetax-code-" in cwd
    assert eval(env) == sorted([*ENV, "HOME", "TMPDIR"])  # nothing of the scorer's environment


def test_mbppplus_sample_of_canonical_solutions_pass(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path))
    b = get_benchmark("mbppplus")
    items = b.load()
    assert len(items) == 399 and "Your code should pass this test" in items[0].prompt
    sample = [i for i in items if i.id not in MBPP_KNOWN_BAD][::20]
    scores = b.score([r1(b.tasks[i.id]["canonical_solution"]) for i in sample], sample)
    assert [i.id for i, s in zip(sample, scores) if s.value != 1.0] == []


def test_score_reloads_tasks_in_a_fresh_instance(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path))
    item = Item("HumanEval/2", "p", "", {"task_id": "HumanEval/2", "entry_point": "truncate_number", "atol": 0.0})
    fresh = get_benchmark("humanevalplus")
    [s] = fresh.score([r1("def truncate_number(number: float) -> float:\n    return number % 1.0\n")], [item])
    assert s.value == 1.0
