"""Stage `analytics`: the safety-vs-reasoning table, STR, Pareto front, plots and the report (Markdown and
self-contained HTML)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from safetax.analysis.categories import category_sections
from safetax.analysis.report import Section, write_report
from safetax.analysis.sections import rpsa_section, verdict_section
from safetax.analysis.summary import summarize
from safetax.artifacts import read_scores
from safetax.checkpoints import CheckpointRef
from safetax.records import CheckpointScores
from safetax.stages.analyze import METRICS, load_tables
from safetax.stages.runtime import RunContext
from safetax.store import atomic_dir
from safetax.timing import timed

log = logging.getLogger(__name__)
REPORT = "report.md"
HTML = "report.html"
PLOT = "tradeoff.png"


def run(score_dirs: Sequence[Path], out_dir: Path, notes: Sequence[str] = (), analysis_dirs: Sequence[Path] = (),
        rpsa: Mapping[str, Mapping[str, Any]] | None = None, base_model: str = "") -> pd.DataFrame:
    """Write ``report.md``, ``report.html``, ``tradeoff.png`` and ``results.csv`` for the base model and every
    checkpoint; with ``analysis_dirs`` (analyze stage outputs) also the weight-update analysis of every method,
    with ``rpsa`` (an RPSA method's label -> its train output's ``rpsa.json``) RPSA's frozen-ratio history; when
    ``base_model`` is a model a paper reports on, the reproduction section (published numbers beside the run's)."""
    scores = read_scores(list(score_dirs))
    with timed("analytics"), atomic_dir(out_dir) as tmp:
        table = summarize(scores)
        render(table, scores, tmp, notes, load_tables(list(analysis_dirs)), rpsa or {}, base_model=base_model)
    log.info("report of %d checkpoints written to %s", len(table), out_dir / REPORT)
    return table


def render(table: pd.DataFrame, scores: Sequence[CheckpointScores], out_dir: Path, notes: Sequence[str] = (),
           weights: pd.DataFrame | None = None, rpsa: Mapping[str, Mapping[str, Any]] | None = None,
           verdicts: Mapping[str, Mapping[str, Any]] | None = None, gate: Mapping[str, Any] | None = None,
           title: str = "safetax alignment report", base_model: str = "") -> Path:
    """The report of a summary table and what else a run left (``safetax report`` re-renders with this too)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = sorted({f"{b} v{v}" for s in scores for b, v in s.versions.items()})
    notes = [*notes, *([f"Benchmark versions: {', '.join(versions)}."] if versions else [])]
    sections: list[Section] = [*category_sections(scores), *weight_sections(pd.DataFrame() if weights is None else weights, out_dir),
                               *rpsa_section(rpsa or {}, out_dir), *verdict_section(verdicts or {}, gate),
                               *reproduction_section(scores, base_model), *agreement_section(scores), *cost_section(scores)]
    return write_report(table, out_dir, title=title, notes=notes, sections=sections)


def cost_section(scores: Sequence[CheckpointScores]) -> list[str]:
    """What evaluating each checkpoint cost, per stage (generate, judge), and the run's totals: samples made, resumed
    and read from the cache, tokens, tokens/s, GPU-seconds."""
    rows = [(s.checkpoint, stage, c) for s in scores for stage, c in sorted(s.cost.items())]
    if not rows:
        return []
    lines = ["## Cost", "",
             "Per checkpoint and stage: samples generated here, resumed from the task's own chunks, read from the cache; "
             "tokens generated here; wall time x GPUs of the pod.", "",
             "| checkpoint | stage | samples | generated | resumed | cached | cache hit % | tokens | tokens/s | GPU-s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ckpt, stage, c in rows:
        lines.append(f"| {ckpt} | {stage} | {c['samples']:.0f} | {c['generated']:.0f} | {c['resumed']:.0f} | {c['cached']:.0f} | "
                     f"{100 * c['cache_hit_rate']:.0f} | {c['tokens']:.0f} | {c['tokens_per_second']:.0f} | {c['gpu_seconds']:.0f} |")
    for stage in sorted({stage for _, stage, _ in rows}):
        mine = [c for _, st, c in rows if st == stage]
        total = {k: sum(c[k] for c in mine) for k in ("samples", "generated", "resumed", "cached", "tokens", "gpu_seconds", "wall_s")}
        hit = total["cached"] / (total["cached"] + total["generated"]) if total["cached"] + total["generated"] else 0.0
        rate = total["tokens"] / total["wall_s"] if total["wall_s"] else 0.0
        lines.append(f"| **all** | {stage} | {total['samples']:.0f} | {total['generated']:.0f} | {total['resumed']:.0f} | "
                     f"{total['cached']:.0f} | {100 * hit:.0f} | {total['tokens']:.0f} | {rate:.0f} | {total['gpu_seconds']:.0f} |")
    return ["\n".join(lines)]


def agreement_section(scores: Sequence[CheckpointScores]) -> list[str]:
    """How far two judges agree on the same safety responses (all checkpoints pooled), when a run had two."""
    from safetax.analysis.agreement import agreement_markdown, pooled

    text = agreement_markdown(pooled(s.judge_agreement for s in scores))
    return [text] if text else []


def reproduction_section(scores: Sequence[CheckpointScores], base_model: str) -> list[str]:
    """Published numbers beside the run's, when the base model is one a paper reports on (and the run has a base)."""
    from safetax.analysis.reproduction import paper_model, reproduce, reproduction_markdown

    model = paper_model(base_model) if base_model else None
    base = next((s for s in scores if s.checkpoint == "base"), None)
    if model is None or base is None:
        return []
    rows = reproduce(base, [s for s in scores if s.checkpoint != "base"], model)
    return [reproduction_markdown(rows)] if rows else []


def weight_sections(weights: pd.DataFrame, out_dir: Path) -> list[str]:
    """The report's weight-update analysis: per-method means per module type and the two plots."""
    if weights.empty:
        return []
    from safetax.analysis.report import markdown_table
    from safetax.analysis.weight_plots import plot_overlaps, plot_stable_rank

    weights.to_csv(out_dir / "weights.csv", index=False)
    plot_stable_rank(weights, out_dir / "weights-stable-rank.png")
    plot_overlaps(weights, out_dir / "weights-overlaps.png")
    means = weights.groupby(["method", "module"], sort=True)[list(METRICS)].mean().reset_index()
    return [
        "## Weight updates",
        "Per updated matrix of the last epoch (all rows in `weights.csv`): the stable rank of dW and its overlap "
        "with the base weights W_I (LoRA paper, sec. 5.1; k = top singular vectors of W_I). Means per module type:",
        markdown_table(means),
        "![Stable rank of dW per layer](weights-stable-rank.png)",
        "![Overlap of dW with W_I per module type](weights-overlaps.png)",
    ]


def push_tradeoffs(table: pd.DataFrame, ctx: RunContext, out_dir: Path) -> dict[str, float]:
    """STR, mean reasoning drop and mean ASR drop of every checkpoint against the base model (the report's
    figures: :func:`safetax.analysis.summary.summarize`), with their bootstrap standard errors, as metrics.

    One telemetry group per training method (the Pushgateway keys groups by method; a merge candidate is in its
    method's), each series labelled with the checkpoint's string form. Without a gateway each group lands in
    ``telemetry/<method>/metrics.prom`` under ``out_dir``. Drops are in points of 0..1. Returns the figures for
    the KFP Metrics artifact.
    """
    from safetax.telemetry import StageTelemetry

    rows = [(CheckpointRef.parse(str(r["checkpoint"])), r) for _, r in table.iterrows()]
    figures: dict[str, float] = {}
    for method in sorted({ref.method for ref, _ in rows if not ref.is_base}):
        tel = StageTelemetry("analytics", pipeline=ctx.pipeline, run_id=ctx.run_id or "local", model=ctx.model,
                             method=method, out_dir=out_dir / "telemetry" / method)
        for ref, row in [(ref, row) for ref, row in rows if ref.method == method]:
            tel.tradeoff(checkpoint=str(ref), safety_tax_rate=_finite(row["str"]),
                         reasoning_drop=_finite(row["reasoning_drop"], 100), harmfulness_drop=_finite(row["asr_drop"], 100))
            labels = tel.labels.result_labels(str(ref))
            for kind, column, scale in (("reasoning_drop_stderr", "se:reasoning_drop", 100), ("harmfulness_drop_stderr", "se:asr_drop", 100),
                                        ("safety_tax_rate_stderr", "se:str", 1)):
                value = _finite(row.get(column, math.nan), scale)
                if value is not None:
                    tel.metrics.tradeoffs[kind].labels(**labels).set(value)
        tel.publish()
        figures |= {f"{name}/{method}": v for name, v in tel.kfp_metrics().items()}
    return figures


def _finite(value: object, scale: float = 1.0) -> float | None:
    v = float(value)  # type: ignore[arg-type]
    return v / scale if math.isfinite(v) else None


def inline_report(results_dir: Path) -> str:
    """``report.md`` as written: every plot is already inline (``data:`` URIs), for single-file viewers such as
    the KFP UI."""
    return (results_dir / REPORT).read_text(encoding="utf-8")


def html_report(results_dir: Path) -> str:
    """``report.html``: one self-contained page (plots embedded, no network), the KFP UI's HTML artifact."""
    return (results_dir / HTML).read_text(encoding="utf-8")


def rpsa_from_store(store_uri: str, run_id: str) -> dict[str, dict[str, Any]]:
    """Every RPSA method's ``rpsa.json`` that the run's train tasks published under ``<store_uri>/<run id>/train/``
    (empty without a store, or when the listing fails: the history is an extra, never a reason to fail)."""
    if not store_uri or not run_id:
        return {}
    from safetax.analysis.runs import from_store_stage
    from safetax.store import StoreError

    try:
        return from_store_stage(f"{store_uri.rstrip('/')}/{run_id}/train")
    except (StoreError, OSError) as e:
        log.warning("RPSA history left out of the report: %s", e)
        return {}
