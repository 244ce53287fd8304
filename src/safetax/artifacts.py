"""The files that pass between stages: their names, and typed readers and writers.

A stage writes an artifact with the writer here and the next stage reads it with the reader here, so the
name and the schema of each file live in one place. So far: the score stage's ``scores.json`` (one
:class:`~safetax.records.CheckpointScores` per evaluated checkpoint, with the counts every figure is
computed from), ``sample_scores.jsonl`` (one scored reasoning sample per line), and the train and merge
stages' ``checkpoints.json`` (:class:`CheckpointManifest`: every checkpoint with its :class:`CheckpointRef`),
the generate stage's ``generations.jsonl`` (:class:`GenerationRow`), ``targets.json`` (the :class:`Target` models it
evaluated) and ``eval_sets.json`` (the :class:`~safetax.data.eval_sets.EvalSet` list the score stage re-reads), the
judge stage's ``judgements.jsonl`` (:class:`JudgementRow`), and the ``cost.json`` of both (:class:`StageCost`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetax.checkpoints import CheckpointRef
from safetax.data.eval_sets import EvalSet
from safetax.records import CheckpointScores, Generation, Judgement, read_jsonl, write_jsonl
from safetax.shards import merge_scores
from safetax.store import input_dir, read_json, write_json

SCORES = "scores.json"
SAMPLE_SCORES = "sample_scores.jsonl"
CHECKPOINTS = "checkpoints.json"
GENERATIONS = "generations.jsonl"
TARGETS = "targets.json"
EVAL_SETS = "eval_sets.json"
JUDGEMENTS = "judgements.jsonl"
SECOND_OPINIONS = "second_opinions.jsonl"  # the refusal-pattern judge on the same safety responses (judge agreement)
COST = "cost.json"
KINDS = ("adapter", "full")
SAMPLE_KEY = ("checkpoint", "benchmark", "item_id", "sample")  # identifies one response across stages


def write_scores(out_dir: Path, scores: Sequence[CheckpointScores]) -> Path:
    """``<out_dir>/scores.json``: the checkpoints' records, in order."""
    path = out_dir / SCORES
    write_json(path, [s.to_dict() for s in scores])
    return path


def read_scores(score_dirs: Sequence[Path]) -> list[CheckpointScores]:
    """The records of every score output (a local directory, or a pointer to the run store), in order; a checkpoint
    evaluated in shards comes back as one record (:func:`safetax.shards.merge_scores`), so every reader sees the
    same figures whether or not its evaluation was split."""
    out: list[CheckpointScores] = []
    for d in score_dirs:
        out += [CheckpointScores.from_dict(x) for x in read_json(input_dir(d, "scores") / SCORES)]
    return merge_scores(out)


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


def checkpoint_files(train_dir: Path, names: list[str] | None = None) -> Path:
    """The local directory of a train or merge output with the files of the checkpoints ``names`` (None: all);
    from a run store only those are downloaded."""
    return input_dir(train_dir, "checkpoints", only=None if names is None else [CHECKPOINTS, *names])


# -- generate ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One model the generate stage evaluates: the base, or a checkpoint (adapter on the base, or full weights)."""

    checkpoint: str  # "base" (or an audit's label) or a CheckpointRef's string form
    method: str
    epoch: int
    model: str  # the base model (adapters) or the checkpoint's directory (full weights)
    adapter: str | None  # the adapter directory, or None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "method": self.method, "epoch": self.epoch, "model": self.model,
                "adapter": self.adapter}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        adapter = d.get("adapter")
        return cls(str(d["checkpoint"]), str(d["method"]), int(d["epoch"]), str(d["model"]),
                   None if adapter is None else str(adapter))


@dataclass(frozen=True)
class GenerationRow:
    """One line of ``generations.jsonl``: a :class:`~safetax.records.Generation` and what judge and score need.

    ``prompt`` is empty for reasoning items (GPQA's questions must never be stored in plain text);
    ``version`` is the benchmark's ``VERSION`` ("file" for a plain eval file)."""

    generation: Generation
    prompt: str
    reference: str
    meta: dict[str, Any]
    version: str

    @property
    def key(self) -> tuple[str, str, str, int]:
        g = self.generation
        return (g.checkpoint, g.benchmark, g.item_id, g.sample)

    def to_dict(self) -> dict[str, Any]:
        g = self.generation
        return {"checkpoint": g.checkpoint, "benchmark": g.benchmark, "kind": g.kind, "item_id": g.item_id,
                "sample": g.sample, "text": g.text, "n_tokens": g.n_tokens, "finished": g.finished,
                "prompt": self.prompt, "reference": self.reference, "meta": self.meta, "version": self.version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationRow:
        # Hand-written rows (test fixtures) may leave out the token statistics, which no later stage reads.
        g = Generation(str(d["checkpoint"]), str(d["benchmark"]), d["kind"], str(d["item_id"]), int(d["sample"]),
                       str(d["text"]), int(d.get("n_tokens", 0)), bool(d.get("finished", True)))
        return cls(g, str(d.get("prompt", "")), str(d.get("reference", "")), dict(d.get("meta") or {}),
                   str(d.get("version", "file")))


def write_generations(out_dir: Path, rows: Sequence[GenerationRow]) -> Path:
    path = out_dir / GENERATIONS
    write_jsonl(path, [r.to_dict() for r in rows])
    return path


def read_generations(generations_dir: Path) -> list[GenerationRow]:
    """The rows of a generate output (a local directory, or a pointer to the run store), in order."""
    return [GenerationRow.from_dict(d) for d in read_jsonl(input_dir(generations_dir, "generations") / GENERATIONS)]


def write_targets(out_dir: Path, targets: Sequence[Target]) -> Path:
    path = out_dir / TARGETS
    write_json(path, [t.to_dict() for t in targets])
    return path


def read_targets(generations_dir: Path) -> list[Target]:
    """The models a generate output evaluated, in order (from a run store: that file only)."""
    return [Target.from_dict(d) for d in read_json(input_dir(generations_dir, "generations", only=[TARGETS]) / TARGETS)]


def write_eval_sets(out_dir: Path, eval_sets: Sequence[EvalSet]) -> Path:
    path = out_dir / EVAL_SETS
    write_json(path, [dataclasses.asdict(es) for es in eval_sets])
    return path


def read_eval_sets(generations_dir: Path) -> list[EvalSet]:
    """The eval sets a generate output was made from (how the score stage re-reads their benchmarks)."""
    return [EvalSet(**d) for d in read_json(input_dir(generations_dir, "generations", only=[EVAL_SETS]) / EVAL_SETS)]


# -- judge --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgementRow:
    """One line of ``judgements.jsonl``: the response's key, the verdict (its Llama Guard hazard categories S1-S14
    with it: those of a generate-mode ``unsafe`` verdict, empty otherwise) and the judge's name."""

    key: tuple[str, str, str, int]  # SAMPLE_KEY of the judged response
    judgement: Judgement
    judge: str

    def to_dict(self) -> dict[str, Any]:
        j = self.judgement
        return {**dict(zip(SAMPLE_KEY, self.key)), "label": j.label, "score": j.score, "reason": j.reason,
                "categories": list(j.categories), "judge": self.judge}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgementRow:
        key = (str(d["checkpoint"]), str(d["benchmark"]), str(d["item_id"]), int(d["sample"]))
        score = d.get("score")
        judgement = Judgement(d["label"], None if score is None else float(score), str(d["reason"]),
                              tuple(str(c) for c in d.get("categories", ())))
        return cls(key, judgement, str(d["judge"]))


def write_judgements(out_dir: Path, rows: Sequence[JudgementRow], name: str = JUDGEMENTS) -> Path:
    path = out_dir / name
    write_jsonl(path, [r.to_dict() for r in rows])
    return path


def read_judgements(judgements_dir: Path, name: str = JUDGEMENTS) -> list[JudgementRow]:
    """The verdicts of a judge output (``name``: :data:`JUDGEMENTS`, or :data:`SECOND_OPINIONS`, [] when absent)."""
    path = input_dir(judgements_dir, "judgements") / name
    if name != JUDGEMENTS and not path.is_file():
        return []
    return [JudgementRow.from_dict(d) for d in read_jsonl(path)]


# -- cost ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageCost:
    """``cost.json`` of a generate or judge output: what the stage spent, and what its cache and resume saved.

    ``generated``/``resumed``/``cached`` count samples (responses, or verdicts for judge): made here, read back
    from the stage's own chunks after a restart, read from the shared cache."""

    stage: str  # generate | judge
    samples: int  # every sample of the output
    generated: int
    resumed: int
    cached: int
    tokens: int  # tokens generated here (not those read from the cache or chunks)
    wall_s: float  # the stage function's wall time
    gpus: int  # GPUs of the pod (0 on the CPU)
    retried_s: float = 0.0  # what earlier, killed attempts spent up to their last chunk (their pods held the GPUs too)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def gpu_seconds(self) -> float:
        """Wall time (this attempt's and the killed attempts' up to their last chunk) x GPUs of the pod (the pod holds
        them the whole time, busy or not)."""
        return (self.wall_s + self.retried_s) * self.gpus

    @property
    def cache_hit_rate(self) -> float:
        looked_up = self.cached + self.generated
        return self.cached / looked_up if looked_up else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tokens_per_second": self.tokens_per_second,
                "gpu_seconds": self.gpu_seconds, "cache_hit_rate": self.cache_hit_rate}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageCost:
        return cls(str(d["stage"]), int(d["samples"]), int(d["generated"]), int(d["resumed"]), int(d["cached"]),
                   int(d["tokens"]), float(d["wall_s"]), int(d["gpus"]), float(d.get("retried_s", 0.0)))

    def summary(self) -> str:
        """The log line's figures (counts only)."""
        return (f"{self.samples} samples: {self.generated} generated, {self.resumed} resumed, {self.cached} from cache "
                f"(hit rate {self.cache_hit_rate:.1%}); {self.tokens} tokens in {self.wall_s:.1f}s "
                f"({self.tokens_per_second:.1f} tokens/s), {self.gpu_seconds:.1f} GPU-seconds"
                + (f" ({self.retried_s:.1f}s of earlier attempts)" if self.retried_s else ""))


def pod_gpus() -> int:
    """The GPUs this process sees, for ``StageCost.gpus``: a stage that ran a model (or a component that checked its
    GPUs) has torch loaded; one that never touched torch (the refusal judge on the CPU) counts 0, without paying
    torch's import for the count."""
    torch = sys.modules.get("torch")
    return int(torch.cuda.device_count()) if torch is not None and torch.cuda.is_available() else 0


def write_cost(out_dir: Path, cost: StageCost) -> Path:
    path = out_dir / COST
    write_json(path, cost.to_dict())
    return path


def read_cost(stage_dir: Path) -> StageCost:
    return StageCost.from_dict(read_json(input_dir(stage_dir, "cost", only=[COST]) / COST))
