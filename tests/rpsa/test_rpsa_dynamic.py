"""Gradient conflict over non-zero-Fisher entries and the dynamic frozen ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetax.rpsa.dynamic import DynamicRatio, gradient_conflict


def test_conflict_counts_only_nonzero_fisher_entries():
    # entries 0-3: non-zero Fisher; 4-7: zero Fisher, where every pair conflicts
    g_r = {"w": torch.tensor([1.0, -2.0, 3.0, 0.0, 1.0, 1.0, -1.0, -1.0])}
    g_s = {"w": torch.tensor([-1.0, -1.0, 1.0, -5.0, -1.0, -1.0, 1.0, 1.0])}
    nonzero = {"w": torch.tensor([True] * 4 + [False] * 4)}
    # 0 conflicts; 1, 2 agree; 3 has g_R == 0: not a conflict, still counted in the denominator
    assert gradient_conflict(g_r, g_s, nonzero) == pytest.approx(1 / 4)
    assert gradient_conflict(g_r, g_s, {"w": torch.ones(8, dtype=torch.bool)}) == pytest.approx(5 / 8)


def test_conflict_over_several_tensors_and_empty():
    g_r = {"a": torch.ones(2, 2), "b": -torch.ones(3)}
    g_s = {"a": -torch.ones(2, 2), "b": -torch.ones(3)}
    nz = {"a": torch.tensor([[True, False], [False, False]]), "b": torch.ones(3, dtype=torch.bool)}
    assert gradient_conflict(g_r, g_s, nz) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="no non-zero"):
        gradient_conflict(g_r, g_s, {"a": torch.zeros(2, 2, dtype=torch.bool)})


def test_warm_up_lasts_until_window_past_values_exist():
    r = DynamicRatio(window=5, initial=0.3)
    assert [r.update(c) for c in (0.1, 0.9, 0.5, 0.2, 0.4)] == [0.3] * 5  # the 5th has only 4 past values
    assert r.update(0.4) != 0.3


def test_formula_on_a_hand_computed_sequence():
    """Issue 16 / RPSA Eq. 7: the baseline is the PAST W values, the current one excluded."""
    r = DynamicRatio(window=3)
    ks = [r.update(c) for c in (0.2, 0.4, 0.6, 0.5, 0.1)]
    assert ks[:3] == [0.5, 0.5, 0.5]
    # c = 0.5 against the past (0.2, 0.4, 0.6): mean 0.4, population std sqrt(0.08 / 3) = 0.163299
    # k = (0.5 - 0.4) / (2 * 0.163299) + 0.5 = 0.806186
    assert ks[3] == pytest.approx(0.8061862178)
    # c = 0.1 against the past (0.4, 0.6, 0.5): mean 0.5, std sqrt(0.02 / 3) = 0.081650
    # k = (0.1 - 0.5) / 0.163299 + 0.5 = -1.949 -> clipped to 0
    assert ks[4] == 0.0
    # c = 0.55 against the past (0.6, 0.5, 0.1): mean 0.4, std sqrt(0.14 / 3) = 0.216025
    # k = 0.15 / 0.432049 + 0.5 = 0.847183
    assert r.update(0.55) == pytest.approx(0.8471825, abs=1e-6)
    assert [h[0] for h in r.history] == [0, 1, 2, 3, 4, 5]
    assert r.history[3] == (3, 0.5, ks[3])


def test_clipping_at_both_ends_and_constant_window():
    high = DynamicRatio(window=2)
    assert [high.update(c) for c in (0.1, 0.2, 0.9)][-1] == 1.0
    low = DynamicRatio(window=2)
    assert [low.update(c) for c in (0.5, 0.6, 0.1)][-1] == 0.0
    flat = DynamicRatio(window=3)
    assert [flat.update(0.3) for _ in range(5)][-1] == 0.5


def test_random_walk_matches_numpy_and_explicit_steps():
    rng = np.random.default_rng(0)
    cs = rng.uniform(0.3, 0.6, 60)
    r = DynamicRatio(window=20)
    for i, c in enumerate(cs):
        k = r.update(float(c), step=10 * i)
        if i < 20:
            assert k == 0.5
        else:
            w = cs[i - 20: i]  # the 20 values before this one
            assert k == pytest.approx(np.clip((c - w.mean()) / (2 * w.std()) + 0.5, 0, 1))
    assert r.history[-1][0] == 590
    assert any(0 < h[2] < 1 for h in r.history[20:])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window"):
        DynamicRatio(window=0)
    with pytest.raises(ValueError, match="initial"):
        DynamicRatio(initial=2.0)


def test_a_parameter_without_gradient_counts_as_no_conflict() -> None:
    import torch

    from safetax.rpsa.dynamic import gradient_conflict

    nonzero = {"a": torch.tensor([True, True]), "b": torch.tensor([True, True])}
    g_r, g_s = {"a": torch.tensor([1.0, -1.0])}, {"a": torch.tensor([-1.0, -1.0]), "b": torch.tensor([1.0, 1.0])}
    assert gradient_conflict(g_r, g_s, nonzero) == 0.25  # one conflict in "a"; "b" (no g_R) in the denominator only
