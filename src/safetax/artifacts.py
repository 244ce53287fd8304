"""The files that pass between stages: their names, and typed readers and writers.

A stage writes an artifact with the writer here and the next stage reads it with the reader here, so the
name and the schema of each file live in one place. So far: the score stage's ``scores.json`` (one
:class:`~safetax.records.CheckpointScores` per evaluated checkpoint, with the counts every figure is
computed from), ``sample_scores.jsonl`` (one scored reasoning sample per line), and the train and merge
stages' ``checkpoints.json`` (:class:`CheckpointManifest`: every checkpoint with its :class:`CheckpointRef`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetax.checkpoints import CheckpointRef
from safetax.records import CheckpointScores, read_jsonl, write_jsonl
from safetax.store import input_dir, read_json, write_json

SCORES = "scores.json"
SAMPLE_SCORES = "sample_scores.jsonl"
CHECKPOINTS = "checkpoints.json"
KINDS = ("adapter", "full")


def write_scores(out_dir: Path, scores: Sequence[CheckpointScores]) -> Path:
    """``<out_dir>/scores.json``: the checkpoints' records, in order."""
    path = out_dir / SCORES
    write_json(path, [s.to_dict() for s in scores])
    return path


def read_scores(score_dirs: Sequence[Path]) -> list[CheckpointScores]:
    """The records of every score output (a local directory, or a pointer to the run store), in order."""
    out: list[CheckpointScores] = []
    for d in score_dirs:
        out += [CheckpointScores.from_dict(x) for x in read_json(input_dir(d, "scores") / SCORES)]
    return out


def write_sample_scores(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    path = out_dir / SAMPLE_SCORES
    write_jsonl(path, rows)
    return path


def read_sample_scores(score_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(input_dir(score_dir, "scores") / SAMPLE_SCORES)


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint of a train or merge output: its identity and its directory in the output."""

    ref: CheckpointRef
    name: str  # directory: "epoch-3" (train), "lora-r4+ortho-both-l1-epoch-8" (merge)
    details: dict[str, Any] = field(default_factory=dict)  # train: loss, dtype; merge: lambda, matrices

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "epoch": self.ref.epoch, **self.details}
        return d | ({"method": self.ref.variant} if self.ref.merge else {})


@dataclass(frozen=True)
class CheckpointManifest:
    """``checkpoints.json`` of a train or merge output: the method's label, whether its checkpoints are LoRA
    adapters or full models, and each checkpoint. A merge candidate's entry carries its own ``method``
    (``lora-r4+ortho-both-l1.25``); a trained one's is the label's."""

    label: str
    kind: str  # "adapter" | "full"
    method: str  # full | lora | rpsa
    entries: tuple[CheckpointEntry, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. base_model, merge settings

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"checkpoints.json: kind must be one of {list(KINDS)}, got {self.kind!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointManifest:
        label = str(d["label"])
        entries = []
        for e in d["checkpoints"]:
            ref = CheckpointRef.of(str(e["method"]), int(e["epoch"])) if "method" in e else CheckpointRef(label, int(e["epoch"]))
            entries.append(CheckpointEntry(ref, str(e["name"]), {k: v for k, v in e.items() if k not in ("name", "epoch", "method")}))
        rest = {k: v for k, v in d.items() if k not in ("label", "kind", "method", "checkpoints")}
        return cls(label, str(d["kind"]), str(d["method"]), tuple(entries), rest)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "method": self.method, **self.extra,
                "checkpoints": [e.to_dict() for e in self.entries]}

    def find(self, checkpoint: str) -> CheckpointEntry | None:
        """The entry of a checkpoint by its string form."""
        return next((e for e in self.entries if str(e.ref) == checkpoint), None)


def write_checkpoints(out_dir: Path, manifest: CheckpointManifest) -> Path:
    path = out_dir / CHECKPOINTS
    write_json(path, manifest.to_dict())
    return path


def read_checkpoints(train_dir: Path) -> CheckpointManifest:
    """``checkpoints.json`` of a train or merge output (from a run store: that file only)."""
    return CheckpointManifest.from_dict(read_json(input_dir(train_dir, "checkpoints", only=[CHECKPOINTS]) / CHECKPOINTS))
