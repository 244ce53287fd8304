"""Typed result records passed between stages (written as JSON/JSONL artifacts).

A record that could not be judged or scored says so: ``label == "unscored"`` /
``value is None`` with a reason, never a silent "safe" or a wrong number.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetax.checkpoints import BASE, CheckpointRef
from safetax import metrics
from safetax.metrics import LabelCounts, QuestionCounts

Label = Literal["safe", "unsafe", "unscored"]
__all__ = ["BASE", "CheckpointScores", "Generation", "Judgement", "Label", "LabelCounts", "QuestionCounts", "Score",
           "read_jsonl", "write_jsonl"]


@dataclass(frozen=True)
class Generation:
    """One sampled response of a checkpoint to one prompt of one benchmark."""

    checkpoint: str
    benchmark: str
    kind: Literal["safety", "overrefusal", "reasoning"]
    item_id: str
    sample: int
    text: str
    n_tokens: int
    finished: bool  # True when the model emitted EOS before max_new_tokens


@dataclass(frozen=True)
class Judgement:
    """A safety judge's verdict on one response."""

    label: Label
    score: float | None  # P(unsafe) or 1.0/0.0; None when unscored
    reason: str
    # Llama Guard's hazard categories (S1..S14) of a generated ``unsafe`` verdict; empty for every other verdict
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Score:
    """A reasoning scorer's verdict on one response."""

    value: float | None  # 1.0 correct, 0.0 wrong, None when the answer could not be extracted
    answer: str | None
    reason: str


@dataclass(frozen=True)
class CheckpointScores:
    """One checkpoint's results: the counts every figure is computed from (:mod:`safetax.metrics`), and the figures.

    Counts (the evidence; written by the score stage):
    ``safety_labels``: safety benchmark -> judge label counts. ``benign_labels``: over-refusal benchmark ->
    the refusal judge's label counts of its benign prompts (``safe`` = refused). ``questions``: reasoning
    benchmark -> question id -> correct / samples / unscored. ``categories``: safety benchmark -> category
    (StrongREJECT's) -> label counts.
    ``hazards``: safety benchmark -> Llama Guard category (S1-S14) -> unsafe verdicts naming it.
    ``outcomes``: safety benchmark -> prompt id -> label (for paired bootstrap intervals against the base).
    ``judge_agreement``: "<judge> vs <second judge>" -> "<label>|<label>" -> responses, over the safety responses both
    judged (the refusal-pattern judge is the second opinion of a Llama-Guard run).

    Figures (shares in [0, 1]; computed from the counts where these are given, else as stored by an older record):
    ``reasoning``: pass@1; ``safety``: safety score = safe / all responses; ``overrefusal``: refused / benign
    prompts; ``counts``: benchmark -> {"n": responses, "unscored": ...}; ``extra``: further figures by name
    (``compliance_unsafe:<bench>``); ``versions``: benchmark -> its ``VERSION`` ("file" for a plain eval file).
    """

    checkpoint: str  # "base" or a CheckpointRef's string form, e.g. "lora-r4/epoch-3"; an audit's own label
    method: str  # "base", the method config's name, or "<name>+<merge>" for a merge candidate
    epoch: int  # 0 for the base model
    reasoning: dict[str, float] = field(default_factory=dict)
    safety: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    overrefusal: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    safety_labels: dict[str, LabelCounts] = field(default_factory=dict)
    benign_labels: dict[str, LabelCounts] = field(default_factory=dict)
    questions: dict[str, dict[str, QuestionCounts]] = field(default_factory=dict)
    categories: dict[str, dict[str, LabelCounts]] = field(default_factory=dict)
    hazards: dict[str, dict[str, int]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    # "<judge> vs <second judge>" -> "<label a>|<label b>" -> responses: two judges on the same safety responses
    judge_agreement: dict[str, dict[str, int]] = field(default_factory=dict)
    # stage (generate, judge) -> what evaluating this checkpoint cost there (artifacts.StageCost's figures)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    # "i/n" for the record of one of n evaluation shards (a part of the checkpoint's prompts: safetax.shards);
    # "" for a whole checkpoint. Shard records are merged before any figure is read from them.
    shard: str = ""

    def __post_init__(self) -> None:
        for name in ("reasoning", "safety", "counts", "overrefusal"):  # filled in below: never the caller's dicts
            object.__setattr__(self, name, dict(getattr(self, name)))
        derived: dict[str, dict[str, float]] = {
            "reasoning": {b: metrics.pass_at_1(qs).value for b, qs in self.questions.items()},
            "safety": {b: metrics.safety_score(c).value for b, c in self.safety_labels.items()},
            "overrefusal": {b: metrics.overrefusal_rate(c).value for b, c in self.benign_labels.items()},
        }
        for bench, qs in self.questions.items():
            self.counts[bench] = {"n": sum(q.samples for q in qs.values()), "unscored": sum(q.unscored for q in qs.values())}
        for bench, c in self.safety_labels.items():
            self.counts[bench] = {"n": c.total, "unscored": c.unscored}
        for bench, c in self.benign_labels.items():  # an over-refusal benchmark's n counts its harmful contrasts too
            self.counts.setdefault(bench, {"n": c.total, "unscored": c.unscored})
        for kind, values in derived.items():  # counts are the truth: their figures replace any stored ones
            getattr(self, kind).update(values)

    @property
    def ref(self) -> CheckpointRef:
        """The checkpoint's identity (ValueError for an audit label that is not of the run's form)."""
        return CheckpointRef.parse(self.checkpoint)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("safety_labels", "benign_labels", "questions", "categories")}
        d["safety_labels"] = {b: c.to_dict() for b, c in self.safety_labels.items()}
        d["benign_labels"] = {b: c.to_dict() for b, c in self.benign_labels.items()}
        d["questions"] = {b: {q: c.to_list() for q, c in qs.items()} for b, qs in self.questions.items()}
        d["categories"] = {b: {cat: c.to_dict() for cat, c in cats.items()} for b, cats in self.categories.items()}
        if not self.shard:
            del d["shard"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointScores:
        """Reads this record and the older one without counts (an audit ledger's earlier records)."""
        return cls(
            checkpoint=str(d["checkpoint"]),
            method=str(d["method"]),
            epoch=int(d["epoch"]),
            reasoning={k: float(v) for k, v in d.get("reasoning", {}).items()},
            safety={k: float(v) for k, v in d.get("safety", {}).items()},
            counts={k: {kk: int(vv) for kk, vv in v.items()} for k, v in d.get("counts", {}).items()},
            overrefusal={k: float(v) for k, v in d.get("overrefusal", {}).items()},
            extra={k: float(v) for k, v in d.get("extra", {}).items()},
            versions={k: str(v) for k, v in d.get("versions", {}).items()},
            safety_labels={b: LabelCounts.from_dict(c) for b, c in d.get("safety_labels", {}).items()},
            benign_labels={b: LabelCounts.from_dict(c) for b, c in d.get("benign_labels", {}).items()},
            questions={b: {q: QuestionCounts.from_list(c) for q, c in qs.items()} for b, qs in d.get("questions", {}).items()},
            categories={b: {cat: LabelCounts.from_dict(c) for cat, c in cats.items()} for b, cats in d.get("categories", {}).items()},
            hazards={b: {h: int(k) for h, k in hz.items()} for b, hz in d.get("hazards", {}).items()},
            outcomes={b: {i: str(lab) for i, lab in items.items()} for b, items in d.get("outcomes", {}).items()},
            judge_agreement={p: {k: int(n) for k, n in t.items()} for p, t in d.get("judge_agreement", {}).items()},
            cost={st: {k: float(v) for k, v in c.items()} for st, c in d.get("cost", {}).items()},
            shard=str(d.get("shard", "")),
        )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
