"""Stages of the audit pipeline: plan (what to audit), then finish (verdicts, ledger, reports, metrics, gate).

``plan`` validates every parameter (with the judge parameters, also the judge settings, the profile's eval data and
that the judge and baseline models can be reached: :mod:`safetax.audit.inputs`), lists the checkpoints under the
watched prefix (or given), drops those with an audit record in the ledger, without a manifest or that are no
model, and those whose audit failed ``max_attempts`` runs (given up: the ledger's ``attempts/``), claims the rest in the ledger (a
checkpoint that another run has claimed is left to it: two concurrent runs never audit one twice; see
:mod:`safetax.audit.ledger`), and resolves the baseline: its last audit record, or its model audited
in this run when it has none (or a newer model). The pipeline evaluates the plan's targets
(generate -> judge -> score, in parallel) and ``finish`` compares each with the baseline and the
thresholds, writes each checkpoint's report and then its ledger record (the commit point: a run that
fails before never leaves a record, so the checkpoint is audited again, up to ``max_attempts`` failed runs)
and releases its claim, pushes
the metrics and, with ``promote``, runs the safety gate. ``idle`` ends a run that found nothing new: a
report that says so, and the audit-wide metrics (the stale-audit alert's heartbeat).

Every run, idle ones included, also re-publishes the latest verdict of each checkpoint in the ledger
(acknowledged ones excepted), so the alert state follows from the store alone: a verdict whose push
was lost is pushed again by the next run. When a Pushgateway is configured and a push fails, the
task fails (:class:`AuditPublishError`) after the ledger, reports and gate are written.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetax.audit.discover import Target, discover, identify_model
from safetax.audit.inputs import AuditJudge, check_inputs
from safetax.audit.gate import GateError, choice, choose, promote, ranked_on
from safetax.audit.ledger import Ledger, check_audit_name, iso_utc
from safetax.audit.profiles import PROFILES, AuditProfile, resolve_profile
from safetax.audit.report import checkpoint_html, checkpoint_markdown, plan_notes, plot_audit, run_markdown
from safetax.audit.telemetry import Audited, publish_run
from safetax.audit.verdict import BASELINE_CRITERIA, Thresholds, judge_checkpoint
from safetax.config import Checks, ConfigError
from safetax.records import CheckpointScores
from safetax.stages.engine_params import EngineParams
from safetax.stages.score import load_scores
from safetax.store import StoreError, atomic_dir, input_dir, parse_store_uri, read_json, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
PLAN = "plan.json"
REPORT = "report.md"
# A claim outlives the longest audit run: generate (24 h) + judge (12 h) task deadlines, score and queueing.
# A run that dies without releasing its claims delays those checkpoints' audit by at most this long.
CLAIM_LEASE_S = 48 * 3600.0
# Three failed runs of one checkpoint (each already retried by KFP) is a fault that the next night will not fix.
MAX_ATTEMPTS = 3


class AuditPublishError(RuntimeError):
    """The verdicts are in the ledger, but their metrics did not reach the Pushgateway."""


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
    claim_lease_s: float = CLAIM_LEASE_S  # how long a run's claim on a checkpoint holds (see CLAIM_LEASE_S)
    max_attempts: int = MAX_ATTEMPTS  # failed runs of a checkpoint after which the audit skips it (see MAX_ATTEMPTS)

    def __post_init__(self) -> None:
        c = Checks("audit")
        check_audit_name(c, self.audit_name)
        if not self.store_uri:
            c.fail("store_uri", self.store_uri, "an s3:// prefix or a local directory (where the ledger lives)")
        for name in ("store_uri", "checkpoint_prefix"):
            if getattr(self, name):
                try:
                    parse_store_uri(getattr(self, name), f"`{name}`")
                except StoreError as e:
                    c.errors.append(str(e))
        c.boolean("promote", self.promote)
        if not (isinstance(self.claim_lease_s, (int, float)) and self.claim_lease_s > 0):
            c.fail("claim_lease_s", self.claim_lease_s, "a number of seconds > 0")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            c.fail("max_attempts", self.max_attempts, "a whole number of failed runs >= 1 after which a checkpoint is "
                                                      "given up (default 3)")
        try:
            drops = sorted(k for k in BASELINE_CRITERIA if Thresholds.from_dict(self.thresholds).to_dict().get(k) is not None)
        except ConfigError:
            drops = []  # reported below
        if drops and not self.baseline:
            c.errors.append(f"thresholds {drops} compare with a baseline, but `baseline` is empty: name the reference "
                            "model (and give `baseline_model` for its first audit)")
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
        n = d.get("max_attempts")
        if isinstance(n, float) and n.is_integer():  # KFP may hand whole numbers over as floats (3.0)
            d["max_attempts"] = int(n)
        return cls(**d)


def check_run(cfg: AuditConfig, judge: AuditJudge, engine: EngineParams | None = None) -> None:
    """Every check of an audit run that needs no claim: the thresholds' benchmarks, then the run's other inputs
    (:func:`safetax.audit.inputs.check_inputs`: judge, engine parameters, eval data, reachable models)."""
    cfg.limits.check_benchmarks(cfg.resolved_profile.benchmarks("reasoning"))
    check_inputs(cfg.resolved_profile, cfg.baseline_model, judge, engine)


def plan(cfg: AuditConfig, out_dir: Path, run_id: str = "", judge: AuditJudge | None = None,
         engine: EngineParams | None = None) -> dict[str, Any]:
    """Write ``plan.json``: the targets to evaluate (new checkpoints this run claimed, and the baseline if it
    needs an audit). ``run_id`` owns the claims (a retried plan of the same run keeps them); without one, a
    fresh owner id is made. With ``judge`` (the pipeline's judge parameters) and ``engine`` (its evaluation
    parameters), the run's other inputs are checked first (:func:`check_run`), before any claim."""
    profile = cfg.resolved_profile
    if judge is not None:
        check_run(cfg, judge, engine)
    else:
        cfg.limits.check_benchmarks(profile.benchmarks("reasoning"))
    ledger = Ledger(cfg.store_uri, cfg.audit_name)
    owner = run_id or f"local-{uuid.uuid4().hex[:12]}"
    with timed(f"audit {cfg.audit_name}: plan"):
        found = discover(cfg.checkpoint_prefix, list(cfg.checkpoints), ledger.audited())
        baseline_record, baseline_target = _baseline(cfg, ledger)
        new, given_up = _give_up(cfg, ledger, found.new, baseline_target)
        claimed: list[Target] = []
        try:
            claimed, elsewhere, recorded = _claim(ledger, new, owner, cfg.claim_lease_s)
            targets: list[Target] = list(claimed)
            if claimed and baseline_target is not None:  # nothing new: the baseline alone is not worth a run
                baseline_record, baseline_target, busy = _claim_baseline(cfg, ledger, baseline_target, owner)
                if busy is not None:  # another run audits the baseline now: these checkpoints wait for the next run
                    log.info("audit %s: baseline %s is being audited by %s: checkpoints deferred", cfg.audit_name,
                             cfg.baseline, busy.get("owner", "?"))
                    for t in claimed:
                        ledger.release(t.digest, owner)
                    elsewhere += [_held(t, busy) for t in claimed]
                    claimed, targets = [], []
                elif baseline_target is not None:
                    claimed.insert(0, baseline_target)
                    targets.insert(0, baseline_target)
            result = {"config": cfg.to_dict(), "profile": profile.to_dict(), "targets": [t.to_dict() for t in targets],
                      "already": [t.to_dict() for t in found.already + recorded], "incomplete": found.incomplete,
                      "skipped": [{"name": n, "reason": r} for n, r in found.skipped], "given_up": given_up,
                      "max_attempts": cfg.max_attempts, "claimed_elsewhere": elsewhere, "owner": owner,
                      "baseline_record": baseline_record, "planned_at": time.time()}
            with atomic_dir(out_dir) as tmp:
                write_json(tmp / PLAN, result)
        except BaseException:
            for t in claimed:  # nothing will audit them: free them for the next run at once
                ledger.release(t.digest, owner)
            raise
    todo = [t for t in targets if t.role == "checkpoint"]
    log.info("audit %s: %d new checkpoint(s) to audit%s, %d already audited, %d being audited by another run, "
             "%d incomplete, %d not models, %d given up", cfg.audit_name, len(todo),
             " (and the baseline)" if len(targets) > len(todo) else "", len(result["already"]), len(elsewhere),
             len(found.incomplete), len(found.skipped), len(given_up))
    return result


def _give_up(cfg: AuditConfig, ledger: Ledger, new: list[Target], baseline: Target | None
             ) -> tuple[list[Target], list[dict[str, Any]]]:
    """(the new checkpoints to claim, those given up): a checkpoint whose audit failed ``max_attempts`` runs is
    left out; when the baseline this run would audit is given up, every checkpoint waits (they need it)."""
    attempts = ledger.attempts()
    failed = [t for t in ([baseline] if baseline is not None else []) + new
              if attempts.get(t.digest, {}).get("count", 0) >= cfg.max_attempts]
    given_up = [{"name": t.name, "digest": t.digest, "count": int(attempts[t.digest]["count"]),
                 "last_run_id": str(attempts[t.digest].get("last_run_id", "?")), "last_at": iso_utc(attempts[t.digest].get("last_at"))}
                for t in failed]
    if given_up:
        log.warning("audit %s: gave up on %d checkpoint(s) after %d failed run(s) each: %s", cfg.audit_name,
                    len(given_up), cfg.max_attempts, ", ".join(g["name"] for g in given_up))
    if baseline is not None and baseline in failed:
        return [], given_up
    return [t for t in new if t not in failed], given_up


def _baseline(cfg: AuditConfig, ledger: Ledger) -> tuple[dict[str, Any] | None, Target | None]:
    """(the baseline's record, the baseline as a target when its model needs an audit: no record, or another digest)."""
    record = ledger.baseline(cfg.baseline) if cfg.baseline else None
    target = None
    if cfg.baseline and cfg.baseline_model:
        model = identify_model(cfg.baseline_model, "baseline_model")  # a hub id: pinned to the commit identified
        if record is None or record.get("digest") != model.digest:
            record, target = None, Target(f"baseline-{cfg.baseline}", model.pinned, model.digest, role="baseline")
    limits = cfg.limits
    if limits.needs_baseline and record is None and target is None:
        drops = sorted(k for k in BASELINE_CRITERIA if limits.to_dict().get(k) is not None)
        raise ConfigError("audit", [f"thresholds {drops} compare with a baseline, but baseline {cfg.baseline or '(none)'!r} "
                                    "has no audit record and no baseline_model to audit"])
    return record, target


def _claim(ledger: Ledger, new: list[Target], owner: str, lease_s: float) -> tuple[list[Target], list[dict[str, Any]], list[Target]]:
    """(targets this run claimed, those another run holds, those recorded meanwhile) of the new checkpoints."""
    claimed: list[Target] = []
    elsewhere: list[dict[str, Any]] = []
    recorded: list[Target] = []
    try:
        for t in new:
            held = ledger.claim(t.digest, owner, t.name, lease_s)
            if held is not None:
                elsewhere.append(_held(t, held))
                log.info("audit %s: %s is being audited by %s (claim until %s): skipped", ledger.audit, t.name,
                         held.get("owner", "?"), iso_utc(held.get("expires_at")))
            elif ledger.has_record(t.digest):  # a run finished it between our listing and our claim
                ledger.release(t.digest, owner)
                recorded.append(t)
            else:
                claimed.append(t)
    except BaseException:
        for t in claimed:
            ledger.release(t.digest, owner)
        raise
    return claimed, elsewhere, recorded


def _claim_baseline(cfg: AuditConfig, ledger: Ledger, target: Target, owner: str
                    ) -> tuple[dict[str, Any] | None, Target | None, dict[str, Any] | None]:
    """(baseline record, baseline target, the claim that blocks it): the baseline is audited by one run at a time."""
    held = ledger.claim(target.digest, owner, target.name, cfg.claim_lease_s)
    if held is not None:
        return None, None, held
    record = ledger.baseline(cfg.baseline)
    if record is not None and record.get("digest") == target.digest:  # recorded meanwhile by another run
        ledger.release(target.digest, owner)
        return record, None, None
    return None, target, None


def _held(t: Target, claim: dict[str, Any]) -> dict[str, Any]:
    return {"name": t.name, "digest": t.digest, "owner": str(claim.get("owner", "?")), "until": iso_utc(claim.get("expires_at"))}


def release_claims(plan_dir: Path) -> None:
    """Release every claim the plan's run still holds (what ``finish`` does at its end; for an exit handler
    that runs when an evaluation task failed, so that the next run need not wait for the leases)."""
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    ledger = Ledger(p["config"]["store_uri"], p["config"]["audit_name"])
    for t in p["targets"]:
        ledger.release(t["digest"], p.get("owner", ""))


def release_run_claims(store_uri: str, audit: str, run_id: str) -> int:
    """Release every claim of run ``run_id`` (the pipeline's exit handler: after a failed evaluation task the next
    run need not wait for the leases; after a finished run there are none left). Each claim still held is a failed
    attempt at its checkpoint, counted in the ledger first (see :mod:`safetax.audit.ledger`)."""
    released = Ledger(store_uri, audit).release_all(run_id)
    log.info("audit %s: released %d claim(s) of run %s%s", audit, len(released), run_id,
             f", each counted as a failed attempt: {', '.join(str(c.get('checkpoint', '?')) for c in released)}" if released else "")
    return len(released)


def targets(plan_dir: Path, eval_shards: int = 1) -> list[dict[str, Any]]:
    """One item per target for the pipeline's evaluation loop (``eval_shards`` > 1: one per shard of a target):
    ``label`` (``name`` would clash with KFP's loop-item attribute), ``uri``, ``digest``, ``role``, ``part`` (the
    chain's target: "" without shards, else ``<label>/shard-i-of-n``: safetax.shards), and the profile's eval sets
    and sampling settings."""
    from safetax.shards import check_count, items

    n = check_count(eval_shards)
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    profile = {k: v for k, v in p["profile"].items() if k != "name"}
    return [{"label": t["name"], "uri": t["uri"], "digest": t["digest"], "role": t["role"], "part": part if n > 1 else "", **profile}
            for t in p["targets"] for part in items([t["name"]], n)]


def audit_name(plan_dir: Path) -> str:
    return str(read_json(input_dir(plan_dir, "audit plan") / PLAN)["config"]["audit_name"])


def finish(plan_dir: Path, score_dirs: list[Path], out_dir: Path, run_id: str, gateway: str | None = None) -> list[Audited]:
    """Verdicts, reports, ledger records, metrics and the gate (see the module docstring).

    Raises:
        GateError: with ``promote``, when no checkpoint passes (after the records and the metrics).
        AuditPublishError: when a configured Pushgateway did not take every push (after the records).
    """
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    cfg = AuditConfig.from_dict(p["config"])
    ledger = Ledger(cfg.store_uri, cfg.audit_name)
    try:
        results, refused, unpushed = _finish(p, cfg, ledger, score_dirs, out_dir, run_id, gateway)
    finally:  # after the records: a claim whose record is missing (a failure) is free for the next run at once
        for t in p["targets"]:
            if ledger.release(t["digest"], p.get("owner", "")) and not ledger.has_record(t["digest"]):
                ledger.record_failure(t["digest"], t["name"], run_id)
    if refused is not None:
        if unpushed:
            log.error("%s", unpushed)
        raise refused
    if unpushed:
        raise AuditPublishError(unpushed)
    return results


def _finish(p: dict[str, Any], cfg: AuditConfig, ledger: Ledger, score_dirs: list[Path], out_dir: Path, run_id: str,
            gateway: str | None) -> tuple[list[Audited], GateError | None, str | None]:
    limits = cfg.limits
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
            ledger.clear_attempts(t.digest)
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
            ledger.clear_attempts(t.digest)
            log.info("audit %s: %s %s%s", cfg.audit_name, t.name, verdict.label.upper(),
                     "" if verdict.passed else " (" + ", ".join(f.criterion for f in verdict.failed) + ")")
        plot = plot_audit(results, baseline_scores, tmp / "audit.png")
        promoted, refused = "", None
        if cfg.promote and results:
            try:
                best = choose(results, cfg.limits.confidence)
            except GateError as e:  # raised below, after the records, the report and the metrics
                refused = e
            else:
                target = next(t for t in targets_ if t.name == best.checkpoint)
                promoted = promote(target.uri, records[best.checkpoint], f"{ledger.root}/promoted/{best.checkpoint}")
                log.info("audit %s: safety gate promoted %s to %s", cfg.audit_name, best.checkpoint, promoted)
        gate = (f"Safety gate: promoted `{promoted}` ({choice(ranked_on(cfg.limits.confidence))})." if promoted else f"Safety gate: nothing promoted. {refused}" if refused
                else "")
        report = run_markdown(cfg.audit_name, run_id, results, len(p["already"]), p["incomplete"], cfg.baseline, gate,
                              "audit.png" if plot else "") + plan_notes(p)
        (tmp / REPORT).write_text(report)
        write_json(tmp / "verdicts.json", [{"checkpoint": a.checkpoint, **a.verdict.to_dict()} for a in results])
        ledger.write_run_report(run_id, report)
        unpushed = _publish(cfg, ledger, results, tmp, gateway, run_id, float(p.get("planned_at", 0)))
    return results, refused, unpushed


def idle(plan_dir: Path, out_dir: Path, run_id: str, gateway: str | None = None) -> str:
    """End a run with nothing new to audit: a report that says so, the ledger's verdicts re-published and the
    audit-wide metrics. Raises :class:`AuditPublishError` when a configured Pushgateway did not take them."""
    p = read_json(input_dir(plan_dir, "audit plan") / PLAN)
    cfg = AuditConfig.from_dict(p["config"])
    ledger = Ledger(cfg.store_uri, cfg.audit_name)
    report = run_markdown(cfg.audit_name, run_id, [], len(p["already"]), p["incomplete"], cfg.baseline) + plan_notes(p)
    with atomic_dir(out_dir) as tmp:
        (tmp / REPORT).write_text(report)
        ledger.write_run_report(run_id, report)
        unpushed = _publish(cfg, ledger, [], tmp, gateway, run_id, float(p.get("planned_at", 0)))
    log.info("audit %s: nothing new to audit", cfg.audit_name)
    if unpushed:
        raise AuditPublishError(unpushed)
    return report


def _publish(cfg: AuditConfig, ledger: Ledger, results: list[Audited], out: Path, gateway: str | None, run_id: str = "",
             started_at: float = 0.0) -> str | None:
    """:func:`safetax.audit.telemetry.publish_run` with this audit's settings."""
    return publish_run(ledger, results, cfg.limits, cfg.resolved_profile.benchmarks("reasoning"), cfg._interval(), out,
                       gateway, cfg.max_attempts, run_id, started_at)


def _record(cfg: AuditConfig, t: Target, scores: CheckpointScores, verdict: dict[str, Any], run_id: str, now: str,
            ledger: Ledger) -> dict[str, Any]:
    return {"audit": cfg.audit_name, "checkpoint": t.name, "uri": t.uri, "digest": t.digest, "role": t.role,
            "profile": cfg.profile, "thresholds": cfg.limits.to_dict(), "baseline": cfg.baseline, "run_id": run_id,
            "completed_at": now, "verdict": verdict["verdict"], "failed": verdict["failed"], "decided_on": verdict.get("decided_on", ""),
            "checks": verdict.get("checks", []), "scores": scores.to_dict(),
            "reasoning_drop": verdict["reasoning_drop"], "safety_tax_rate": verdict["safety_tax_rate"],
            "report": ledger.report_uri(t.digest) if t.role == "checkpoint" else ""}
