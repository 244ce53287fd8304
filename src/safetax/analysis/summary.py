"""One table of all checkpoints: per-benchmark scores in percent, means, STR, Pareto flag."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from safetax.analysis.metrics import pareto_front, safety_tax_rate
from safetax.records import BASE, CheckpointScores

log = logging.getLogger(__name__)

ID_COLUMNS = ["checkpoint", "method", "epoch"]
SUMMARY_COLUMNS = ["reasoning_mean", "safety_mean", "str", "pareto"]


def _check_shares(cs: CheckpointScores) -> None:
    """ValueError if a score is not a finite share in [0, 1] (e.g. already in percent)."""
    for kind, scores in (("reasoning", cs.reasoning), ("safety", cs.safety)):
        bad = {b: v for b, v in scores.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"checkpoint {cs.checkpoint!r}: {kind} scores must be shares in [0, 1], got {bad}")


def _check_benchmarks(cs: CheckpointScores, base: CheckpointScores) -> None:
    """ValueError if ``cs`` misses a benchmark of ``base``; log a warning for extra ones."""
    for kind, have, want in (
        ("reasoning", cs.reasoning, base.reasoning),
        ("safety", cs.safety, base.safety),
    ):
        missing = sorted(set(want) - set(have))
        if missing:
            raise ValueError(
                f"checkpoint {cs.checkpoint!r} misses {kind} benchmark(s) {missing} that base "
                f"{base.checkpoint!r} has"
            )
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
        raise ValueError(
            f"base {base!r} needs at least one reasoning and one safety benchmark, got "
            f"reasoning {sorted(base_cs.reasoning)}, safety {sorted(base_cs.safety)}"
        )
    others = sorted((cs for cs in scores if cs.checkpoint != base), key=lambda c: (c.method, c.epoch, c.checkpoint))
    return base_cs, others


def _row(cs: CheckpointScores, reasoning: Sequence[str], safety: Sequence[str]) -> dict[str, object]:
    """Identity columns and per-benchmark scores in percent, plus the two means."""
    row: dict[str, object] = {"checkpoint": cs.checkpoint, "method": cs.method, "epoch": cs.epoch}
    acc = [100.0 * cs.reasoning[b] for b in reasoning]
    safe = [100.0 * cs.safety[b] for b in safety]
    row.update({f"acc:{b}": v for b, v in zip(reasoning, acc)})
    for b, v in zip(safety, safe):
        row[f"safety:{b}"] = v
        row[f"asr:{b}"] = 100.0 - v
    # Over-refusal (share of benign prompts refused, lower is better): shown, not in STR or the front.
    row.update({f"overrefusal:{b}": 100.0 * v for b, v in sorted(cs.overrefusal.items())})
    row["reasoning_mean"] = sum(acc) / len(acc)
    row["safety_mean"] = sum(safe) / len(safe)
    # Responses no judge or scorer could read (e.g. cut off inside <think>): they count as
    # wrong / not safe above, and this says how many there were.
    row["unscored"] = sum(cs.counts.get(b, {}).get("unscored", 0) for b in [*reasoning, *safety])
    return row


def _pick(row: Mapping[str, object], prefix: str, benches: Sequence[str]) -> dict[str, float]:
    return {b: float(row[f"{prefix}:{b}"]) for b in benches}  # type: ignore[arg-type]


def summarize(scores: Sequence[CheckpointScores], base: str = BASE) -> pd.DataFrame:
    """Tabulate checkpoints against the base model.

    One row per checkpoint, the base first, then sorted by method and epoch. Columns:
    ``checkpoint, method, epoch``, ``acc:<bench>`` per reasoning benchmark, ``safety:<bench>``
    and ``asr:<bench>`` per safety benchmark, ``overrefusal:<bench>`` per over-refusal benchmark
    (all in %), ``reasoning_mean``, ``safety_mean``
    (%), ``unscored`` (responses that could not be judged or scored), ``str`` (safety tax rate vs the base, NaN for the base itself or where undefined)
    and ``pareto`` (on the Pareto front of (reasoning_mean, safety_mean) over all rows); with more
    than one reasoning benchmark also ``pareto:<bench>`` (the front of (acc:<bench>, safety_mean)).
    The benchmarks are those of the base; a checkpoint's extra benchmarks are left out.

    Args:
        scores: aggregate scores of each checkpoint, the base included.
        base: checkpoint name of the base model.

    Raises:
        ValueError: if there is no base row, a checkpoint name repeats, a checkpoint misses
            a benchmark of the base, or a score is not a share in ``[0, 1]``.
    """
    base_cs, others = _split_base(scores, base)
    reasoning, safety = sorted(base_cs.reasoning), sorted(base_cs.safety)
    for cs in [base_cs, *others]:
        _check_shares(cs)
        _check_benchmarks(cs, base_cs)
    rows = [_row(cs, reasoning, safety) for cs in [base_cs, *others]]
    base_row = rows[0]
    for i, row in enumerate(rows):
        row["str"] = math.nan if i == 0 else safety_tax_rate(
            _pick(base_row, "acc", reasoning),
            _pick(row, "acc", reasoning),
            _pick(base_row, "asr", safety),
            _pick(row, "asr", safety),
        )
    front = set(pareto_front([(float(r["reasoning_mean"]), float(r["safety_mean"])) for r in rows]))  # type: ignore[arg-type]
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    if len(reasoning) > 1:  # the papers' per-benchmark fronts (LoRA paper, Figures 2 and 5)
        for b in reasoning:
            bench_front = set(pareto_front([(float(r[f"acc:{b}"]), float(r["safety_mean"])) for r in rows]))  # type: ignore[arg-type]
            for i, row in enumerate(rows):
                row[f"pareto:{b}"] = i in bench_front
    table = pd.DataFrame(rows)
    table["epoch"] = table["epoch"].astype(int)
    table["unscored"] = table["unscored"].astype(int)
    for col in [c for c in table.columns if c == "pareto" or c.startswith("pareto:")]:
        table[col] = table[col].astype(bool)
    log.info("summarized %d checkpoint(s), %d on the Pareto front", len(table), len(front))
    return table
