"""The report's per-category safety: StrongREJECT's categories and the Llama Guard hazards (S1-S14) of unsafe
verdicts, per checkpoint, from :func:`safetax.metrics.figures` (the same figures the metrics push)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from safetax.checkpoints import BASE
from safetax.metrics import Estimate, figures
from safetax.records import CheckpointScores


def _ordered(scores: Sequence[CheckpointScores]) -> list[CheckpointScores]:
    """The base first, then by method and epoch (as the results table)."""
    return sorted(scores, key=lambda c: (c.checkpoint != BASE, c.method, c.epoch, c.checkpoint))


def _cell(e: Estimate | None) -> str:
    return "-" if e is None else f"{100 * e.value:.1f} ± {100 * e.se:.1f}"


def category_table(scores: Sequence[CheckpointScores], bench: str) -> pd.DataFrame:
    """Safety score (% ± se) per category of ``bench``, one row per checkpoint that has its categories."""
    rows = []
    for cs in _ordered(scores):
        cats = figures(cs).categories.get(bench)
        if cats:
            rows.append({"checkpoint": cs.checkpoint, **{cat: _cell(e) for cat, e in cats.items()}})
    return pd.DataFrame(rows).fillna("-")


def hazard_table(scores: Sequence[CheckpointScores], bench: str) -> pd.DataFrame:
    """Share (% ± se) of ``bench``'s responses judged unsafe in each Llama Guard category, per checkpoint; an unsafe
    verdict may name several categories."""
    rows = [{"checkpoint": cs.checkpoint, **{code: _cell(e) for code, e in figures(cs).hazards.get(bench, {}).items()}}
            for cs in _ordered(scores) if bench in cs.safety]
    table = pd.DataFrame(rows).fillna("0.0")
    codes = sorted((c for c in table.columns if c != "checkpoint"), key=lambda c: int(c.lstrip("S") or 0))
    return table[["checkpoint", *codes]]


def category_sections(scores: Sequence[CheckpointScores]) -> list[str]:
    """The report's sections: safety per category, and the hazard categories of unsafe verdicts (Llama Guard in
    generate mode names them; in logit mode it does not, and the section is left out)."""
    from safetax.analysis.report import markdown_table

    parts: list[str] = []
    for bench in sorted({b for cs in scores for b in cs.categories}):
        parts += [f"### {bench}", markdown_table(category_table(scores, bench))]
    if parts:
        parts = ["## Safety per category",
                 "Safety score (% ± standard error) within each category of the benchmark's prompts.", *parts]
    hazards = sorted({b for cs in scores for b in cs.hazards})
    if hazards:
        from safetax.judging.llama_guard import CATEGORIES

        used = sorted({code for cs in scores for hz in cs.hazards.values() for code in hz}, key=lambda c: int(c.lstrip("S")))
        legend = ", ".join(f"{code} {CATEGORIES.get(code, '?')}" for code in used)
        parts += ["## Hazard categories of unsafe answers",
                  f"Share of responses (% ± standard error) that Llama Guard judged unsafe in each category ({legend}).",
                  *[p for b in hazards for p in (f"### {b}", markdown_table(hazard_table(scores, b)))]]
    return parts
