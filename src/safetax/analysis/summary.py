"""One table of all checkpoints: per-benchmark figures in percent with standard errors, drops against the
base model with paired bootstrap intervals, STR and the Pareto flags. Every figure is :mod:`safetax.metrics`'s."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from statistics import NormalDist

import pandas as pd

from safetax.checkpoints import BASE
from safetax.metrics import Comparison, Difference, Estimate, Figures, compare, figures, pareto_front
from safetax.records import CheckpointScores

log = logging.getLogger(__name__)

ID_COLUMNS = ["checkpoint", "method", "epoch"]
SE = "se:"  # prefix of a figure's standard error column: se:acc:math500 for acc:math500
CONFIDENCE = 0.95  # of the report's intervals (two-sided)
PARETO_ON = ("mean", "lower")


def _check_shares(cs: CheckpointScores) -> None:
    """ValueError if a score is not a finite share in [0, 1] (e.g. already in percent)."""
    for kind, scores in (("reasoning", cs.reasoning), ("safety", cs.safety)):
        bad = {b: v for b, v in scores.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"checkpoint {cs.checkpoint!r}: {kind} scores must be shares in [0, 1], got {bad}")


def _check_benchmarks(cs: CheckpointScores, base: CheckpointScores) -> None:
    """ValueError if ``cs`` misses a benchmark of ``base``; log a warning for extra ones."""
    for kind, have, want in (("reasoning", cs.reasoning, base.reasoning), ("safety", cs.safety, base.safety)):
        missing = sorted(set(want) - set(have))
        if missing:
            raise ValueError(f"checkpoint {cs.checkpoint!r} misses {kind} benchmark(s) {missing} that base {base.checkpoint!r} has")
        extra = sorted(set(have) - set(want))
        if extra:
            log.warning("checkpoint %r: %s benchmark(s) %s not in base, left out", cs.checkpoint, kind, extra)


def _split_base(scores: Sequence[CheckpointScores], base: str) -> tuple[CheckpointScores, list[CheckpointScores]]:
    """The base record and the others sorted by (method, epoch, checkpoint); checks names."""
    names = [cs.checkpoint for cs in scores]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"duplicate checkpoint(s) {dups}")
    bases = [cs for cs in scores if cs.checkpoint == base]
    if not bases:
        raise ValueError(f"no base row: no checkpoint named {base!r} among {names}")
    base_cs = bases[0]
    if not base_cs.reasoning or not base_cs.safety:
        raise ValueError(f"base {base!r} needs at least one reasoning and one safety benchmark, got "
                         f"reasoning {sorted(base_cs.reasoning)}, safety {sorted(base_cs.safety)}")
    others = sorted((cs for cs in scores if cs.checkpoint != base), key=lambda c: (c.method, c.epoch, c.checkpoint))
    return base_cs, others


def _put(row: dict[str, object], column: str, e: Estimate) -> None:
    row[column], row[SE + column] = 100.0 * e.value, 100.0 * e.se


def _restricted(cs: CheckpointScores, reasoning: Sequence[str], safety: Sequence[str]) -> Figures:
    f = figures(cs)
    return Figures({b: f.safety[b] for b in safety}, {b: f.attack_success_rate[b] for b in safety},
                   {b: f.unscored[b] for b in safety}, f.overrefusal, {b: f.pass_at_1[b] for b in reasoning})


def _row(cs: CheckpointScores, reasoning: Sequence[str], safety: Sequence[str]) -> dict[str, object]:
    """Identity columns, per-benchmark figures and their means in percent, each with its standard error."""
    f = _restricted(cs, reasoning, safety)
    row: dict[str, object] = {"checkpoint": cs.checkpoint, "method": cs.method, "epoch": cs.epoch}
    for b in reasoning:
        _put(row, f"acc:{b}", f.pass_at_1[b])
    for b in safety:
        _put(row, f"safety:{b}", f.safety[b])
        _put(row, f"asr:{b}", f.attack_success_rate[b])
        row[f"unscored:{b}"] = 100.0 * f.unscored[b].value
    for b, e in f.overrefusal.items():  # shown, not in STR or the front: lower is better
        _put(row, f"overrefusal:{b}", e)
    _put(row, "reasoning_mean", f.reasoning_mean)  # type: ignore[arg-type]
    _put(row, "safety_mean", f.safety_mean)  # type: ignore[arg-type]
    _put(row, "asr_mean", f.attack_success_rate_mean)  # type: ignore[arg-type]
    # Responses no judge or scorer could read (e.g. cut off inside <think>): not safe, no attack, wrong, not refused
    # (an over-refusal benchmark's: its benign prompts' unscored answers, which the over-refusal rate counts as answered).
    row["unscored"] = (sum(cs.counts.get(b, {}).get("unscored", 0) for b in [*reasoning, *safety])
                       + sum(c.unscored for c in cs.benign_labels.values()))
    return row


def _put_difference(row: dict[str, object], column: str, d: Difference | None, scale: float) -> None:
    lo, hi = d.interval(CONFIDENCE) if d is not None else (math.nan, math.nan)
    row[column] = scale * d.value if d is not None else math.nan
    row[SE + column] = scale * d.se if d is not None else math.nan
    row[f"{column}_lo"], row[f"{column}_hi"] = scale * lo, scale * hi


def _against_base(row: dict[str, object], c: Comparison | None) -> None:
    """Drops (percentage points) and STR with their intervals; ``noise``: the drops whose interval holds 0."""
    _put_difference(row, "reasoning_drop", c.reasoning_drop_mean if c else None, 100.0)
    _put_difference(row, "asr_drop", c.harmfulness_drop_mean if c else None, 100.0)
    _put_difference(row, "str", c.safety_tax_rate if c else None, 1.0)
    noisy = [name for name, d in (("reasoning", c.reasoning_drop_mean if c else None), ("asr", c.harmfulness_drop_mean if c else None))
             if d is not None and d.inside_noise(CONFIDENCE)]
    row["noise"] = ", ".join(noisy)


def _bounded(row: dict[str, object], column: str, pareto_on: str) -> float:
    """The figure the front is computed on: the mean, or its one-sided lower bound (the mean without an se)."""
    value, se = float(row[column]), float(row[SE + column])  # type: ignore[arg-type]
    if pareto_on == "mean" or not math.isfinite(se):
        return value
    return value - NormalDist().inv_cdf(CONFIDENCE) * se


def _flag_fronts(rows: list[dict[str, object]], reasoning: Sequence[str], pareto_on: str) -> None:
    """``pareto`` (and ``pareto:<bench>`` with several reasoning benchmarks) on means or lower bounds."""
    front = set(pareto_front([(_bounded(r, "reasoning_mean", pareto_on), _bounded(r, "safety_mean", pareto_on)) for r in rows]))
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    if len(reasoning) > 1:  # the papers' per-benchmark fronts (LoRA paper, Figures 2 and 5)
        for b in reasoning:
            bench = set(pareto_front([(_bounded(r, f"acc:{b}", pareto_on), _bounded(r, "safety_mean", pareto_on)) for r in rows]))
            for i, row in enumerate(rows):
                row[f"pareto:{b}"] = i in bench


def summarize(scores: Sequence[CheckpointScores], base: str = BASE, pareto_on: str = "mean") -> pd.DataFrame:
    """Tabulate checkpoints against the base model.

    One row per checkpoint, the base first, then sorted by method and epoch. Columns (figures in %, each
    ``X`` with its standard error ``se:X``): ``checkpoint, method, epoch``, ``acc:<bench>`` per reasoning
    benchmark, ``safety:<bench>``, ``asr:<bench>`` and ``unscored:<bench>`` per safety benchmark (the three add
    up to 100), ``overrefusal:<bench>`` per over-refusal benchmark, ``reasoning_mean``, ``safety_mean``,
    ``asr_mean``, ``unscored`` (responses no judge or scorer could read), ``reasoning_drop`` and ``asr_drop``
    against the base (percentage points) and ``str`` (safety tax rate), each with its 95 % paired bootstrap
    interval ``_lo`` / ``_hi`` (NaN for the base), ``noise`` (the drops whose interval holds 0), and ``pareto``
    (on the front of (reasoning_mean, safety_mean): of the means, or with ``pareto_on="lower"`` of their
    one-sided 95 % lower bounds); with several reasoning benchmarks also ``pareto:<bench>``. The benchmarks
    are those of the base; a checkpoint's extra benchmarks are left out.

    Raises:
        ValueError: if there is no base row, a checkpoint name repeats, a checkpoint misses a benchmark of
            the base, a score is not a share in ``[0, 1]``, or ``pareto_on`` is unknown.
    """
    if pareto_on not in PARETO_ON:
        raise ValueError(f"pareto_on must be one of {list(PARETO_ON)}, got {pareto_on!r}")
    base_cs, others = _split_base(scores, base)
    reasoning, safety = sorted(base_cs.reasoning), sorted(base_cs.safety)
    for cs in [base_cs, *others]:
        _check_shares(cs)
        _check_benchmarks(cs, base_cs)
    rows = []
    for cs in [base_cs, *others]:
        row = _row(cs, reasoning, safety)
        _against_base(row, None if cs is base_cs else compare(base_cs, cs))
        rows.append(row)
    _flag_fronts(rows, reasoning, pareto_on)
    table = pd.DataFrame(rows)
    table["epoch"] = table["epoch"].astype(int)
    table["unscored"] = table["unscored"].astype(int)
    for col in [c for c in table.columns if c == "pareto" or c.startswith("pareto:")]:
        table[col] = table[col].astype(bool)
    log.info("summarized %d checkpoint(s), %d on the Pareto front", len(table), int(table["pareto"].sum()))
    return table
