"""What every stage run does around its work: telemetry, and publication to the run's store.

The KFP components call :func:`stage_run` around a stage function::

    with stage_run("judge", RunContext(run_id, store_uri, base_model), out_dir, method) as tel:
        counts = judge.run(cfg, generations_dir, out_dir)
        tel.samples_per_second("judge", ...)

It times the stage and pushes its metrics (to ``$SAFETAX_PUSHGATEWAY``, else
``metrics.prom`` in the output directory), and when the run has a store
(``s3://bucket/prefix`` or a local path) publishes the finished output directory
to ``<store>/<run id>/<stage>/<method>`` with a manifest: models, adapters,
generations, judgements, scores and reports of a run under one run prefix. The
KFP artifact then keeps only a pointer to that copy and the output's small
top-level files (:mod:`safetax.store.pointer`): each artifact exists once, and
downstream stages read it with :func:`safetax.store.input_dir`, which the stage
functions call on every input directory, so components pass artifact paths as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from safetax.records import CheckpointScores
from safetax.store import input_dir, leave_pointer, publish, read_json
from safetax.telemetry import StageTelemetry
from safetax.telemetry.metrics import AUDIT_PIPELINE

log = logging.getLogger(__name__)
PIPELINE = "safetax-alignment"


@dataclass(frozen=True)
class RunContext:
    run_id: str  # KFP's pipeline job id ({{$.pipeline_job_uuid}}); "local" when run outside KFP
    store_uri: str = ""  # "" = outputs stay in KFP's pipeline root only
    model: str = ""  # the base model URI; the metrics label keeps its last path component
    pipeline: str = PIPELINE
    audit: str = ""  # set by the audit pipeline: its stages push under pipeline safetax-audit with an `audit` label

    def __post_init__(self) -> None:
        if self.audit and self.pipeline == PIPELINE:
            object.__setattr__(self, "pipeline", AUDIT_PIPELINE)

    def output_uri(self, stage: str, name: str) -> str:
        return f"{self.store_uri.rstrip('/')}/{self.run_id}/{stage}/{name}"


@contextmanager
def stage_run(stage: str, ctx: RunContext, out_dir: Path, method: str = "") -> Iterator[StageTelemetry]:
    """Time ``stage``, publish its metrics and (with a store) its output directory; see the module docstring."""
    tel = StageTelemetry(stage, pipeline=ctx.pipeline, run_id=ctx.run_id or "local", model=ctx.model, method=method,
                         out_dir=out_dir, grouping={"audit": ctx.audit} if ctx.audit else None)
    start = time.perf_counter()
    with tel.run():
        yield tel
    if ctx.store_uri:
        uri = ctx.output_uri(stage, method or stage)
        manifest = publish(out_dir, uri)
        leave_pointer(out_dir, uri, manifest)
        log.info("%s: outputs published to %s (the KFP artifact keeps a pointer)", stage, uri)
    log.info("stage %s finished in %.2fs", stage, time.perf_counter() - start)


def check_gpus(stage: str, requested: int) -> int:
    """Log the GPUs a stage asked for against those it sees. Without CUDA (the local runner) the stage
    runs on the CPU; a GPU pod that sees another count than it asked for gets a warning."""
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found == 0:
        log.info("%s: no CUDA device visible, running on the CPU", stage)
    elif found != requested:
        log.warning("%s: %d GPU(s) requested, %d visible", stage, requested, found)
    return found


def method_of_generations(generations_dir: Path) -> str:
    """The method whose checkpoints a generations directory holds ("base" for the base model)."""
    targets = read_json(input_dir(generations_dir, "generations", only=["checkpoints.json"]) / "checkpoints.json")
    return str(targets[0]["method"]) if targets else "base"


def record_scores(tel: StageTelemetry, scores: list[CheckpointScores]) -> None:
    """Safety score and ASR per safety benchmark, pass@1 per reasoning benchmark, over-refusal; per checkpoint."""
    group = tel.labels.method
    for s in scores:
        # Merge candidates (method "<group>+ortho-both-l1.15") share the group of their training method:
        # their checkpoint label keeps them apart from the plain epochs.
        suffix = s.method.removeprefix(group) if s.method != group and s.method.startswith(group) else ""
        checkpoint = "base" if s.method == "base" else f"{suffix.lstrip('+')}-epoch-{s.epoch}" if suffix else f"epoch-{s.epoch}"
        for bench, value in s.reasoning.items():
            tel.result("pass_at_1", benchmark=bench, checkpoint=checkpoint, value=value)
        for bench, value in s.safety.items():
            tel.result("safety_score", benchmark=bench, checkpoint=checkpoint, value=value)
            n = s.counts.get(bench, {}).get("n", 0)
            unscored = s.counts.get(bench, {}).get("unscored", 0) / n if n else 0.0
            # ASR: share answered unsafely; unscored responses are neither safe nor attacks.
            tel.result("attack_success_rate", benchmark=bench, checkpoint=checkpoint, value=max(0.0, 1.0 - value - unscored))
        for bench, value in s.overrefusal.items():
            tel.result("overrefusal_rate", benchmark=bench, checkpoint=checkpoint, value=value)
