"""Push an audit run's figures (the contract: :class:`safetax.telemetry.metrics.AuditMetricSet`).

Each audited checkpoint is pushed once, to a group of its own (job="safetax", pipeline, audit,
checkpoint), which the Pushgateway keeps: the dashboard shows every checkpoint's audit over time.
The audit-wide figures (thresholds, last completed run, schedule interval, checkpoints audited by the
last run, each checkpoint's failed attempts and the audit's max_attempts) go to the group (pipeline, audit)
and are replaced by every run, also one that found
nothing new: the stale-audit alert reads the last completed run's time from there. Without a gateway,
``audit-metrics.prom`` files (textfile-collector format) are written to ``out_dir``.

:func:`publish_run` is what every audit run ends with: the ledger's latest verdicts re-published (so the alerts
follow from the ledger alone, also after a push was lost), this run's groups, and the deletion of the audit's
earlier runs' per-run groups.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import write_to_textfile

from safetax.audit.ledger import Ledger, completed_at
from safetax.audit.verdict import SHARE_CRITERIA, Thresholds, Verdict
from safetax.metrics import Estimate, figures
from safetax.records import CheckpointScores
from safetax.telemetry.labels import JOB, category_label
from safetax.telemetry.metrics import AUDIT_PIPELINE, AuditMetricSet
from safetax.telemetry.publish import push, redact_url, resolve_gateway

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


def publish_run(ledger: Ledger, results: Sequence[Audited], thresholds: Thresholds, reasoning: Sequence[str],
                interval_s: float | None, out: Path, gateway: str | None, max_attempts: int, run_id: str = "",
                started_at: float = 0.0) -> str | None:
    """Re-publish the ledger's latest verdicts, then this run's and the audit-wide figures (the heartbeat last), then
    delete the per-run groups of this audit's earlier runs (their failures are superseded by this completed run);
    the error message when a configured gateway did not take them all, else None."""
    url = resolve_gateway(gateway)
    republished = url is None or _republish(ledger.audit, ledger, url, skip={a.checkpoint for a in results})
    attempts: dict[str, int] = {}
    for entry in ledger.attempts().values():  # one series per checkpoint name: its digest with the most failures
        name = str(entry.get("checkpoint", "?"))
        attempts[name] = max(attempts.get(name, 0), int(entry["count"]))
    pushed = publish_audit(ledger.audit, results, thresholds, reasoning, interval_s, out, gateway, attempts, max_attempts)
    if url is not None and republished and pushed and run_id:
        _clear_earlier_runs(url, ledger.audit, run_id, started_at)
    if url is None or (republished and pushed):
        return None
    return (f"audit {ledger.audit}: the verdicts are recorded in the ledger ({ledger.root}/ledger/), but their metrics "
            f"did not reach the Pushgateway {redact_url(url)}: the audit alerts cannot fire on them until they do. "
            "The next audit run re-publishes them from the ledger.")


def _clear_earlier_runs(url: str, audit: str, run_id: str, started_at: float) -> None:
    from safetax.telemetry.prune import clear_earlier_audit_runs

    try:
        gone = clear_earlier_audit_runs(url, audit, run_id, started_at or time.time())
    except OSError as e:  # the verdicts are pushed; stale run groups are the prune CronJob's to remove
        log.warning("audit %s: could not delete earlier runs' metric groups from %s: %s", audit, redact_url(url), e)
        return
    if gone:
        log.info("audit %s: deleted %d metric group(s) of earlier runs", audit, len(gone))


def _republish(audit: str, ledger: Ledger, url: str, skip: set[str]) -> bool:
    """Push the latest recorded verdict of every checkpoint not in ``skip`` to its group; False at the first
    push that fails (the others would fail alike)."""
    n = 0
    for record in ledger.latest_records():
        if record["checkpoint"] in skip:
            continue
        a = audited_of(record)
        key = {"pipeline": AUDIT_PIPELINE, "audit": audit, "checkpoint": a.checkpoint}
        if not push(checkpoint_metrics(audit, a).registry, url, key, job=JOB):
            return False
        n += 1
    if n:
        log.info("audit %s: re-published %d recorded verdict(s) from the ledger", audit, n)
    return True


def audited_of(record: Mapping[str, Any]) -> Audited:
    """A ledger record as the :class:`Audited` it was made from (verdict as recorded, not judged again)."""
    verdict = Verdict.from_dict(record)
    return Audited(str(record["checkpoint"]), CheckpointScores.from_dict(record["scores"]), verdict, completed_at(record))
