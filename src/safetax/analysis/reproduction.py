"""The reproduction section: a paper's published numbers beside the run's, with intervals and a verdict.

The published numbers live in ``safetax/published.yaml`` (paper, table, row, model, method, metric,
value; RPSA's Table 1 today: the LoRA paper reports figures only). A run's checkpoints are matched to
the paper's rows by method label (:data:`DEFAULT_METHODS`, the names the ``rpsa-paper-table1-*``
parameter files use; the last epoch of each) and its model by name, or explicitly for a stand-in
model. ``agrees`` says whether the published value lies inside the measured value's 95 % interval
(a binomial Wilson interval for a share, the bootstrap interval for STR). That interval covers the
run's sampling noise only: the published number has its own (AIME: 30 problems, one sample each, is
about +-9 points), so a "no" on a small benchmark is weak evidence and the ``note`` column names the
data differences (GPQA Diamond here vs Main in RPSA; MBPP+ 399 vs 378 tasks).
"""

from __future__ import annotations

import dataclasses

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from safetax.metrics import Estimate, compare, figures
from safetax.records import CheckpointScores

PUBLISHED = "published.yaml"
CONFIDENCE = 0.95
# Paper row -> the run's method label (``base`` = the base model), as the RPSA parameter files name them.
DEFAULT_METHODS = {"Original": "base", "FFT": "fft", "FFT+RPSA": "fft-rpsa", "LoRA": "lora", "LoRA+RPSA": "lora-rpsa"}


@dataclass(frozen=True)
class Published:
    paper: str
    table: str
    model: str
    method: str  # the paper's row label, e.g. "LoRA+RPSA"
    metric: str  # the paper's column, e.g. "AIME", "SR", "STR"
    value: float  # percent, or the ratio for STR


@dataclass(frozen=True)
class ReproductionRow:
    paper: str
    table: str
    row: str  # "<model> / <method>"
    metric: str
    published: float
    measured: float  # NaN when the run lacks the benchmark or the checkpoint
    ci_low: float
    ci_high: float
    agrees: bool | None  # None when nothing was measured
    note: str = ""


@cache
def published_data() -> dict[str, Any]:
    """The package's data file: ``papers``, ``metrics`` (how each is measured), ``rows``, ``models``."""
    return yaml.safe_load(resources.files("safetax").joinpath(PUBLISHED).read_text(encoding="utf-8"))


def published_values(data: Mapping[str, Any] | None = None) -> list[Published]:
    """Every published number as one record (a table row's metric columns flattened)."""
    d = data or published_data()
    keys = ("paper", "table", "model", "method")
    return [Published(*(str(r[k]) for k in keys), metric=m, value=float(v))
            for r in d["rows"] for m, v in r.items() if m not in keys]


def paper_model(base_model_uri: str, data: Mapping[str, Any] | None = None) -> str | None:
    """The paper's name of the run's model (``R1-Qwen-7B`` for ``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B``), or None.

    >>> paper_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"), paper_model("/models/tiny")
    ('R1-Qwen-7B', None)
    """
    models = (data or published_data())["models"]
    return next((short for short, full in models.items() if full.lower() in base_model_uri.lower()), None)


def last_epochs(checkpoints: Sequence[CheckpointScores]) -> dict[str, CheckpointScores]:
    """Each trained method's last-epoch checkpoint by method label (merge candidates, ``name+merge``, left out)."""
    out: dict[str, CheckpointScores] = {}
    for cs in checkpoints:
        if "+" not in cs.method and cs.method != "base" and (cs.method not in out or cs.epoch > out[cs.method].epoch):
            out[cs.method] = cs
    return out


_BY_BENCHMARK = ("reasoning", "safety", "counts", "overrefusal", "safety_labels", "benign_labels", "questions",
                 "categories", "hazards", "outcomes")


def restrict(cs: CheckpointScores, benchmarks: set[str]) -> CheckpointScores:
    """The record with only ``benchmarks``' figures (the paper's STR averages over its own table's benchmarks)."""
    return dataclasses.replace(cs, **{f: {b: v for b, v in getattr(cs, f).items() if b in benchmarks} for f in _BY_BENCHMARK})


def _measure(metric: Mapping[str, Any], base: CheckpointScores, cs: CheckpointScores,
             table_benchmarks: set[str] | None = None) -> tuple[float, float, float]:
    """(value, low, high) of a published metric on a checkpoint, in the paper's unit; NaNs when not measured. STR
    is measured over ``table_benchmarks`` (the published table's) when given, as the paper averaged its drops."""
    nan = (math.nan, math.nan, math.nan)
    if metric["figure"] == "safety_tax_rate":
        if table_benchmarks is not None:
            base, cs = restrict(base, table_benchmarks), restrict(cs, table_benchmarks)
        rate = compare(base, cs).safety_tax_rate
        return (rate.value, *rate.interval(CONFIDENCE)) if rate is not None else nan
    table: dict[str, Estimate] = getattr(figures(cs), metric["figure"])
    est = table.get(str(metric["benchmark"]))
    if est is None:
        return nan
    lo, hi = est.interval(CONFIDENCE)
    return 100 * est.value, 100 * lo, 100 * hi


def reproduce(base: CheckpointScores, checkpoints: Sequence[CheckpointScores], model: str,
              methods: Mapping[str, str] = DEFAULT_METHODS, data: Mapping[str, Any] | None = None) -> list[ReproductionRow]:
    """One row per published number of ``model`` whose paper row maps to a method of the run.

    Args:
        base: the base model's scores (the paper's "Original").
        checkpoints: every trained checkpoint's scores; the last epoch of each method is compared.
        model: the paper's model name (:func:`paper_model` of the run's base model, or a stand-in's choice).
        methods: paper row -> the run's method label; rows whose method the run lacks are left out.
        data: the published data (default: the package's file).
    """
    d = data or published_data()
    runs = last_epochs(checkpoints) | {"base": base}
    rows: list[ReproductionRow] = []
    for p in published_values(d):
        run = runs.get(methods.get(p.method, ""))
        if p.model != model or run is None:
            continue
        metric = d["metrics"][p.metric]
        value, lo, hi = _measure(metric, base, run, {str(m["benchmark"]) for m in d["metrics"].values() if "benchmark" in m})
        agrees = None if math.isnan(value) else bool(lo <= p.value <= hi)
        rows.append(ReproductionRow(p.paper, p.table, f"{p.model} / {p.method}", p.metric, p.value, value, lo, hi, agrees,
                                    str(metric.get("note", ""))))
    return rows


def _num(x: float, metric: str) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x:.4f}" if metric == "STR" else f"{x:.2f}"


def reproduction_markdown(rows: Sequence[ReproductionRow], data: Mapping[str, Any] | None = None) -> str:
    """The report's "Reproduction" section: a table per paper table and the notes on data differences."""
    if not rows:
        return ""
    d = data or published_data()
    papers, selection = d["papers"], d.get("selection") or {}
    lines = ["## Reproduction", ""]
    for key in dict.fromkeys((r.paper, r.table) for r in rows):
        chosen = f" Checkpoints: {selection[key[0]]}." if key[0] in selection else ""
        lines += [f"Published: {papers.get(key[0], key[0])}. Measured: this run, last epoch of each method, "
                  f"with its {CONFIDENCE:.0%} interval; agrees = the published value lies inside it.{chosen}", "",
                  "| row | metric | published | measured | interval | agrees |", "|---|---|---:|---:|---|---|"]
        for r in (r for r in rows if (r.paper, r.table) == key):
            interval = "n/a" if math.isnan(r.ci_low) else f"[{_num(r.ci_low, r.metric)}, {_num(r.ci_high, r.metric)}]"
            verdict = "n/a" if r.agrees is None else ("yes" if r.agrees else "no")
            lines.append(f"| {r.row} | {r.metric} | {_num(r.published, r.metric)} | {_num(r.measured, r.metric)} | {interval} | {verdict} |")
        lines.append("")
    notes = sorted({f"{r.metric}: {r.note}" for r in rows if r.note})
    return "\n".join(lines + [f"- {n}" for n in notes]).rstrip() + "\n"
