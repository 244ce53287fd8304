"""The scorer's reading of a candidate's result lines: only well-formed outputs count, nothing crashes it."""

from __future__ import annotations

import json

from safetax.scoring.code import _verdict, parse_rows
from safetax.scoring.sandbox import ExecResult

TASK = {"task_id": "T/0", "entry_point": "f", "base_input": [[1], [2]], "plus_input": [[3]], "atol": 0}
EXPECTED = {"base": [2, 4], "plus": [6], "base_t": [0.0, 0.0], "plus_t": [0.0], "bytes": 100}


def lines(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def verdict(stdout: str, **kw: bool) -> str:
    res = ExecResult(0, stdout, "", kw.get("timed_out", False), 0.1, kw.get("truncated", False))
    s = _verdict("code", res, TASK, EXPECTED, "humaneval")
    return f"{s.value} {s.reason}"


def test_right_outputs_pass() -> None:
    out = lines({"g": "base", "i": 0, "out": 2}, {"g": "base", "i": 1, "out": 4}, {"g": "plus", "i": 0, "out": 6})
    assert verdict(out) == "1.0 base:pass plus:pass"


def test_garbage_is_ignored_and_never_crashes_the_scorer() -> None:
    junk = ["not json", "[" * 100000 + "]" * 100000, "1" * 5000, json.dumps([1, 2]),
            {"g": "base", "i": True, "out": 2}, {"g": "base", "i": 7, "out": 2}, {"g": "other", "i": 0, "out": 2},
            {"g": "base", "i": "0", "out": 2}, {"load_error": "x", "extra": 1}]
    rows, dup = parse_rows(lines(*junk), {"base": 2, "plus": 1})
    assert rows == {} and dup == set()
    bad = lines({"g": "base", "i": 0, "out": {"$t": "tuple", "v": 5}}, {"g": "base", "i": 1, "out": {"$t": "set"}})
    assert verdict(bad) == "0.0 base:fail plus:fail (base[0]: wrong output; plus[0]: no output)"


def test_a_second_line_for_an_input_fails_it() -> None:
    out = lines({"g": "base", "i": 0, "out": 2}, {"g": "base", "i": 0, "out": 2}, {"g": "base", "i": 1, "out": 4},
                {"g": "plus", "i": 0, "out": 6})
    assert verdict(out).startswith("0.0 base:fail plus:pass (base[0]: more than one result line")


def test_claims_other_than_outputs_decide_nothing() -> None:
    out = lines({"verdict": "pass"}, "base:pass plus:pass", {"load_error": None}, {"g": "base", "i": 0, "err": "x"})
    assert verdict(out).startswith("0.0 base:fail plus:fail (base[0]: x")
    assert verdict("", timed_out=True) == "0.0 base:timeout plus:timeout (base[0]: timeout; plus[0]: timeout)"
    assert "output over the size limit" in verdict(lines({"g": "base", "i": 0, "out": 2}), truncated=True)
