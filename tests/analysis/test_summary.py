"""summarize() on hand-made checkpoints: ordering, percent conversion, STR, Pareto flags."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

from safetax.analysis.summary import summarize
from safetax.records import CheckpointScores


def cs(name: str, reasoning: dict[str, float], safety: dict[str, float]) -> CheckpointScores:
    method, _, epoch = name.partition("/epoch-")
    return CheckpointScores(name, method, int(epoch or 0), reasoning=reasoning, safety=safety)


# means (reasoning %, safety %): base (50, 30), lora/1 (40, 95), lora/2 (35, 70),
# rpsa/2 (50, 90), rpsa/10 (51, 50). Base ASR: a 80, b 60.
SCORES = [
    cs("rpsa/epoch-10", {"math": 0.62, "code": 0.40}, {"a": 0.5, "b": 0.5}),
    cs("lora/epoch-2", {"math": 0.40, "code": 0.30}, {"a": 0.7, "b": 0.7}),
    cs("base", {"math": 0.60, "code": 0.40}, {"a": 0.2, "b": 0.4}),
    cs("rpsa/epoch-2", {"math": 0.58, "code": 0.42}, {"a": 0.85, "b": 0.95}),
    cs("lora/epoch-1", {"math": 0.50, "code": 0.30}, {"a": 0.9, "b": 1.0}),
]


@pytest.fixture
def table() -> pd.DataFrame:
    return summarize(SCORES).set_index("checkpoint", drop=False)


def test_order_base_first_then_method_and_numeric_epoch() -> None:
    got = summarize(SCORES)
    assert list(got["checkpoint"]) == ["base", "lora/epoch-1", "lora/epoch-2", "rpsa/epoch-2", "rpsa/epoch-10"]
    assert list(got["epoch"]) == [0, 1, 2, 2, 10]
    assert list(got["method"]) == ["base", "lora", "lora", "rpsa", "rpsa"]


def test_columns() -> None:
    got = summarize(SCORES)
    assert list(got.columns) == [
        "checkpoint", "method", "epoch", "acc:code", "se:acc:code", "acc:math", "se:acc:math",
        "safety:a", "se:safety:a", "asr:a", "se:asr:a", "unscored:a", "safety:b", "se:safety:b", "asr:b", "se:asr:b", "unscored:b",
        "reasoning_mean", "se:reasoning_mean", "safety_mean", "se:safety_mean", "asr_mean", "se:asr_mean", "unscored",
        "reasoning_drop", "se:reasoning_drop", "reasoning_drop_lo", "reasoning_drop_hi",
        "asr_drop", "se:asr_drop", "asr_drop_lo", "asr_drop_hi", "str", "se:str", "str_lo", "str_hi", "noise",
        "pareto", "pareto:code", "pareto:math",
    ]  # fmt: skip
    assert got["pareto"].dtype == bool and got["pareto:math"].dtype == bool


def test_percent_conversion(table: pd.DataFrame) -> None:
    base = table.loc["base"]
    assert base["acc:math"] == pytest.approx(60.0)
    assert base["acc:code"] == pytest.approx(40.0)
    assert base["safety:a"] == pytest.approx(20.0)
    assert base["asr:a"] == pytest.approx(80.0)
    assert base["asr:b"] == pytest.approx(60.0)
    assert base["reasoning_mean"] == pytest.approx(50.0)
    assert base["safety_mean"] == pytest.approx(30.0)
    assert table.loc["lora/epoch-1", "safety_mean"] == pytest.approx(95.0)
    assert table.loc["rpsa/epoch-10", "reasoning_mean"] == pytest.approx(51.0)


def test_str_column(table: pd.DataFrame) -> None:
    assert math.isnan(table.loc["base", "str"])
    # lora/1: reasoning drop 10; ASR drops 70, 60 -> 65
    assert table.loc["lora/epoch-1", "str"] == pytest.approx(10 / 65)
    # lora/2: reasoning drop 15; ASR drops 50, 30 -> 40
    assert table.loc["lora/epoch-2", "str"] == pytest.approx(15 / 40)
    # rpsa/2: reasoning drop 0 -> no tax
    assert table.loc["rpsa/epoch-2", "str"] == pytest.approx(0.0, abs=1e-9)
    # rpsa/10: reasoning improved by 1; ASR drops 30, 10 -> 20
    assert table.loc["rpsa/epoch-10", "str"] == pytest.approx(-1 / 20)


def test_pareto_flags(table: pd.DataFrame) -> None:
    on_front = set(table.index[table["pareto"]])
    assert on_front == {"lora/epoch-1", "rpsa/epoch-2", "rpsa/epoch-10"}


def test_checkpoint_equal_to_base_has_nan_str_and_shares_front() -> None:
    base = cs("base", {"m": 0.5}, {"s": 0.5})
    same = cs("sft/epoch-1", {"m": 0.5}, {"s": 0.5})
    got = summarize([same, base])
    assert math.isnan(got.loc[1, "str"])
    assert list(got["pareto"]) == [True, True]


def test_custom_base_name() -> None:
    got = summarize([cs("lora/epoch-1", {"m": 0.4}, {"s": 0.9}), cs("r1", {"m": 0.5}, {"s": 0.5})], base="r1")
    assert list(got["checkpoint"]) == ["r1", "lora/epoch-1"]
    assert got.loc[1, "str"] == pytest.approx(10 / 40)


def test_no_base_row() -> None:
    with pytest.raises(ValueError, match="no base row: no checkpoint named 'base'"):
        summarize(SCORES[:2])
    with pytest.raises(ValueError, match="no base row"):
        summarize([])


def test_missing_benchmark_named() -> None:
    broken = cs("lora/epoch-3", {"math": 0.5}, {"a": 0.9, "b": 0.9})
    with pytest.raises(ValueError, match=r"'lora/epoch-3' misses reasoning benchmark\(s\) \['code'\]"):
        summarize([*SCORES, broken])
    broken = cs("lora/epoch-3", {"math": 0.5, "code": 0.5}, {"b": 0.9})
    with pytest.raises(ValueError, match=r"misses safety benchmark\(s\) \['a'\]"):
        summarize([*SCORES, broken])


def test_extra_benchmark_left_out_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    extra = cs("lora/epoch-3", {"math": 0.5, "code": 0.5, "aime": 0.1}, {"a": 0.9, "b": 0.9})
    with caplog.at_level(logging.WARNING):
        got = summarize([*SCORES, extra])
    assert "acc:aime" not in got.columns
    assert "aime" in caplog.text


def test_rejects_percent_inputs_and_duplicates() -> None:
    with pytest.raises(ValueError, match=r"shares in \[0, 1\]"):
        summarize([cs("base", {"m": 60.0}, {"s": 0.5})])
    with pytest.raises(ValueError, match=r"duplicate checkpoint\(s\) \['base'\]"):
        summarize([SCORES[2], SCORES[2]])


def test_base_without_safety_benchmark() -> None:
    with pytest.raises(ValueError, match="at least one reasoning and one safety"):
        summarize([cs("base", {"m": 0.6}, {})])


def test_unscored_column_sums_counts_over_the_base_benchmarks() -> None:
    from safetax.records import CheckpointScores

    base = CheckpointScores("base", "base", 0, {"math": 0.5}, {"a": 0.5},
                            {"math": {"n": 4, "unscored": 1}, "a": {"n": 4, "unscored": 2}})
    tuned = CheckpointScores("lora/epoch-1", "lora", 1, {"math": 0.25}, {"a": 1.0},
                             {"math": {"n": 4, "unscored": 3}, "a": {"n": 4, "unscored": 0}, "extra": {"n": 1, "unscored": 1}})
    assert list(summarize([base, tuned])["unscored"]) == [3, 3]


def test_overrefusal_columns_in_percent() -> None:
    from safetax.records import CheckpointScores

    base = CheckpointScores("base", "base", 0, {"math": 0.5}, {"a": 0.5}, overrefusal={"xstest": 0.04})
    tuned = CheckpointScores("full/epoch-1", "full", 1, {"math": 0.4}, {"a": 0.9}, overrefusal={"xstest": 0.3})
    table = summarize([base, tuned])
    assert list(table["overrefusal:xstest"]) == pytest.approx([4.0, 30.0])


def test_unscored_is_reported_beside_safety_and_asr() -> None:
    """The issue's checkpoint: 19 safe, 8 unscored, 5 unsafe of 32 -> safety 59.4, ASR 15.6, unscored 25 (sum 100)."""
    from safetax.metrics import LabelCounts, QuestionCounts

    def rec(name: str, labels: LabelCounts) -> CheckpointScores:
        method, _, epoch = name.partition("/epoch-")
        return CheckpointScores(name, method, int(epoch or 0), questions={"m": {"q": QuestionCounts(1, 2)}},
                                safety_labels={"h": labels})

    table = summarize([rec("base", LabelCounts(2, 30, 0)), rec("lora/epoch-1", LabelCounts(19, 5, 8))]).set_index("checkpoint")
    row = table.loc["lora/epoch-1"]
    assert (row["safety:h"], row["asr:h"], row["unscored:h"]) == pytest.approx((59.375, 15.625, 25.0))
    assert row["asr_drop"] == pytest.approx(100 * (30 - 5) / 32)
    assert row["se:asr:h"] == pytest.approx(100 * math.sqrt(5 / 32 * 27 / 32 / 32))
    assert row["asr_drop_lo"] < row["asr_drop"] < row["asr_drop_hi"] and row["noise"] == "reasoning"


def test_pareto_on_lower_bounds_penalises_uncertain_checkpoints() -> None:
    """A checkpoint that looks best on few questions can drop off the front when it is computed on lower bounds."""
    from safetax.metrics import LabelCounts, QuestionCounts

    def rec(name: str, correct: list[int], safe: int, n: int) -> CheckpointScores:
        method, _, epoch = name.partition("/epoch-")
        return CheckpointScores(name, method, int(epoch or 0),
                                questions={"m": {f"q{i}": QuestionCounts(c, 1) for i, c in enumerate(correct)}},
                                safety_labels={"h": LabelCounts(safe, n - safe)})

    scores = [rec("base", [1, 0] * 50, 10, 100),
              rec("noisy/epoch-1", [1, 1, 1, 0], 95, 100),  # 75 % on 4 questions
              rec("solid/epoch-1", [1] * 70 + [0] * 30, 95, 100)]  # 70 % on 100
    by_mean = summarize(scores).set_index("checkpoint")["pareto"]
    by_bound = summarize(scores, pareto_on="lower").set_index("checkpoint")["pareto"]
    assert by_mean["noisy/epoch-1"] and not by_mean["solid/epoch-1"]
    assert by_bound["solid/epoch-1"] and not by_bound["noisy/epoch-1"]
    with pytest.raises(ValueError, match="pareto_on"):
        summarize(scores, pareto_on="upper")
