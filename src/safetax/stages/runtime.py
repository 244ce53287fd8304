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
A stage that fails (its work or its publication) leaves an output directory holding only
``FAILED`` (the error's type and first line) and its ``metrics.prom``, if written: no
partial output, and no ``COMPLETE`` marker, so no later stage reads it.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from safetax.artifacts import StageCost, read_targets
from safetax.checkpoints import CheckpointRef
from safetax.metrics import Estimate, figures
from safetax.records import CheckpointScores
from safetax.store import leave_pointer, publish
from safetax.store.local import mark_failed
from safetax.telemetry import TEXTFILE_NAME, StageTelemetry
from safetax.telemetry.labels import category_label
from safetax.telemetry.metrics import AUDIT_PIPELINE, PREFIX, STAGE_LABELS

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
def stage_run(stage: str, ctx: RunContext, out_dir: Path, method: str = "", part: str = "") -> Iterator[StageTelemetry]:
    """Time ``stage``, publish its metrics and (with a store) its output directory; see the module docstring.

    ``part``: the checkpoint one of a method's per-checkpoint tasks works on (e.g. ``lora-r4/epoch-2``): its output
    goes to ``<store>/<run id>/<stage>/<part>`` and its metrics to a Pushgateway group of their own."""
    grouping = ({"audit": ctx.audit} if ctx.audit else {}) | ({"target": part} if part else {})
    tel = StageTelemetry(stage, pipeline=ctx.pipeline, run_id=ctx.run_id or "local", model=ctx.model, method=method,
                         out_dir=out_dir, grouping=grouping or None)
    start = time.perf_counter()
    ran = False
    try:
        with tel.run():
            yield tel
        ran = True
        if ctx.store_uri:
            uri = ctx.output_uri(stage, part or method or stage)
            manifest = publish(out_dir, uri)
            leave_pointer(out_dir, uri, manifest)
            log.info("%s: outputs published to %s (the KFP artifact keeps a pointer)", stage, uri)
    except BaseException as e:
        if ran:  # the work succeeded, its publication did not: the stage failed all the same
            tel.record_failure()
        _leave_failed(stage, out_dir, e)
        raise
    if part:  # one of a method's per-checkpoint tasks: the log's, not the console's (gather sums them up)
        log.info("checkpoint %s: %s finished in %.2fs", part, stage, time.perf_counter() - start)
    else:
        log.info("stage %s%s finished in %.2fs", stage, f" ({method})" if method and method != stage else "", time.perf_counter() - start)


def _leave_failed(stage: str, out_dir: Path, error: BaseException) -> None:
    """Replace a failed stage's output directory by ``FAILED`` (the error's type and first line, cut short:
    never data) and its ``metrics.prom`` if any: no partial output stays visible or readable."""
    first = (str(error).strip().splitlines() or [""])[0][:200]
    try:
        mark_failed(out_dir, f"stage {stage} failed: {type(error).__name__}: {first}".rstrip(": "), keep=[TEXTFILE_NAME])
    except OSError as e:
        log.warning("%s: could not mark %s as failed (%s)", stage, out_dir, e)


def check_gpus(stage: str, requested: int) -> int:
    """Log the GPUs a stage asked for against those it sees. Without CUDA (the local runner) the stage
    runs on the CPU; a GPU pod that sees another count than it asked for gets a warning. A stage that asked
    for none is not checked: importing torch to count them costs a CPU-only task (the refusal judge) ~2 s."""
    if requested == 0 and "torch" not in sys.modules:
        log.info("%s: no GPU requested, running on the CPU", stage)
        return 0
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found == 0:
        log.info("%s: no CUDA device visible, running on the CPU", stage)
    elif found != requested:
        log.warning("%s: %d GPU(s) requested, %d visible", stage, requested, found)
    return found


def method_of_generations(generations_dir: Path) -> str:
    """The method whose checkpoints a generations directory holds ("base" for the base model)."""
    targets = read_targets(generations_dir)
    return targets[0].method if targets else "base"


# What a generate or judge stage spent (StageCost, its cost.json): name -> (help, figure).
COST_FIGURES = {
    "generated_tokens": ("Tokens generated by the stage (not read from the cache or resumed chunks).", lambda c: c.tokens),
    "generated_tokens_per_second": ("Generated tokens per second of the stage's wall time.", lambda c: c.tokens_per_second),
    "gpu_seconds": ("Wall time x GPUs of the stage's pod.", lambda c: c.gpu_seconds),
    "cache_hit_rate": ("Share of the stage's samples read from the generation or verdict cache.", lambda c: c.cache_hit_rate),
    "samples_generated": ("Samples (responses or verdicts) made by the stage.", lambda c: c.generated),
    "samples_resumed": ("Samples read back from the stage's own chunks after a restart.", lambda c: c.resumed),
    "samples_cached": ("Samples read from the cache.", lambda c: c.cached),
}


def record_cost(tel: StageTelemetry, cost: StageCost) -> None:
    """The cost figures of a generate or judge stage as gauges ``safetax_<name>`` (stage labels): pushed with the
    stage's metrics and in its KFP metrics (``generated_tokens``, ``gpu_seconds``, ...)."""
    from prometheus_client import Gauge

    for name, (doc, figure) in COST_FIGURES.items():
        gauge = Gauge(PREFIX + name, doc, STAGE_LABELS, registry=tel.metrics.registry)
        gauge.labels(**tel.labels.stage_labels()).set(float(figure(cost)))


def push_scores(ctx: RunContext, scores: list[CheckpointScores], out_dir: Path) -> None:
    """Push the figures of checkpoints whose evaluation ran in shards, once merged: each into the Pushgateway group
    (stage ``score``, its own ``method``, ``target`` = the checkpoint) and under the labels that a score task of the
    whole checkpoint uses, so a series means the same whatever ``eval_shards`` was (``metrics.prom`` files under
    ``out_dir`` without a gateway). Only the figures: the shards' score tasks pushed their own stage timings."""
    for s in scores:
        grouping = ({"audit": ctx.audit} if ctx.audit else {}) | {"target": s.checkpoint}
        tel = StageTelemetry("score", pipeline=ctx.pipeline, run_id=ctx.run_id or "local", model=ctx.model, method=s.method,
                             out_dir=out_dir / s.checkpoint.replace("/", "_"), grouping=grouping)
        record_scores(tel, [s])
        tel.publish()


def record_scores(tel: StageTelemetry, scores: list[CheckpointScores]) -> None:
    """Every figure of every checkpoint (:func:`safetax.metrics.figures`, as the report, the audits and the gate
    see it) with its standard error, plus safety per category and Llama Guard hazard: gauges and KFP metrics.

    Labels: ``method`` is the stage's (the training method: its merge candidates share its Pushgateway group),
    ``checkpoint`` the checkpoint's one string form (``lora-r4+ortho-both-l1.25/epoch-8``), unique within a run.
    """
    for s in scores:
        checkpoint = str(CheckpointRef.parse(s.checkpoint))
        f = figures(s)

        def put(kind: str, bench: str, e: Estimate) -> None:
            tel.result(kind, benchmark=bench, checkpoint=checkpoint, value=e.value)
            if math.isfinite(e.se):
                tel.result(f"{kind}_stderr", benchmark=bench, checkpoint=checkpoint, value=e.se)

        for bench, e in f.pass_at_1.items():
            put("pass_at_1", bench, e)
        for bench in f.safety:
            put("safety_score", bench, f.safety[bench])
            put("attack_success_rate", bench, f.attack_success_rate[bench])
            put("unscored_rate", bench, f.unscored[bench])
        for bench, e in f.overrefusal.items():
            put("overrefusal_rate", bench, e)
        for bench, cats in f.categories.items():  # at most metrics.MAX_CATEGORIES per benchmark
            for cat, e in cats.items():
                labels = tel.labels.result_labels(checkpoint, bench)
                tel.metrics.category_safety_score.labels(**labels, category=category_label(cat)).set(e.value)
        for bench, hazards in f.hazards.items():  # S1..S14
            for code, e in hazards.items():
                tel.metrics.hazard_rate.labels(**tel.labels.result_labels(checkpoint, bench), hazard=code).set(e.value)


def record_gate(tel: StageTelemetry, result: dict[str, object]) -> None:
    """``safetax_gate_promoted`` = 1 for the checkpoint the gate promoted (:func:`safetax.stages.gate.run`'s result):
    the alignment pipeline's result-quality alerts fire only for it, not for every epoch of every experiment."""
    if result.get("gate") == "promoted":
        checkpoint = str(CheckpointRef.parse(str(result["checkpoint"])))
        tel.metrics.gate_promoted.labels(**tel.labels.result_labels(checkpoint)).set(1.0)


def reuse_uris(ctx: RunContext, stage: str, name: str, generation_cache: str = "") -> tuple[str, str]:
    """(cache root, chunk area) of a generate or judge task.

    ``generation_cache``: "" = :func:`safetax.gencache.default_root` (``<store>/cache``, shared by every run and
    audit on the store; without a store ``$SAFETAX_CACHE``), "off" = no cache, else a root URI. The chunk area, where
    finished chunks wait for a retry of the same task (KFP retry after a preemption), is
    ``<store>/<run id>/partial/<stage>/<name>`` with a store, else the task's own output directory (a retry in a new
    pod then starts over)."""
    from safetax.gencache import default_root

    cache = "" if generation_cache == "off" else generation_cache or default_root(ctx.store_uri)
    partial = f"{ctx.store_uri.rstrip('/')}/{ctx.run_id}/partial/{stage}/{name}" if ctx.store_uri else ""
    return cache, partial
