"""Plots of the weight-update analysis (LoRA paper, Figures 1 and 4), methods side by side.

Tables are :mod:`safetax.stages.analyze` rows: ``method, module, layer, stable_rank`` and the
four overlap metrics. Drawn on bare Agg figures (no display, no pyplot state).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)
OVERLAPS = {
    "col_overlap": "(1) ||W_I^T dW|| / (||W_I|| ||dW||)",
    "col_subspace": "(2) ||U_k U_k^T dW|| / ||dW||",
    "row_overlap": "(3) ||W_I dW^T|| / (||W_I|| ||dW||)",
    "row_subspace": "(4) ||V_k V_k^T dW^T|| / ||dW||",
}


def _methods(table: pd.DataFrame) -> list[str]:
    if table.empty:
        raise ValueError("no weight-update rows to plot")
    return sorted(table["method"].unique())


def plot_stable_rank(table: pd.DataFrame, path: Path) -> Path:
    """Stable rank of dW per layer, one line per module type, one panel per method (Figure 1)."""
    methods = _methods(table)
    fig = Figure(figsize=(4.5 * len(methods), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods):
        rows = table[table["method"] == method]
        for module, group in rows.groupby("module", sort=True):
            g = group.groupby("layer", sort=True)["stable_rank"].mean()
            ax.plot(g.index, g.values, marker="o", ms=3, label=str(module))
        ax.set_title(str(method))
        ax.set_xlabel("layer index")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("stable rank of dW (||dW||_F^2 / ||dW||_2^2)")
    top = float(table["stable_rank"].max()) if table["stable_rank"].notna().any() else 1.0
    axes[0].set_ylim(0, max(1.0, top) * 1.1)  # from 0 (a rank is >= 1): small differences are not magnified
    fig.suptitle("Stable rank of the weight update (low = few directions)")
    return _save(fig, path)


def plot_overlaps(table: pd.DataFrame, path: Path) -> Path:
    """The four overlap metrics averaged per module type, bars per method (Figure 4)."""
    methods = _methods(table)
    fig = Figure(figsize=(12, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(OVERLAPS), sharey=True)
    modules = sorted(table["module"].unique())
    width = 0.8 / len(methods)
    for ax, (metric, label) in zip(axes, OVERLAPS.items()):
        means = table.groupby(["method", "module"])[metric].mean()
        for i, method in enumerate(methods):
            values = [float(means.get((method, m), float("nan"))) for m in modules]
            ax.bar([j + i * width for j in range(len(modules))], values, width=width, label=str(method))
        ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(modules))], modules, rotation=30, fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("overlap with W_I (0 = orthogonal, 1 = aligned)")
    axes[0].set_ylim(0, 1.05)  # the four metrics are ratios of norms in [0, 1]
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Overlap of the update with the base weights' dominant subspaces (low = orthogonal)")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    log.info("wrote %s", path)
    return path
