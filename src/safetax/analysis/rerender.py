"""``safetax report RUN`` and ``safetax compare RUN RUN...``: reports of finished runs, from what they wrote.

Nothing is trained, generated, judged or scored again: the table is summarized from the run's score records, as
the analytics stage does (a stored ``results.csv`` of an older release may hold figures under older definitions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from safetax.analysis.report import write_report
from safetax.analysis.runs import RunOutputs, load_run
from safetax.analysis.summary import summarize
from safetax.metrics import pareto_front

log = logging.getLogger(__name__)


def run_table(run: RunOutputs) -> pd.DataFrame:
    """The run's results table, summarized from its score records with today's definitions (a stored results.csv
    of an older release may hold figures under older definitions: it is not used, so runs compare like with like)."""
    return summarize(run.scores)


def default_out(run: str) -> Path:
    """Where ``safetax report`` writes when not told: ``<run dir>/report`` for a local run, else
    ``report-<run id>`` in the current directory."""
    if run.startswith("s3://"):
        return Path(f"report-{run.rstrip('/').rsplit('/', 1)[-1]}")
    from safetax.analysis.runs import run_dir

    path = Path(run.removeprefix("file://"))
    try:
        return run_dir(path) / "report"
    except FileNotFoundError:
        return path / "report"


def report(run: str, out_dir: Path | None = None) -> Path:
    """Re-render the report (report.md, report.html, plots, results.csv) of one finished run; returns report.md."""
    from safetax.stages.analytics import render

    outputs = load_run(run)
    out = Path(out_dir) if out_dir is not None else default_out(run)
    return render(run_table(outputs), outputs.scores, out, notes=[f"Re-rendered from {outputs.source}."],
                  weights=outputs.weights, rpsa=outputs.rpsa, verdicts=outputs.verdicts, gate=outputs.gate,
                  title=f"safetax alignment report: {outputs.label}")


def _labels(runs: Sequence[RunOutputs]) -> list[str]:
    """Each run's label, made unique with ``#2``, ``#3``... when two runs have the same name."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
        out.append(r.label if seen[r.label] == 1 else f"{r.label}#{seen[r.label]}")
    return out


def combined_table(runs: Sequence[RunOutputs]) -> pd.DataFrame:
    """Every run's checkpoints in one table; checkpoint and method prefixed by ``<run>: `` (so each run's base
    is its own point), the Pareto front recomputed over all rows. Drops and STR stay against each run's base."""
    tables = []
    for label, run in zip(_labels(runs), runs):
        t = run_table(run).copy()
        t.insert(0, "run", label)
        t["checkpoint"] = [f"{label}: {c}" for c in t["checkpoint"]]
        t["method"] = [f"{label}: {m}" for m in t["method"]]
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    front = set(pareto_front(list(zip(table["reasoning_mean"], table["safety_mean"]))))
    table["pareto"] = [i in front for i in range(len(table))]
    return table.drop(columns=[c for c in table.columns if str(c).startswith("pareto:")])


def compare(runs: Sequence[str], out_dir: Path) -> Path:
    """One report of several runs' checkpoints: one table, one trade-off plot; returns report.md."""
    if len(runs) < 2:
        raise ValueError(f"compare needs at least two runs, got {len(runs)}")
    loaded = [load_run(r) for r in runs]
    table = combined_table(loaded)
    notes = [f"`{label}`: {r.source}" for label, r in zip(_labels(loaded), loaded)]
    notes.append("Drops and STR of each row are against the base model of its own run.")
    return write_report(table, Path(out_dir), title=f"safetax comparison of {len(runs)} runs", notes=notes)
