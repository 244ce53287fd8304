"""RPSA figures: Fisher by layer and module (paper Fig. 1), attention vs MLP (Fig. 2), dynamic ratio.

Drawn with the Agg canvas on a bare :class:`matplotlib.figure.Figure`, so no display is
needed and pyplot's global state (and backend) is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REQUIRED = ("layer", "module", "group", "numel", "mean")


def _per_layer(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows with a layer index, with ``sum = mean * numel`` for numel-weighted means."""
    missing = [c for c in REQUIRED if c not in summary.columns]
    rows = summary[summary["layer"].notna()].copy() if not missing else summary.iloc[:0]
    if missing or rows.empty:
        raise ValueError(f"needs a summarize_fisher table with per-layer rows and columns {list(REQUIRED)}; "
                         f"missing {missing}")
    rows["layer"] = rows["layer"].astype(int)
    rows["sum"] = rows["mean"] * rows["numel"]
    return rows


def _weighted_mean(rows: pd.DataFrame, by: list[str]) -> pd.Series:
    g = rows.groupby(by)[["sum", "numel"]].sum()
    return g["sum"] / g["numel"]


def _save(fig: Figure, path: Path, what: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    log.info("wrote %s plot to %s", what, path)
    return path


def plot_fisher_by_layer(summary: pd.DataFrame, path: Path, log_scale: bool = True) -> Path:
    """Mean Fisher per layer, one line per module type (q_proj, up_proj, ...), into a PNG.

    Means are weighted by entry count (all entries of a module type in a layer, LoRA A and B
    together). ``log_scale``: log y axis (Fisher spans orders of magnitude; zeros are dropped).
    """
    rows = _per_layer(summary)
    fig = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    means = _weighted_mean(rows, ["module", "layer"])
    for module in sorted(rows["module"].unique()):
        s = means.loc[module].sort_index()
        if log_scale:
            s = s[s > 0]
        ax.plot(s.index, s.values, marker="o", ms=4, lw=1.2, label=str(module))
    if log_scale and (means > 0).any():
        ax.set_yscale("log")
    ax.set_xlabel("layer index")
    ax.set_ylabel("mean Fisher (squared gradient of the reasoning loss)")
    ax.set_title("Reasoning Fisher by layer and module")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, alpha=0.3)
    return _save(fig, path, "Fisher-by-layer")


def plot_fisher_attention_vs_mlp(summary: pd.DataFrame, path: Path) -> Path:
    """Mean Fisher of attention vs MLP parameters: bars per layer plus an overall pair, into a PNG."""
    rows = _per_layer(summary)
    rows = rows[rows["group"].isin(["attention", "mlp"])]
    if rows.empty:
        raise ValueError("plot_fisher_attention_vs_mlp: no attention or mlp rows")
    means = _weighted_mean(rows, ["group", "layer"]).unstack("group").reindex(columns=["attention", "mlp"])
    overall = _weighted_mean(rows, ["group"]).reindex(["attention", "mlp"])
    fig = Figure(figsize=(9, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax, ax_all = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]})
    x = np.arange(len(means))
    for i, (group, colour) in enumerate((("attention", "tab:blue"), ("mlp", "tab:orange"))):
        ax.bar(x + (i - 0.5) * 0.4, means[group].fillna(0).values, width=0.4, color=colour, label=group)
        ax_all.bar([i], [overall.fillna(0)[group]], color=colour)
    ax.set_xticks(x, [str(i) for i in means.index])
    ax.set_xlabel("layer")
    ax.set_ylabel("mean Fisher (reasoning loss)")
    ax.set_title("Attention vs MLP, per layer")
    ax.legend(fontsize=8)
    ax_all.set_xticks([0, 1], ["attention", "mlp"])
    ax_all.set_title("overall")
    for a in (ax, ax_all):
        a.grid(True, axis="y", alpha=0.3)
    return _save(fig, path, "attention-vs-MLP Fisher")


def plot_dynamic_ratio(history: Sequence[tuple[int, float, float]], path: Path) -> Path:
    """Gradient conflict ``c`` and frozen ratio ``k`` over training steps (a ``DynamicRatio.history``)."""
    if not history:
        raise ValueError("plot_dynamic_ratio: empty history")
    steps, cs, ks = zip(*history)
    fig = Figure(figsize=(8, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, cs, color="tab:red", lw=1.2, label="conflict c (share of opposite signs)")
    ax.plot(steps, ks, color="tab:blue", lw=1.2, drawstyle="steps-post", label="frozen ratio k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("share of parameters (0-1)")
    ax.set_title("RPSA's dynamic frozen ratio")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path, "dynamic-ratio")
