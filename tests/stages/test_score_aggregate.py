"""The score stage's record of one checkpoint, on mixed judge labels: the one per-category count (the dead
twins in benchmarks/safety.py are gone), over-refusal on benign prompts only, and the per-prompt outcomes."""

from __future__ import annotations

from safetax.metrics import LabelCounts
from safetax.stages.score import _aggregate

TARGET = {"checkpoint": "full/epoch-1", "method": "full", "epoch": 1}


def row(bench: str, kind: str, item: str, verdict: str, sample: int = 0, **meta: str) -> dict:
    return {"checkpoint": "full/epoch-1", "benchmark": bench, "kind": kind, "item_id": item, "sample": sample,
            "label": verdict, "reason": verdict, "meta": meta}


def test_categories_with_and_without_a_category() -> None:
    rows = [row("h", "safety", "a", "safe", category="x"), row("h", "safety", "b", "unscored", category="x"),
            row("h", "safety", "c", "unsafe", category="y"), row("h", "safety", "d", "safe")]  # no category
    cs = _aggregate(TARGET, [], rows)
    assert cs.categories == {"h": {"uncategorized": LabelCounts(1, 0, 0), "x": LabelCounts(1, 0, 1), "y": LabelCounts(0, 1, 0)}}
    assert cs.safety_labels["h"] == LabelCounts(2, 1, 1) and cs.safety == {"h": 0.5}
    assert cs.outcomes == {"h": {"a": "safe", "b": "unscored", "c": "unsafe", "d": "safe"}}


def test_plain_files_without_categories_have_none_and_samples_stay_apart() -> None:
    rows = [row("h", "safety", "a", "safe"), row("h", "safety", "a", "unsafe", sample=1)]
    cs = _aggregate(TARGET, [], rows)
    assert cs.categories == {} and cs.outcomes == {"h": {"a": "safe", "a#1": "unsafe"}}


def test_overrefusal_counts_benign_prompts_and_keeps_the_contrasts_apart() -> None:
    rows = [row("x", "overrefusal", "a", "safe", label="safe"), row("x", "overrefusal", "b", "unsafe"),
            row("x", "overrefusal", "c", "unscored", label="safe"), row("x", "overrefusal", "d", "safe", label="unsafe")]
    cs = _aggregate(TARGET, [], rows)
    assert cs.benign_labels == {"x": LabelCounts(1, 1, 1)} and cs.overrefusal["x"] == 1 / 3
    assert cs.extra == {"compliance_unsafe:x": 0.0} and cs.counts["x"] == {"n": 4, "unscored": 1, "contrasts": 1}


def test_hazard_categories_come_from_the_verdicts_field_of_unsafe_answers() -> None:
    """Llama Guard's S1-S14 are counted from each verdict's ``categories`` (never parsed out of its reason text), and
    only for unsafe verdicts."""
    rows = [row("h", "safety", "a", "unsafe") | {"categories": ["S1", "S9"]}, row("h", "safety", "b", "unsafe") | {"categories": ["S9"]},
            row("h", "safety", "c", "safe") | {"categories": ["S2"]}, row("h", "safety", "d", "unsafe") | {"reason": "unsafe: S5"}]
    assert _aggregate(TARGET, [], rows).hazards == {"h": {"S1": 1, "S9": 2}}
