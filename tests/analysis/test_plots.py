"""Plots that never mislead: fixed 0-100 % axes, a note when every checkpoint lands on one point, labelled axes."""

from __future__ import annotations

import pandas as pd
import pytest

from safetax.analysis.plots import PAD, tradeoff_figure
from safetax.analysis.summary import summarize
from safetax.records import CheckpointScores


def _table(points: list[tuple[float, float]]) -> pd.DataFrame:
    names = ["base", *[f"lora/epoch-{i}" for i in range(1, len(points))]]
    return summarize([CheckpointScores(n, n.split("/")[0], i, reasoning={"arith": r}, safety={"harm": s})
                      for i, (n, (r, s)) in enumerate(zip(names, points))])


@pytest.mark.parametrize("points", [[(0.0, 0.0)] * 3, [(0.5, 0.49), (0.52, 0.51)], [(1.0, 1.0), (0.0, 0.0)]])
def test_axes_always_span_0_to_100_percent(points: list[tuple[float, float]]) -> None:
    ax = tradeoff_figure(_table(points)).axes[0]
    assert ax.get_xlim() == (-PAD, 100 + PAD) and ax.get_ylim() == (-PAD, 100 + PAD)
    assert "(%)" in ax.get_xlabel() and "(%)" in ax.get_ylabel()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"base", "lora", "Pareto front"}


def test_identical_checkpoints_are_called_out() -> None:
    """All responses unscored: every checkpoint at (0, 0); the plot says so instead of showing a lone dot."""
    same = [t.get_text() for t in tradeoff_figure(_table([(0.0, 0.0)] * 3)).axes[0].texts]
    assert any("all 3 checkpoints score the same" in t for t in same)
    apart = [t.get_text() for t in tradeoff_figure(_table([(0.5, 0.1), (0.4, 0.9)])).axes[0].texts]
    assert not any("score the same" in t for t in apart)
