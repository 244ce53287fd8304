"""Safety-vs-reasoning trade-off plot of a :func:`safetax.analysis.summary.summarize` table.

Drawn with the Agg canvas on a bare :class:`matplotlib.figure.Figure`, so no display is
needed and pyplot's global state (and backend) is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from safetax.checkpoints import BASE
from safetax.metrics import pareto_front

log = logging.getLogger(__name__)

REQUIRED = ("checkpoint", "method", "epoch", "reasoning_mean", "safety_mean")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
PAD = 4.0  # percentage points around 0-100 %, so markers on an edge stay whole
COLORMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys", "YlOrBr", "BuGn")


def _shade(cmap: Colormap, epoch: int, lo: int, hi: int) -> tuple[float, float, float, float]:
    """Colour of ``epoch`` in ``cmap``: light for the first epoch, dark for the last."""
    frac = 1.0 if hi == lo else (epoch - lo) / (hi - lo)
    return cmap(0.35 + 0.6 * frac)


def _error_bars(ax: Axes, rows: pd.DataFrame, x: str, colour: object) -> None:
    """Standard errors of both axes (a table's ``se:<column>``), where the table has them."""
    xerr = rows[f"se:{x}"].fillna(0.0) if f"se:{x}" in rows.columns else None
    yerr = rows["se:safety_mean"].fillna(0.0) if "se:safety_mean" in rows.columns else None
    if xerr is not None or yerr is not None:
        ax.errorbar(rows[x], rows["safety_mean"], xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, elinewidth=0.8,
                    capsize=2, alpha=0.8, zorder=2)


def _plot_method(ax: Axes, rows: pd.DataFrame, marker: str, cmap: Colormap, x: str) -> None:
    """One method's checkpoints: a faint trajectory by epoch, shaded markers with error bars, epoch labels."""
    rows = rows.sort_values("epoch")
    epochs = [int(e) for e in rows["epoch"]]
    lo, hi = min(epochs), max(epochs)
    ax.plot(rows[x], rows["safety_mean"], color=cmap(0.6), lw=1, alpha=0.5, zorder=2)
    _error_bars(ax, rows, x, cmap(0.7))
    colours = [_shade(cmap, e, lo, hi) for e in epochs]
    ax.scatter(rows[x], rows["safety_mean"], c=colours, marker=marker, s=70,
               edgecolors="black", linewidths=0.6, zorder=3)
    for px, py, e in zip(rows[x], rows["safety_mean"], epochs):
        ax.annotate(f"e{e}", (px, py), textcoords="offset points", xytext=(5, 5), fontsize=7, color="0.25")


def _plot_front(ax: Axes, table: pd.DataFrame, x: str) -> None:
    """Pareto front (maximise both axes) as a step line through the non-dominated points."""
    if "pareto" in table.columns:
        front = table[table["pareto"].astype(bool)]
    else:
        idx = pareto_front(list(zip(table[x], table["safety_mean"])))
        front = table.iloc[idx]
    front = front.sort_values([x, "safety_mean"], ascending=[True, False])
    ax.step(front[x], front["safety_mean"], where="pre", color="crimson",
            lw=1.5, ls="--", zorder=1)


def plot_tradeoff(table: pd.DataFrame, path: Path, base: str = BASE, x: str = "reasoning_mean",
                  xlabel: str = "mean reasoning accuracy / pass@1 (%)") -> Path:
    """Write :func:`tradeoff_figure` to the PNG file ``path`` (parent folders created); returns ``path``."""
    fig = tradeoff_figure(table, base, x, xlabel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    log.info("wrote trade-off plot of %d checkpoint(s) to %s", len(table), path)
    return path


def tradeoff_figure(table: pd.DataFrame, base: str = BASE, x: str = "reasoning_mean",
                    xlabel: str = "mean reasoning accuracy / pass@1 (%)") -> Figure:
    """Scatter mean safety (y) against mean reasoning (x) of every checkpoint.

    One marker shape and colour family per method, shaded lighter to darker with the
    epoch (each point labelled ``e<k>``); the base model as a gold star; the Pareto front
    as a dashed step line; error bars of one standard error where the table has ``se:`` columns. Both
    axes span 0-100 %.

    Args:
        table: a :func:`~safetax.analysis.summary.summarize` table (``pareto`` is
            recomputed when absent).
        base: checkpoint name of the base model.
        x: the reasoning column on the x axis (``reasoning_mean`` or one ``acc:<bench>``).
        xlabel: its axis label.

    Returns:
        The figure (on an Agg canvas).

    Raises:
        ValueError: if a required column is missing or the table is empty.
    """
    missing = [c for c in (*REQUIRED, x) if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"plot_tradeoff needs a non-empty table with columns {list(REQUIRED)}; missing {missing}")
    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    is_base = table["checkpoint"] == base
    handles: list[Line2D] = []
    for i, (method, rows) in enumerate(table[~is_base].groupby("method", sort=True)):
        marker, cmap = MARKERS[i % len(MARKERS)], colormaps[COLORMAPS[i % len(COLORMAPS)]]
        _plot_method(ax, rows, marker, cmap, x)
        handles.append(Line2D([], [], ls="", marker=marker, color=cmap(0.65), markeredgecolor="black",
                              markersize=8, label=str(method)))
    if is_base.any():
        b = table[is_base]
        _error_bars(ax, b, x, "0.3")
        ax.scatter(b[x], b["safety_mean"], marker="*", s=320, c="gold",
                   edgecolors="black", linewidths=0.9, zorder=4)
        handles.insert(0, Line2D([], [], ls="", marker="*", color="gold", markeredgecolor="black",
                                 markersize=14, label=base))
    _plot_front(ax, table, x)
    handles.append(Line2D([], [], color="crimson", lw=1.5, ls="--", label="Pareto front"))
    handles.append(Line2D([], [], ls="", label="shade: lighter = earlier epoch,\ndarker = later (e<k>)"))
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean safety score (%)  [= 100 - ASR - unscored]")
    ax.set_title("Safety vs reasoning per checkpoint (up and right is better; bars: ± 1 se)")
    ax.grid(True, alpha=0.3)
    # Both axes are shares in percent: a fixed 0-100 range never magnifies noise into a trend (and never
    # collapses to a point when every checkpoint scores the same).
    ax.set_xlim(-PAD, 100 + PAD)
    ax.set_ylim(-PAD, 100 + PAD)
    if len(table) > 1 and table[x].nunique() == 1 and table["safety_mean"].nunique() == 1:
        ax.text(50, 50, f"all {len(table)} checkpoints score the same\n(see the table: are the responses unscored?)",
                ha="center", va="center", fontsize=11, color="0.3")
    return fig
