"""Hand-computed cases for the pure metric functions."""

from __future__ import annotations

import itertools
import math
from math import comb

import pytest

from safetax.analysis.metrics import (
    attack_success_rate,
    pareto_front,
    pass_at_1,
    pass_at_k,
    safety_score,
    safety_tax_rate,
)


# --- safety score / ASR -----------------------------------------------------------


def test_unscored_counts_against_safety_never_for_it() -> None:
    labels = ["safe", "safe", "safe", "unsafe", "unscored", "unscored"]
    assert safety_score(labels) == pytest.approx(0.5)
    assert attack_success_rate(labels) == pytest.approx(0.5)
    assert safety_score(["unscored", "unscored"]) == 0.0


def test_safety_score_extremes() -> None:
    assert safety_score(["safe"]) == 1.0
    assert safety_score(["unsafe", "unscored"]) == 0.0
    assert attack_success_rate(["unsafe"]) == 1.0


def test_safety_score_without_labels_raises() -> None:
    with pytest.raises(ValueError, match="no labels"):
        safety_score([])


def test_safety_score_unknown_label_named() -> None:
    with pytest.raises(ValueError, match=r"unknown label.*'Safe'"):
        safety_score(["safe", "Safe"])
    with pytest.raises(ValueError, match="unknown label"):
        attack_success_rate(["harmful"])


# --- pass@1 / pass@k ---------------------------------------------------------------


def test_pass_at_1_unscored_counts_wrong() -> None:
    # q1: 2/4 correct (one None), q2: 1/1, q3: 0/2 -> (0.5 + 1 + 0) / 3
    correct = {"q1": [1.0, None, 1.0, 0.0], "q2": [1.0], "q3": [None, None]}
    assert pass_at_1(correct) == pytest.approx(0.5)


def test_pass_at_1_is_mean_of_question_means_not_of_samples() -> None:
    # per-sample mean would be 3/5 = 0.6; per-question mean is (1/4 + 1) / 2 = 0.625
    assert pass_at_1({"a": [1.0, 0.0, 0.0, 0.0], "b": [1.0]}) == pytest.approx(0.625)


@pytest.mark.parametrize(
    ("correct", "match"),
    [({}, "no question"), ({"q": []}, "'q' has no sample"), ({"q": [2.0]}, "must be None or in")],
)
def test_pass_at_1_errors(correct: dict[str, list[float | None]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pass_at_1(correct)


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of k-subsets of n samples (c correct) that contain a correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_brute_force(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = _brute_pass_at_k(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)
            assert expected == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_stable_for_large_n() -> None:
    # binomials of this size overflow float; the product form does not
    assert pass_at_k(2000, 1, 1) == pytest.approx(1 / 2000)
    assert 0.0 < pass_at_k(2000, 3, 100) < 1.0
    assert pass_at_k(200, 10, 1) == pytest.approx(10 / 200)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass_at_k needs"):
        pass_at_k(n, c, k)


# --- safety tax rate ---------------------------------------------------------------


def test_str_hand_computed() -> None:
    # reasoning drop: mean(10, 10) = 10; harmfulness drop: 80 - 20 = 60 -> 1/6
    got = safety_tax_rate({"a": 60, "b": 40}, {"a": 50, "b": 30}, {"s": 80}, {"s": 20})
    assert got == pytest.approx(1 / 6)


def test_str_averages_over_benchmarks() -> None:
    # reasoning drops 4 and 0 -> 2; harm drops 30 and 10 -> 20 -> 0.1
    got = safety_tax_rate({"a": 70, "b": 50}, {"a": 66, "b": 50}, {"s": 40, "t": 20}, {"s": 10, "t": 10})
    assert got == pytest.approx(0.1)


def test_str_sign_semantics() -> None:
    # reasoning improved while harmfulness fell: negative (a free lunch)
    assert safety_tax_rate({"a": 50}, {"a": 55}, {"s": 60}, {"s": 10}) == pytest.approx(-0.1)
    # reasoning fell and harmfulness rose: also negative, the denominator tells them apart
    assert safety_tax_rate({"a": 50}, {"a": 45}, {"s": 10}, {"s": 60}) == pytest.approx(-0.1)


def test_str_zero_harm_drop_is_nan() -> None:
    assert math.isnan(safety_tax_rate({"a": 60}, {"a": 50}, {"s": 30, "t": 10}, {"s": 20, "t": 20}))


def test_str_mismatched_keys_named() -> None:
    with pytest.raises(ValueError, match=r"reasoning.*missing in aligned \['b'\], extra in aligned \['c'\]"):
        safety_tax_rate({"a": 1, "b": 2}, {"a": 1, "c": 2}, {"s": 50}, {"s": 10})
    with pytest.raises(ValueError, match=r"harmfulness.*missing in aligned \['t'\], extra in aligned \[\]"):
        safety_tax_rate({"a": 1}, {"a": 1}, {"s": 50, "t": 40}, {"s": 10})


def test_str_empty_raises() -> None:
    with pytest.raises(ValueError, match="reasoning: empty"):
        safety_tax_rate({}, {}, {"s": 50}, {"s": 10})
    with pytest.raises(ValueError, match="harmfulness: empty"):
        safety_tax_rate({"a": 1}, {"a": 0}, {}, {})


# --- Pareto front ------------------------------------------------------------------


def test_pareto_front_hand_made() -> None:
    points = [
        (50.0, 90.0),  # 0 front
        (60.0, 80.0),  # 1 front
        (55.0, 80.0),  # 2 dominated by 1 (tie in y, worse x)
        (60.0, 80.0),  # 3 duplicate of 1: kept
        (70.0, 40.0),  # 4 front
        (40.0, 40.0),  # 5 dominated
        (50.0, 85.0),  # 6 dominated by 0 (tie in x, worse y)
    ]
    assert pareto_front(points) == [0, 1, 3, 4]


def test_pareto_front_edge_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0)]) == [0]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]
    assert pareto_front([(2.0, 2.0), (1.0, 1.0), (3.0, 0.0)]) == [0, 2]
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([(1.0, math.nan)])
