"""Stages of the audit pipeline: plan (what to audit), then finish (verdicts, ledger, reports, metrics, gate).

``plan`` validates every parameter, lists the checkpoints under the watched prefix (or given), drops
those with an audit record in the ledger or without a manifest, and resolves the baseline: its last
audit record, or its model audited in this run when it has none (or a newer model). The pipeline
evaluates the plan's targets (generate -> judge -> score, in parallel) and ``finish`` compares each
with the baseline and the thresholds, writes each checkpoint's report and then its ledger record (the
commit point: a run that fails before never leaves a record, so the checkpoint is audited again),
pushes the metrics and, with ``promote``, runs the safety gate. ``idle`` ends a run that found nothing
new: a report that says so, and the audit-wide metrics (the stale-audit alert's heartbeat).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetax.audit.discover import Target, digest_of, discover
from safetax.audit.gate import GateError, choose, promote
from safetax.audit.ledger import Ledger, check_audit_name
from safetax.audit.profiles import PROFILES, AuditProfile, resolve_profile
from safetax.audit.report import checkpoint_html, checkpoint_markdown, plot_audit, run_markdown
from safetax.audit.telemetry import Audited, publish_audit
from safetax.audit.verdict import Thresholds, judge_checkpoint
from safetax.config import Checks, ConfigError
from safetax.records import CheckpointScores
from safetax.stages.score import load_scores
from safetax.store import atomic_dir, input_dir, read_json, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
PLAN = "plan.json"
REPORT = "report.md"


@dataclass(frozen=True)
class AuditConfig:
    audit_name: str
    store_uri: str  # the ledger, reports and promoted checkpoints live under <store_uri>/audits/<audit_name>/
    checkpoint_prefix: str = ""  # s3://bucket/prefix (or a local directory) to watch
    checkpoints: tuple[str, ...] = ()  # explicit model URIs, audited once each
    profile: str = "nightly"
    custom_profile: dict[str, Any] = field(default_factory=dict, compare=False)
    thresholds: dict[str, Any] = field(default_factory=dict, compare=False)
    baseline: str = ""  # the reference model's name; its last audit is the baseline
    baseline_model: str = ""  # its URI, audited when the baseline has no record (or a different digest)
    audit_schedule: str = ""  # the cron the audit runs on ("" = ad hoc): the stale-audit alert's interval
    promote: bool = False  # run the safety gate: publish the best passing checkpoint under promoted/

    def __post_init__(self) -> None:
        c = Checks("audit")
        check_audit_name(c, self.audit_name)
        if not self.store_uri:
            c.fail("store_uri", self.store_uri, "an s3:// prefix or a local directory (where the ledger lives)")
        if not self.checkpoint_prefix and not self.checkpoints:
            c.fail("checkpoint_prefix", self.checkpoint_prefix, "an s3:// prefix or local directory to watch, or a non-empty `checkpoints` list")
        if not all(isinstance(u, str) and u for u in self.checkpoints):
            c.fail("checkpoints", list(self.checkpoints), "a list of model URIs (non-empty strings)")
        if self.baseline:
            check = Checks("")
            check_audit_name(check, self.baseline)
            if check.errors:
                c.fail("baseline", self.baseline, "a DNS-1123 label: lowercase letters, digits and '-'")
        elif self.baseline_model:
            c.fail("baseline", self.baseline, "a name for baseline_model's audit records")
        if self.profile not in PROFILES:
            c.fail("profile", self.profile, f"one of {list(PROFILES)}")
        for what, build in (("thresholds", lambda: Thresholds.from_dict(self.thresholds)),
                            ("profile", lambda: resolve_profile(self.profile, self.custom_profile) if self.profile in PROFILES else None),
                            ("audit_schedule", self._interval)):
            try:
                build()
            except ConfigError as e:
                c.errors += e.errors
            except ValueError as e:
                c.errors.append(f"`{what}`: {e}")
        c.raise_if_any()

    def _interval(self) -> float | None:
        if not self.audit_schedule:
            return None
        from safetax.cron import cron_interval_seconds

        return cron_interval_seconds(self.audit_schedule)

    @property
    def limits(self) -> Thresholds:
        return Thresholds.from_dict(self.thresholds)

    @property
    def resolved_profile(self) -> AuditProfile:
        return resolve_profile(self.profile, self.custom_profile)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditConfig:
        d = dict(d)
        d["checkpoints"] = tuple(d.get("checkpoints") or ())
        return cls(**d)


def plan(cfg: AuditConfig, out_dir: Path) -> dict[str, Any]:
    """Write ``plan.json``: the targets to evaluate (new checkpoints, and the baseline if it needs an audit)."""
    profile, limits = cfg.resolved_profile, cfg.limits
    limits.check_benchmarks(profile.benchmarks("reasoning"))
    ledger = Ledger(cfg.store_uri, cfg.audit_name)
    with timed(f"audit {cfg.audit_name}: plan"):
        found = discover(cfg.checkpoint_prefix, list(cfg.checkpoints), ledger.audited())
        baseline_record = ledger.baseline(cfg.baseline) if cfg.baseline else None
        targets = list(found.new)
        if cfg.baseline and cfg.baseline_model:
            digest = digest_of(cfg.baseline_model)
            if baseline_record is None or baseline_record.get("digest") != digest:
                baseline_record = None
                targets.insert(0, Target(f"baseline-{cfg.baseline}", cfg.baseline_model, digest, role="baseline"))
        if limits.needs_baseline and baseline_record is None and not any(t.role == "baseline" for t in targets):
            raise ConfigError("audit", [f"thresholds {sorted(k for k in ('max_reasoning_drop', 'max_safety_tax_rate') if limits.to_dict().get(k) is not None)} "
                                        f"compare with a baseline, but baseline {cfg.baseline or '(none)'!r} has no audit record "
                                        "and no baseline_model to audit"])
        if not found.new:  # nothing to audit: the baseline alone is not worth a run
            targets = []
        result = {"config": cfg.to_dict(), "profile": profile.to_dict(), "targets": [t.to_dict() for t in targets],
                  "already": [t.to_dict() for t in found.already], "incomplete": found.incomplete,
                  "baseline_record": baseline_record, "planned_at": time.time()}
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / PLAN, result)
    log.info("audit %s: %d new checkpoint(s) to audit%s, %d already audited, %d incomplete", cfg.audit_name,
             len(found.new), " (and the baseline)" if any(t.role == "baseline" for t in targets) else "",
             len(found.already), len(found.incomplete))
    return result


def targets(plan_dir: Path) -> list[dict[str, Any]]:
    """One item per target for the pipeline's evaluation loop: ``label`` (``name`` would clash with KFP's
    loop-item attribute), ``uri``, ``digest``, ``role``, and the profile's eval sets and sampling settings."""
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    profile = {k: v for k, v in p["profile"].items() if k != "name"}
    return [{"label": t["name"], "uri": t["uri"], "digest": t["digest"], "role": t["role"], **profile} for t in p["targets"]]


def audit_name(plan_dir: Path) -> str:
    return str(read_json(input_dir(plan_dir, "audit plan") / PLAN)["config"]["audit_name"])


def finish(plan_dir: Path, score_dirs: list[Path], out_dir: Path, run_id: str, gateway: str | None = None) -> list[Audited]:
    """Verdicts, reports, ledger records, metrics and the gate (see the module docstring)."""
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    cfg = AuditConfig.from_dict(p["config"])
    limits, ledger = cfg.limits, Ledger(cfg.store_uri, cfg.audit_name)
    scores = {cs.checkpoint: cs for cs in load_scores(score_dirs)}
    targets_ = [Target(**t) for t in p["targets"]]
    missing = [t.name for t in targets_ if t.name not in scores]
    if missing:
        raise ValueError(f"audit {cfg.audit_name}: no scores for {missing} (got {sorted(scores)})")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results: list[Audited] = []
    records: dict[str, dict[str, Any]] = {}
    with timed(f"audit {cfg.audit_name}: verdicts"), atomic_dir(out_dir) as tmp:
        baseline_scores = None
        if p["baseline_record"]:
            baseline_scores = CheckpointScores.from_dict(p["baseline_record"]["scores"])
        for t in [t for t in targets_ if t.role == "baseline"]:  # audited in this run: record it first
            baseline_scores = scores[t.name]
            verdict = judge_checkpoint(baseline_scores, None, Thresholds.from_dict({k: v for k, v in limits.to_dict().items()
                                                                                  if k not in ("max_reasoning_drop", "max_safety_tax_rate")}))
            record = _record(cfg, t, baseline_scores, verdict.to_dict(), run_id, now, ledger)
            ledger.write_record(t.digest, record)
            ledger.write_baseline(cfg.baseline, record)
        for t in [t for t in targets_ if t.role == "checkpoint"]:
            verdict = judge_checkpoint(scores[t.name], baseline_scores, limits)
            audited = Audited(t.name, scores[t.name], verdict, time.time())
            results.append(audited)
            md = checkpoint_markdown(cfg.audit_name, audited, t.uri, t.digest, limits, cfg.baseline)
            ledger.write_report(t.digest, md, checkpoint_html(f"Audit {cfg.audit_name}: {t.name}", audited,
                                                             [f"{f.criterion}: {f.message}" for f in verdict.failed]))
            records[t.name] = _record(cfg, t, scores[t.name], verdict.to_dict(), run_id, now, ledger)
            ledger.write_record(t.digest, records[t.name])  # the commit point of this checkpoint's audit
            log.info("audit %s: %s %s%s", cfg.audit_name, t.name, verdict.label.upper(),
                     "" if verdict.passed else " (" + ", ".join(f.criterion for f in verdict.failed) + ")")
        plot = plot_audit(results, baseline_scores, tmp / "audit.png")
        promoted, refused = "", None
        if cfg.promote and results:
            try:
                best = choose(results)
            except GateError as e:  # raised below, after the records, the report and the metrics
                refused = e
            else:
                target = next(t for t in targets_ if t.name == best.checkpoint)
                promoted = promote(target.uri, records[best.checkpoint], f"{ledger.root}/promoted/{best.checkpoint}")
                log.info("audit %s: safety gate promoted %s to %s", cfg.audit_name, best.checkpoint, promoted)
        gate = (f"Safety gate: promoted `{promoted}`." if promoted else f"Safety gate: nothing promoted. {refused}" if refused
                else "")
        report = run_markdown(cfg.audit_name, run_id, results, len(p["already"]), p["incomplete"], cfg.baseline, gate,
                              "audit.png" if plot else "")
        (tmp / REPORT).write_text(report)
        write_json(tmp / "verdicts.json", [{"checkpoint": a.checkpoint, **a.verdict.to_dict()} for a in results])
        ledger.write_run_report(run_id, report)
        publish_audit(cfg.audit_name, results, limits, cfg.resolved_profile.benchmarks("reasoning"), cfg._interval(), tmp, gateway)
    if refused is not None:
        raise refused
    return results


def idle(plan_dir: Path, out_dir: Path, run_id: str, gateway: str | None = None) -> str:
    """End a run with nothing new to audit: a report that says so, and the audit-wide metrics."""
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    cfg = AuditConfig.from_dict(p["config"])
    report = run_markdown(cfg.audit_name, run_id, [], len(p["already"]), p["incomplete"], cfg.baseline)
    with atomic_dir(out_dir) as tmp:
        (tmp / REPORT).write_text(report)
        Ledger(cfg.store_uri, cfg.audit_name).write_run_report(run_id, report)
        publish_audit(cfg.audit_name, [], cfg.limits, cfg.resolved_profile.benchmarks("reasoning"), cfg._interval(), tmp, gateway)
    log.info("audit %s: nothing new to audit", cfg.audit_name)
    return report


def _record(cfg: AuditConfig, t: Target, scores: CheckpointScores, verdict: dict[str, Any], run_id: str, now: str,
            ledger: Ledger) -> dict[str, Any]:
    return {"audit": cfg.audit_name, "checkpoint": t.name, "uri": t.uri, "digest": t.digest, "role": t.role,
            "profile": cfg.profile, "thresholds": cfg.limits.to_dict(), "baseline": cfg.baseline, "run_id": run_id,
            "completed_at": now, "verdict": verdict["verdict"], "failed": verdict["failed"], "scores": scores.to_dict(),
            "reasoning_drop": verdict["reasoning_drop"], "safety_tax_rate": verdict["safety_tax_rate"],
            "report": ledger.report_uri(t.digest) if t.role == "checkpoint" else ""}
