"""Regression pins: the metrics module's figures of a fixed small input, to 4 decimals. A change to a definition,
a standard error or the bootstrap (its seed, draws or pairing) fails here first; update the pins only together
with the README's definitions table."""

from __future__ import annotations

import pytest

from safetax.analysis.summary import summarize
from safetax.metrics import LabelCounts, QuestionCounts
from safetax.records import CheckpointScores


def record(name: str, correct: list[int], labels: str) -> CheckpointScores:
    """Four samples per question (``correct`` of them right, the first wrong one unscored), one label per prompt."""
    method, _, epoch = name.partition("/epoch-")
    names = {"s": "safe", "u": "unsafe", "x": "unscored"}
    return CheckpointScores(
        name, method, int(epoch or 0),
        questions={"arith": {f"q{i}": QuestionCounts(c, 4, int(c < 4)) for i, c in enumerate(correct)}},
        safety_labels={"harm": LabelCounts.from_labels(names[c] for c in labels)},
        outcomes={"harm": {f"p{i}": names[c] for i, c in enumerate(labels)}})


SCORES = [
    record("base", [4, 3, 3, 2, 4, 1, 0, 4], "uuuuuuusuuuuuuux"),
    record("lora/epoch-1", [4, 2, 3, 2, 3, 1, 0, 4], "ssuusssxssussxss"),
    record("lora/epoch-2", [3, 2, 2, 1, 3, 0, 0, 4], "sssssssxssssxsss"),
]

PINS = {  # checkpoint -> column -> value (percent, or STR)
    "base": {"acc:arith": 65.625, "se:acc:arith": 13.3108, "asr:harm": 87.5, "se:asr:harm": 8.2680,
             "unscored:harm": 6.25, "safety_mean": 6.25},
    "lora/epoch-1": {"acc:arith": 59.375, "se:acc:arith": 12.4441, "asr:harm": 18.75, "se:asr:harm": 9.7578,
                     "unscored:harm": 12.5, "reasoning_drop": 6.25, "reasoning_drop_lo": 0.0, "reasoning_drop_hi": 12.5,
                     "asr_drop": 68.75, "asr_drop_lo": 43.75, "asr_drop_hi": 87.5, "str": 0.0909},
    "lora/epoch-2": {"acc:arith": 46.875, "se:acc:arith": 12.8847, "asr:harm": 0.0, "se:asr:harm": 0.0,
                     "unscored:harm": 12.5, "reasoning_drop": 18.75, "reasoning_drop_lo": 12.5, "reasoning_drop_hi": 25.0,
                     "asr_drop": 87.5, "asr_drop_lo": 68.75, "asr_drop_hi": 100.0, "str": 0.2143},
}


def test_pinned_figures() -> None:
    table = summarize(SCORES).set_index("checkpoint")
    got = {ckpt: {col: round(float(table.loc[ckpt, col]), 4) for col in cols} for ckpt, cols in PINS.items()}
    assert got == {ckpt: {col: pytest.approx(v, abs=1e-4) for col, v in cols.items()} for ckpt, cols in PINS.items()}


def test_pinned_intervals_of_str() -> None:
    table = summarize(SCORES).set_index("checkpoint")
    intervals = {c: tuple(round(float(v), 4) for v in table.loc[c, ["str_lo", "str_hi"]]) for c in ("lora/epoch-1", "lora/epoch-2")}
    assert intervals == {"lora/epoch-1": pytest.approx((0.0, 0.2222), abs=1e-4), "lora/epoch-2": pytest.approx((0.125, 0.3077), abs=1e-4)}
    # one question fewer right of 8 (epoch 1) is inside the noise; epoch 2's drop of 18.75 points is not
    assert table.loc["lora/epoch-1", "noise"] == "reasoning" and table.loc["lora/epoch-2", "noise"] == ""
