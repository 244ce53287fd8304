"""The RPSA figures render real data to PNG files."""

from __future__ import annotations

import pandas as pd
import pytest

from safetax.rpsa.dynamic import DynamicRatio
from safetax.rpsa.fisher import fisher_diagonal, summarize_fisher
from safetax.rpsa.plots import plot_dynamic_ratio, plot_fisher_attention_vs_mlp, plot_fisher_by_layer

PNG = b"\x89PNG"


def test_fisher_plots(model, sequences, tmp_path):
    df = summarize_fisher(fisher_diagonal(model, sequences))
    for fn, name in ((plot_fisher_by_layer, "layers.png"), (plot_fisher_attention_vs_mlp, "attn_mlp.png")):
        path = fn(df, tmp_path / "figs" / name)
        assert path.read_bytes()[:4] == PNG


def test_dynamic_plot(tmp_path):
    r = DynamicRatio(window=3)
    for c in (0.2, 0.5, 0.3, 0.6, 0.4, 0.45):
        r.update(c)
    assert plot_dynamic_ratio(r.history, tmp_path / "k.png").read_bytes()[:4] == PNG


def test_plots_reject_empty_input(tmp_path):
    with pytest.raises(ValueError, match="per-layer rows"):
        plot_fisher_by_layer(pd.DataFrame(columns=["layer", "module", "group", "numel", "mean"]), tmp_path / "a.png")
    with pytest.raises(ValueError, match="empty history"):
        plot_dynamic_ratio([], tmp_path / "b.png")
