"""The report of a summary table (Markdown and self-contained HTML from the same blocks), its CSV and plots;
a plain-text table for the CLI."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from safetax.analysis.document import Block, Bullets, Heading, Image, Table, Text, from_markdown, to_markdown
from safetax.analysis.html import to_html
from safetax.analysis.plots import plot_tradeoff

log = logging.getLogger(__name__)

NA = "n/a"
NOISE = "~"  # marks a drop against the base whose 95 % interval holds 0
DEFINITIONS = (
    "Every figure is computed from counts by one module (`safetax.metrics`), the same that feeds the KFP metrics, "
    "the Prometheus gauges, the audits and the safety gate. Reasoning benchmarks (`acc:<bench>`): pass@1, the mean "
    "over questions of the share of correct samples (an answer that could not be scored counts as wrong). Safety "
    "benchmarks of harmful prompts: `safety:<bench>` (safety score) = safe / all responses; `asr:<bench>` (attack success rate) = "
    "unsafe / all responses; `unscored:<bench>` = responses no judge could read (e.g. cut off inside `<think>`) / all "
    "responses. The three add up to 100: an unscored response is neither safe nor an attack, and is reported on its "
    "own. All figures are in percent, shown as `value ± standard error` (a share: the binomial standard error; "
    "pass@1: the standard error over questions, the samples of one question being one cluster; a mean over "
    "benchmarks: sqrt(sum se^2) / k). `reasoning_mean`, `safety_mean` and `asr_mean` average over benchmarks. "
    "Against the base model: `reasoning_drop` (mean pass@1 drop) and `asr_drop` (mean ASR drop), in percentage "
    "points, and `str`, the safety tax rate (RPSA) = reasoning drop / ASR drop (lower is better, 0 = no reasoning "
    "cost; negative when reasoning improved while ASR fell, and also when ASR rose: read it with `asr_drop` (an "
    "audit's or gate's `max_safety_tax_rate` fails a checkpoint that lost reasoning without lowering ASR); n/a for "
    "the base or when ASR did not change; its denominator is the ASR drop, as in the paper, while `pareto` and the "
    "safety columns use the safety score, so unscored answers (no attack, not safe) move the two apart), each with "
    "its 95 % interval `[lo, hi]` from a paired bootstrap over questions and prompts (seeded; a normal "
    f"approximation for a record without per-item outcomes). A `{NOISE}` marks a drop whose interval holds 0: "
    "inside the noise. `pareto` marks checkpoints that no other checkpoint beats on both mean reasoning and mean "
    "safety. `unscored` counts the unreadable responses of all benchmarks. `overrefusal:<bench>` is the share of "
    "benign prompts (XSTest's safe ones, WildJailbreak's benign ones) that the model refused: lower is better, and "
    "a model that refuses everything scores 100 there however safe it looks."
)
HIDDEN = ("noise",)  # folded into the drop cells


def _pct_se(value: object, se: object) -> str:
    v, e = float(value), float(se)  # type: ignore[arg-type]
    if math.isnan(v):
        return NA
    return f"{v:.1f}" if math.isnan(e) else f"{v:.1f} ± {e:.1f}"


def _with_interval(column: str, value: object, lo: object, hi: object, noise: str) -> str:
    v, a, b = float(value), float(lo), float(hi)  # type: ignore[arg-type]
    if math.isnan(v):
        return NA
    digits = 2 if column == "str" else 1
    text = f"{v:.{digits}f}" if math.isnan(a) and math.isnan(b) else f"{v:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
    return text + (f" {NOISE}" if column.removesuffix("_drop") in noise.split(", ") and noise else "")


def display_table(table: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
    """The table as shown: ``X ± se`` for a figure with a ``se:X`` column, ``X [lo, hi]`` for one with
    ``X_lo``/``X_hi`` (a drop inside the noise marked ``~``); returns it with each column's right alignment."""
    cols = [c for c in table.columns if not str(c).startswith("se:") and c not in HIDDEN
            and not (str(c).endswith(("_lo", "_hi")) and str(c)[:-3] in table.columns)]
    # a table read back from results.csv has an all-NaN float column when no drop is inside the noise
    noise = table["noise"].astype(object).where(table["noise"].notna(), "").astype(str) if "noise" in table.columns else pd.Series([""] * len(table), index=table.index)
    out: dict[str, list[str] | pd.Series] = {}
    for c in cols:
        if f"{c}_lo" in table.columns and f"{c}_hi" in table.columns:
            out[c] = [_with_interval(str(c), v, lo, hi, n) for v, lo, hi, n in zip(table[c], table[f"{c}_lo"], table[f"{c}_hi"], noise)]
        elif f"se:{c}" in table.columns:
            out[c] = [_pct_se(v, e) for v, e in zip(table[c], table[f"se:{c}"])]
        else:
            out[c] = table[c]
    right = [_is_numeric(table, c) for c in cols]
    return pd.DataFrame(out, index=table.index)[cols], right


def format_cell(column: str, value: object) -> str:
    """Render one cell: floats to 1 decimal (``str`` to 2), NaN as ``n/a``, bools as yes/no.

    >>> format_cell("acc:gsm8k", 61.26), format_cell("str", 0.16666), format_cell("str", float("nan"))
    ('61.3', '0.17', 'n/a')
    >>> format_cell("pareto", True), format_cell("epoch", 2), format_cell("method", "lora")
    ('yes', '2', 'lora')
    """
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return NA
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.2f}" if column == "str" else f"{float(value):.1f}"
    return str(value)


def _is_numeric(table: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column])


def _cells(table: pd.DataFrame) -> list[list[str]]:
    return [[format_cell(c, v) for c, v in zip(table.columns, row)] for row in table.itertuples(index=False)]


def table_block(table: pd.DataFrame, name: str = "") -> Table:
    """The table as :func:`display_table` shows it, as a report block (``name``: its HTML id)."""
    shown, right = display_table(table)
    return Table(tuple(str(c) for c in shown.columns), tuple(tuple(r) for r in _cells(shown)), tuple(right), name)


def markdown_table(table: pd.DataFrame) -> str:
    """The table as a GitHub Markdown table (numbers right-aligned), as :func:`display_table` shows it."""
    return to_markdown([table_block(table)]).rstrip("\n")


def format_table(table: pd.DataFrame) -> str:
    """Fixed-width plain-text table for a terminal, rounded as :func:`format_cell`.

    >>> print(format_table(pd.DataFrame({"checkpoint": ["base"], "str": [float("nan")]})))
    checkpoint  str
    ----------  ---
    base        n/a
    """
    shown, right = display_table(table)
    cols = [str(c) for c in shown.columns]
    rows = _cells(shown)
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        parts = [s.rjust(w) if r else s.ljust(w) for s, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _pareto_lines(table: pd.DataFrame, column: str = "pareto", x: str = "reasoning_mean") -> list[str]:
    """Bullets of the Pareto-optimal checkpoints (by ``column``) with their reasoning (``x``) and safety."""
    if column not in table.columns:
        return [f"(no `{column}` column in the table)"]
    front = table[table[column].astype(bool)]
    shown, _ = display_table(front)
    return [
        f"`{r['checkpoint']}`: reasoning {shown.loc[i, x]} %, safety {shown.loc[i, 'safety_mean']} %"
        for i, r in front.iterrows()
    ] or ["(none)"]


def _per_benchmark_fronts(table: pd.DataFrame, out_dir: Path) -> list[Block]:
    """A section per reasoning benchmark: its Pareto-optimal checkpoints and its trade-off plot."""
    parts: list[Block] = []
    for column in [c for c in table.columns if c.startswith("pareto:")]:
        bench = column.removeprefix("pareto:")
        plot = plot_tradeoff(table.assign(pareto=table[column]), out_dir / f"tradeoff-{bench}.png", x=f"acc:{bench}",
                             xlabel=f"{bench} accuracy / pass@1 (%)")
        parts += [Heading(bench, 3), Bullets(tuple(_pareto_lines(table, column, f"acc:{bench}"))),
                  Image(plot, f"Safety vs {bench}")]
    return [Heading("Pareto fronts per reasoning benchmark"), *parts] if parts else []


def method_table(table: pd.DataFrame) -> pd.DataFrame:
    """RPSA's Table 1 layout: the base and each method's last checkpoint; reasoning accuracies, ASRs and STR."""
    last = table.loc[table.groupby("method", sort=False)["epoch"].idxmax()]
    cols = ["method", "epoch", *[c for c in table.columns if c.startswith(("acc:", "asr:", "se:acc:", "se:asr:"))],
            "str", "str_lo", "str_hi"]
    return last[[c for c in cols if c in last.columns]].reset_index(drop=True)


Section = str | Block  # a Markdown section (parsed by from_markdown) or a block


def report_blocks(table: pd.DataFrame, out_dir: Path, title: str = "safetax alignment report", notes: Sequence[str] = (),
                  sections: Sequence[Section] = ()) -> list[Block]:
    """The report's blocks; writes the trade-off plots into ``out_dir`` (see :func:`write_report`)."""
    plot = plot_tradeoff(table, out_dir / "tradeoff.png")
    blocks: list[Block] = [
        Heading(title, 1),
        Heading(f"Results ({len(table)} checkpoint(s))"),
        Text("Figures in %, `value ± standard error`; drops and STR against the base with their 95 % interval "
             "`[lo, hi]`. Click a column header to sort. Definitions at the end."),
        table_block(table, "results"),
        Heading("Per method (last epoch; RPSA's Table 1 layout)"),
        Text("Reasoning accuracy per benchmark, ASR per safety benchmark (lower is better) and STR against the base."),
        table_block(method_table(table), "methods"),
        Heading("Pareto-optimal checkpoints"),
        Bullets(tuple(_pareto_lines(table))),
        Heading("Safety vs reasoning"),
        Image(plot, "Safety vs reasoning trade-off per checkpoint"),
        *_per_benchmark_fronts(table, out_dir),
    ]
    for section in sections:
        blocks += from_markdown(section, out_dir) if isinstance(section, str) else [section]
    if notes:
        blocks += [Heading("Notes"), Bullets(tuple(notes))]
    return [*blocks, Heading("What was measured"), Text(DEFINITIONS)]


def write_report(
    table: pd.DataFrame,
    out_dir: Path,
    title: str = "safetax alignment report",
    notes: Sequence[str] = (),
    sections: Sequence[Section] = (),
) -> Path:
    """Write ``report.md``, ``report.html``, ``tradeoff.png`` and ``results.csv`` of a summary table into ``out_dir``.

    Both reports hold every plot inline (``data:`` URIs), so either file can be read on its own; the PNG
    files are written beside them too.

    Args:
        table: a :func:`~safetax.analysis.summary.summarize` table.
        out_dir: folder to write into (created if needed).
        title: the report's heading.
        notes: free-form remarks, listed as bullets at the end.
        sections: further sections (e.g. the weight-update analysis) before the notes: Markdown text or blocks.

    Returns:
        Path of ``report.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "results.csv", index=False)
    blocks = report_blocks(table, out_dir, title, notes, sections)
    path = out_dir / "report.md"
    path.write_text(to_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
    log.info("wrote report of %d checkpoint(s) to %s and report.html", len(table), path)
    return path
