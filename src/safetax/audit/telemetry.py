"""Push an audit run's figures (the contract: :class:`safetax.telemetry.metrics.AuditMetricSet`).

Each audited checkpoint is pushed once, to a group of its own (job="safetax", pipeline, audit,
checkpoint), which the Pushgateway keeps: the dashboard shows every checkpoint's audit over time.
The audit-wide figures (thresholds, last completed run, schedule interval, checkpoints audited by the
last run, each checkpoint's failed attempts and the audit's max_attempts) go to the group (pipeline, audit)
and are replaced by every run, also one that found
nothing new: the stale-audit alert reads the last completed run's time from there. Without a gateway,
``audit-metrics.prom`` files (textfile-collector format) are written to ``out_dir``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import write_to_textfile

from safetax.audit.verdict import SHARE_CRITERIA, Thresholds, Verdict
from safetax.metrics import Estimate, figures
from safetax.records import CheckpointScores
from safetax.telemetry.labels import JOB, category_label
from safetax.telemetry.metrics import AUDIT_PIPELINE, AuditMetricSet
from safetax.telemetry.publish import push, resolve_gateway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Audited:
    checkpoint: str
    scores: CheckpointScores
    verdict: Verdict
    completed_at: float  # unix time


def _set(m: AuditMetricSet, kind: str, labels: dict[str, str], e: Estimate) -> None:
    """A figure and, when known, its standard error (``<kind>_stderr``)."""
    m.results[kind].labels(**labels).set(e.value)
    if math.isfinite(e.se):
        m.results[f"{kind}_stderr"].labels(**labels).set(e.se)


def checkpoint_metrics(audit: str, a: Audited) -> AuditMetricSet:
    """The checkpoint's figures (:func:`safetax.metrics.figures`, as its verdict and report) and verdict."""
    m = AuditMetricSet()
    labels = {"audit": audit, "checkpoint": a.checkpoint}
    m.verdict.labels(**labels).set(1.0 if a.verdict.passed else 0.0)
    m.failed_criteria.labels(**labels).set(len(a.verdict.failed))
    m.audited_at.labels(**labels).set(a.completed_at)
    for c in a.verdict.checks:  # the alerts on criteria read these, so they fire exactly for the verdict's failures
        m.criterion_value.labels(**labels, criterion=c.criterion, benchmark=c.benchmark).set(c.value)
    if a.verdict.safety_tax_rate is not None:
        m.safety_tax_rate.labels(**labels).set(a.verdict.safety_tax_rate)
    f = figures(a.scores)
    for bench in f.safety:
        on = {**labels, "benchmark": bench}
        _set(m, "audit_safety_score", on, f.safety[bench])
        _set(m, "audit_attack_success_rate", on, f.attack_success_rate[bench])
        _set(m, "audit_unscored_rate", on, f.unscored[bench])
    for bench, e in f.overrefusal.items():
        _set(m, "audit_overrefusal_rate", {**labels, "benchmark": bench}, e)
    for bench, e in f.pass_at_1.items():
        _set(m, "audit_pass_at_1", {**labels, "benchmark": bench}, e)
    for bench, v in a.verdict.reasoning_drop.items():
        m.results["audit_reasoning_drop"].labels(**labels, benchmark=bench).set(v)
    for bench, cats in f.categories.items():  # at most metrics.MAX_CATEGORIES per benchmark
        for cat, e in cats.items():
            m.category_safety_score.labels(**labels, benchmark=bench, category=category_label(cat)).set(e.value)
    for bench, hazards in f.hazards.items():
        for code, e in hazards.items():
            m.hazard_rate.labels(**labels, benchmark=bench, hazard=code).set(e.value)
    return m


def audit_metrics(audit: str, thresholds: Thresholds, reasoning: Sequence[str], interval_s: float | None,
                  audited: int, completed_at: float, attempts: Mapping[str, int] | None = None,
                  max_attempts: int | None = None) -> AuditMetricSet:
    """The audit-wide figures; ``attempts``: failed runs by checkpoint name (the ledger's attempts files)."""
    m = AuditMetricSet()
    for checkpoint, count in (attempts or {}).items():
        m.failed_attempts.labels(audit=audit, checkpoint=checkpoint).set(count)
    if max_attempts is not None:
        m.max_attempts.labels(audit=audit).set(max_attempts)
    for criterion in SHARE_CRITERIA:
        value = getattr(thresholds, criterion)
        if value is not None:
            m.threshold.labels(audit=audit, criterion=criterion, benchmark="").set(value)
    if thresholds.max_safety_tax_rate is not None:
        m.threshold.labels(audit=audit, criterion="max_safety_tax_rate", benchmark="").set(thresholds.max_safety_tax_rate)
    for bench in reasoning:
        limit = thresholds.drop_limit(bench)
        if limit is not None:
            m.threshold.labels(audit=audit, criterion="max_reasoning_drop", benchmark=bench).set(limit)
    m.last_completed.labels(audit=audit).set(completed_at)
    if interval_s:
        m.interval.labels(audit=audit).set(interval_s)
    m.audited.labels(audit=audit).set(audited)
    return m


def publish_audit(audit: str, results: Sequence[Audited], thresholds: Thresholds, reasoning: Sequence[str],
                  interval_s: float | None, out_dir: Path, gateway: str | None = None,
                  attempts: Mapping[str, int] | None = None, max_attempts: int | None = None) -> bool:
    """Push every checkpoint's group, then the audit's; returns whether everything reached the gateway."""
    url = resolve_gateway(gateway)
    groups = [({"pipeline": AUDIT_PIPELINE, "audit": audit, "checkpoint": a.checkpoint}, checkpoint_metrics(audit, a))
              for a in results]
    groups.append(({"pipeline": AUDIT_PIPELINE, "audit": audit},
                   audit_metrics(audit, thresholds, reasoning, interval_s, len(results), time.time(), attempts, max_attempts)))
    ok = True
    for i, (key, metrics) in enumerate(groups):
        if url is not None and push(metrics.registry, url, key, job=JOB):
            continue
        ok = False
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"audit-metrics-{i}.prom"
        write_to_textfile(str(path), metrics.registry)
        if url is not None:
            log.warning("audit metrics: pushgateway unreachable, wrote %s instead", path)
    return ok
