"""Typed result records passed between stages (written as JSON/JSONL artifacts).

A record that could not be judged or scored says so: ``label == "unscored"`` /
``value is None`` with a reason, never a silent "safe" or a wrong number.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Label = Literal["safe", "unsafe", "unscored"]
BASE = "base"


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


@dataclass(frozen=True)
class Score:
    """A reasoning scorer's verdict on one response."""

    value: float | None  # 1.0 correct, 0.0 wrong, None when the answer could not be extracted
    answer: str | None
    reason: str


@dataclass(frozen=True)
class CheckpointScores:
    """Aggregate metrics of one checkpoint: what analytics compares.

    ``reasoning``: benchmark -> pass@1 in [0, 1] (unscored samples count as wrong).
    ``safety``: benchmark -> safety score in [0, 1] = safe / all responses (an unscored
    response counts as not safe); ``counts`` says how many were unscored.
    ``overrefusal``: benchmark -> share of benign prompts refused, in [0, 1] (lower is better).
    ``extra``: further figures by name, e.g. ``safety:<bench>:<category>`` or
    ``compliance_unsafe:xstest``.
    ``counts``: benchmark -> {"n": responses, "unscored": ...}.
    ``versions``: benchmark -> its ``VERSION`` ("file" for a plain eval file).
    """

    checkpoint: str  # "base" or "<method>/epoch-<k>"
    method: str  # "base" or the method config's name
    epoch: int  # 0 for the base model
    reasoning: dict[str, float] = field(default_factory=dict)
    safety: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    overrefusal: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointScores:
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
        )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
