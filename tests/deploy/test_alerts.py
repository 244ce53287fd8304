"""The alerts, in the chart (defaults and ci/monitoring-values.yaml) and in k8s/: `promtool check rules`
accepts the rule groups, and `promtool test rules` shows each alert firing exactly when it should, with the
thresholds and `for:` durations that the values set (the audit alerts: with each audit's own thresholds, as
the audit pipeline pushes them). Every metric the rules and the dashboard query is one the stages or the
audit pipeline push (safetax.telemetry.metrics)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.telemetry.metrics import AuditMetricSet, MetricSet

CHART = Path(__file__).resolve().parents[2] / "helm" / "safetax"
SOURCES = ("chart-defaults", "chart-monitoring-values", "k8s")
# The labels the stages push (safetax.telemetry.metrics); Prometheus keeps job with honorLabels.
RUN = {"job": "safetax", "pipeline": "safetax-alignment", "run_id": "run-1", "model": "R1-Distill-Qwen-7B"}
# The audit pipeline's labels; a stage of it also carries the audit (an extra grouping label).
AUDIT = {"job": "safetax", "pipeline": "safetax-audit"}
AUDIT_RULES = ("SafetaxAuditFailed", "SafetaxAuditSafetyLow", "SafetaxAuditReasoningDropHigh", "SafetaxAuditStale",
               "SafetaxAuditRunFailed", "SafetaxAuditCheckpointGivenUp")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def contract_metrics() -> set[str]:
    return {family.name for metrics in (MetricSet(), AuditMetricSet()) for family in metrics.registry.collect()}


def minutes(duration: str) -> int:
    """A Prometheus duration ("1h30m", "0m") in whole minutes."""
    return int(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(duration)) // 60)


def percentage(value: float) -> str:
    """Prometheus' humanizePercentage: %.4g of value * 100."""
    return f"{value * 100:.4g}%"


def human_duration(seconds: float) -> str:
    """Prometheus' humanizeDuration for a whole number of seconds >= 1 ("1d 2h 0m 0s", "30m 0s")."""
    whole = int(seconds)
    days, hours, mins, secs = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
    if days:
        return f"{days}d {hours}h {mins}m {secs}s"
    if hours:
        return f"{hours}h {mins}m {secs}s"
    return f"{mins}m {secs}s" if mins else f"{seconds:.4g}s"


def merged(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``defaults``, nested maps merged key by key (as Helm merges values)."""
    out = dict(defaults)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(params=SOURCES)
def rules(request: pytest.FixtureRequest, render: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(rule file {"groups": ...}, the prometheusRule values it was rendered from)."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]
    if request.param == "k8s":  # the kustomize base ships the chart's default thresholds
        docs = request.getfixturevalue("kustomized")
        (doc,) = [d for d in docs if d["kind"] == "PrometheusRule"]
        return {"groups": doc["spec"]["groups"]}, defaults
    values = {"prometheusRule": {"enabled": True}}
    if request.param == "chart-monitoring-values":
        values = yaml.safe_load((CHART / "ci" / "monitoring-values.yaml").read_text())
    settings = merged(defaults, values["prometheusRule"])
    doc = render(values).one("PrometheusRule")
    return {"groups": doc["spec"]["groups"]}, settings


def _series(metric: str, labels: dict[str, str], value: float, samples: int) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{body}}}", "values": f"{round(value, 6)}x{samples}"}


def _alert(labels: dict[str, str], severity: str, summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": {**labels, "severity": severity}, "exp_annotations": {"summary": summary, "description": description}}


STAGE_FAILED_DESCRIPTION = ("safetax-alignment run run-1 (R1-Distill-Qwen-7B, lora): see the run in the KFP UI. "
                            "The Pushgateway keeps the series until its group is deleted.")
AUDIT_FAILED_DESCRIPTION = (
    "The checkpoint misses the audit's thresholds; the criteria alerts (SafetaxAuditSafetyLow, "
    "SafetaxAuditReasoningDropHigh) and the dashboard's Audits row say which. Delete the checkpoint's Pushgateway group once handled.")

SAFETY_LOW_DESCRIPTION = ("The checkpoint answers too many harmful prompts of {bench} harmfully for audit {audit} "
                          "(with a confidence, the figure shown is its bound).")
DROP_HIGH_DESCRIPTION = ("The checkpoint pays a high safety tax on {bench} for audit {audit} (criterion max_reasoning_drop; "
                         "with a confidence, the drop shown is its upper bound).")


def unit_tests(s: dict[str, Any]) -> list[dict[str, Any]]:
    """promtool unit tests for the thresholds and durations ``s`` (the prometheusRule values)."""
    safety, drop, failed = s["safetyScore"], s["reasoningDrop"], s["stageFailed"]
    longest = max(minutes(safety["for"]), minutes(drop["for"]), minutes(failed["for"]))
    at, samples = longest + 5, longest + 30
    lora = {**RUN, "method": "lora"}
    low, high, base = ({**lora, "checkpoint": c, "benchmark": "strongreject"} for c in ("lora/epoch-1", "lora/epoch-2", "base"))
    low_score = safety["threshold"] - 0.05
    big, small = ({**lora, "checkpoint": c} for c in ("lora/epoch-1", "lora/epoch-2"))
    big_drop = drop["threshold"] + 0.05
    train, generate = ({**RUN, "stage": st, "method": "lora"} for st in ("train", "generate"))
    # The gate promoted lora/epoch-1 (the gate stage's group has no method) and, in another run, lora/epoch-2;
    # lora/epoch-3 is an experiment's epoch like any other: low figures there alert nobody.
    promoted = [{**RUN, "method": "", "checkpoint": "lora/epoch-1"}, {**RUN, "run_id": "run-2", "method": "", "checkpoint": "lora/epoch-2"}]
    unpromoted = {**lora, "checkpoint": "lora/epoch-3"}
    series = [
        _series("safetax_safety_score", low, low_score, samples),  # under the threshold and promoted: fires
        _series("safetax_safety_score", high, safety["threshold"] + 0.05, samples),  # above: silent
        _series("safetax_safety_score", base, 0.0, samples),  # the base model is exempt
        _series("safetax_safety_score", {**unpromoted, "benchmark": "strongreject"}, low_score, samples),  # not promoted
        _series("safetax_reasoning_drop", big, big_drop, samples),  # over the threshold and promoted: fires
        _series("safetax_reasoning_drop", small, drop["threshold"] - 0.02, samples),
        _series("safetax_reasoning_drop", unpromoted, big_drop, samples),  # not promoted: silent
        *[_series("safetax_gate_promoted", labels, 1, samples) for labels in promoted],
        _series("safetax_stage_failed", train, 1, samples),  # a failed stage fires
        _series("safetax_stage_failed", generate, 0, samples),
    ]
    run = "Run run-1 of R1-Distill-Qwen-7B (lora)"
    checks = [
        {"eval_time": f"{at}m", "alertname": "SafetaxSafetyScoreLow", "exp_alerts": [_alert(
            low, safety["severity"],
            f"Safety score of lora/epoch-1 on strongreject is {percentage(low_score)} (threshold {safety['threshold']})",
            f"{run}: the checkpoint its safety gate promoted answers too few harmful prompts safely.")]},
        {"eval_time": f"{at}m", "alertname": "SafetaxReasoningDropHigh", "exp_alerts": [_alert(
            big, drop["severity"],
            f"Reasoning (pass@1) of lora/epoch-1 dropped by {percentage(big_drop)} against the base model (threshold {drop['threshold']})",
            f"{run}: the checkpoint its safety gate promoted pays a high safety tax.")]},
        {"eval_time": f"{at}m", "alertname": "SafetaxStageFailed", "exp_alerts": [_alert(
            train, failed["severity"], "Stage train of run run-1 failed", STAGE_FAILED_DESCRIPTION)]},
    ]
    for name, alert in (("SafetaxSafetyScoreLow", safety), ("SafetaxReasoningDropHigh", drop), ("SafetaxStageFailed", failed)):
        if minutes(alert["for"]) >= 2:  # still pending one minute before `for:` has passed
            checks.append({"eval_time": f"{minutes(alert['for']) - 1}m", "alertname": name, "exp_alerts": []})
    return [{"interval": "1m", "input_series": series, "alert_rule_test": checks}]


def _pending(name: str, became_true_s: int, duration: str) -> list[dict[str, Any]]:
    """Checks that ``name`` is silent the minute before its condition holds and, when ``for:`` is 2m or more,
    still pending one minute before ``for:`` has passed (the condition holding from ``became_true_s`` on)."""
    checks = [{"eval_time": f"{became_true_s - 60}s", "alertname": name, "exp_alerts": []}] if became_true_s >= 60 else []
    if minutes(duration) >= 2:
        checks.append({"eval_time": f"{became_true_s + (minutes(duration) - 1) * 60}s", "alertname": name, "exp_alerts": []})
    return checks


def audit_result_tests(s: dict[str, Any]) -> dict[str, Any]:
    """A promtool test group for the per-checkpoint audit alerts and the audit run failure, for the
    prometheusRule values ``s``. Two audits with different thresholds: the same figures fail one and pass the
    other; a third sets only a maximum attack success rate. As the audit pipeline pushes them, a benchmark's
    attack success rate is 1 - its safety score (no unscored answers). A failed audit stage alerts once, as SafetaxAuditRunFailed;
    a failed alignment stage as before."""
    a = s["audits"]
    longest = max(minutes(a[k]["for"]) for k in ("failed", "safetyLow", "reasoningDropHigh", "runFailed"))
    at, samples = longest + 5, longest + 10
    nightly, weekly = {**AUDIT, "audit": "nightly"}, {**AUDIT, "audit": "weekly"}
    bad, good = ({**nightly, "checkpoint": c} for c in ("lora/epoch-3", "lora/epoch-2"))
    weekly_ok, weekly_bad = ({**weekly, "checkpoint": c} for c in ("lora/epoch-3", "full/epoch-1"))
    redteam = {**AUDIT, "audit": "redteam", "checkpoint": "lora/epoch-3"}

    def on(ckpt: dict[str, str], benchmark: str) -> dict[str, str]:
        return {**ckpt, "benchmark": benchmark}

    def threshold(audit: dict[str, str], criterion: str, value: float, **extra: str) -> dict[str, str]:
        return _series("safetax_audit_threshold", {**audit, "criterion": criterion, **extra}, value, samples)

    series = [
        _series("safetax_audit_verdict", bad, 0, samples),  # fails: alerts
        _series("safetax_audit_failed_criteria", bad, 3, samples),
        _series("safetax_audit_verdict", good, 1, samples),
        _series("safetax_audit_verdict", weekly_ok, 1, samples),
        _series("safetax_audit_verdict", weekly_bad, 0, samples),  # no failed-criteria series: the summary says so
        threshold(nightly, "min_safety_score", 0.9), threshold(weekly, "min_safety_score", 0.7),
        threshold(nightly, "max_attack_success_rate", 0.1), threshold(weekly, "max_attack_success_rate", 0.3),
        threshold(nightly, "max_overrefusal_rate", 0.2), threshold(nightly, "max_safety_tax_rate", 1.0),
        threshold(nightly, "max_reasoning_drop", 0.05, benchmark="aime24"),
        threshold(nightly, "max_reasoning_drop", 0.1, benchmark="math500"),
        threshold(weekly, "max_reasoning_drop", 0.15, benchmark="aime24"),
        threshold({**AUDIT, "audit": "redteam"}, "max_attack_success_rate", 0.1),
    ]
    def checked(ckpt: dict[str, str], criterion: str, bench: str, value: float) -> dict[str, str]:
        """What the verdict compared with a criterion's threshold, as the audit pushes it."""
        return _series("safetax_audit_criterion_value", {**on(ckpt, bench), "criterion": criterion}, value, samples)

    for ckpt, bench, score, criteria in (
            (bad, "strongreject", 0.8, 2),  # under nightly's minimum (0.9), over weekly's (0.7);
            (weekly_ok, "strongreject", 0.8, 2),  # its ASR 0.2 over nightly's maximum, under weekly's
            (good, "strongreject", 0.95, 2),
            (redteam, "wildjailbreak", 0.85, 1)):  # no minimum; ASR 0.15 over redteam's maximum (0.1)
        series += [_series("safetax_audit_safety_score", on(ckpt, bench), score, samples),
                   _series("safetax_audit_attack_success_rate", on(ckpt, bench), 1 - score, samples)]
        series += [checked(ckpt, "min_safety_score", bench, score)] if criteria == 2 else []
        series += [checked(ckpt, "max_attack_success_rate", bench, 1 - score)]
    series += [
        # 0.08 is over nightly's maximum on aime24 (0.05), under its maximum on math500 (0.1) and weekly's (0.15)
        checked(bad, "max_reasoning_drop", "aime24", 0.08),
        checked(bad, "max_reasoning_drop", "math500", 0.08),
        checked(weekly_ok, "max_reasoning_drop", "aime24", 0.08),
        _series("safetax_audit_reasoning_drop", on(bad, "aime24"), 0.08, samples),
        _series("safetax_audit_pass_at_1", on(bad, "aime24"), 0.4, samples),
        _series("safetax_audit_overrefusal_rate", on(bad, "xstest"), 0.1, samples),
    ]
    stage = {"run_id": "audit-run-7", "model": "R1-Distill-Qwen-7B", "method": "audit"}
    audit_stage = {**nightly, **stage, "stage": "generate"}
    train = {**RUN, "stage": "train", "method": "lora"}
    series += [_series("safetax_stage_failed", audit_stage, 1, samples),  # SafetaxAuditRunFailed only
               _series("safetax_stage_failed", {**weekly, **stage, "stage": "judge"}, 0, samples),
               _series("safetax_stage_failed", train, 1, samples)]  # an alignment stage: SafetaxStageFailed only
    checks = [
        {"eval_time": f"{at}m", "alertname": "SafetaxAuditFailed", "exp_alerts": [
            _alert(bad, a["failed"]["severity"], "Audit nightly: checkpoint lora/epoch-3 failed (3 failed criteria)",
                   AUDIT_FAILED_DESCRIPTION),
            _alert(weekly_bad, a["failed"]["severity"],
                   "Audit weekly: checkpoint full/epoch-1 failed (unknown number of failed criteria)", AUDIT_FAILED_DESCRIPTION)]},
        # nightly's lora/epoch-3 misses both safety criteria: one alert, the safety score's
        {"eval_time": f"{at}m", "alertname": "SafetaxAuditSafetyLow", "exp_alerts": [
            _alert({**on(bad, "strongreject"), "criterion": "min_safety_score"}, a["safetyLow"]["severity"],
                   "Audit nightly: lora/epoch-3 is unsafe on strongreject (min_safety_score 90%, got 80%)",
                   SAFETY_LOW_DESCRIPTION.format(bench="strongreject", audit="nightly")),
            _alert({**on(redteam, "wildjailbreak"), "criterion": "max_attack_success_rate"}, a["safetyLow"]["severity"],
                   "Audit redteam: lora/epoch-3 is unsafe on wildjailbreak (max_attack_success_rate 10%, got 15%)",
                   SAFETY_LOW_DESCRIPTION.format(bench="wildjailbreak", audit="redteam"))]},
        {"eval_time": f"{at}m", "alertname": "SafetaxAuditReasoningDropHigh", "exp_alerts": [_alert(
            {**on(bad, "aime24"), "criterion": "max_reasoning_drop"}, a["reasoningDropHigh"]["severity"],
            "Audit nightly: pass@1 of lora/epoch-3 on aime24 dropped by 8% against the baseline (audit maximum 5%)",
            DROP_HIGH_DESCRIPTION.format(bench="aime24", audit="nightly"))]},
        {"eval_time": f"{at}m", "alertname": "SafetaxAuditRunFailed", "exp_alerts": [_alert(
            audit_stage, a["runFailed"]["severity"], "Stage generate of audit nightly failed (run audit-run-7)",
            "Audit nightly run audit-run-7: see the run in the KFP UI. The Pushgateway keeps the series until its group is deleted.")]},
        {"eval_time": f"{at}m", "alertname": "SafetaxStageFailed", "exp_alerts": [_alert(
            train, s["stageFailed"]["severity"], "Stage train of run run-1 failed", STAGE_FAILED_DESCRIPTION)]},
    ]
    for key, name in (("failed", "SafetaxAuditFailed"), ("safetyLow", "SafetaxAuditSafetyLow"),
                      ("reasoningDropHigh", "SafetaxAuditReasoningDropHigh"), ("runFailed", "SafetaxAuditRunFailed")):
        checks += _pending(name, 0, a[key]["for"])
    return {"interval": "1m", "input_series": series, "alert_rule_test": checks}


def audit_stale_tests(a: dict[str, Any]) -> dict[str, Any]:
    """A promtool test group for SafetaxAuditStale. promtool's time() is the evaluation time (0 at the start),
    so a last completion at ``last`` is ``t - last`` old at ``t``. At ``end`` the nightly audit last completed
    (factor + 1) intervals ago (at least: whole minutes) and alerts; the weekly one completed one of its own
    (longer) intervals ago and does not. A third audit's series vanish half-way (a restarted Pushgateway): it
    alerts all the same, from what Prometheus remembers."""
    stale = a["stale"]
    factor, interval = stale["staleFactor"], (minutes(stale["for"]) + 10) * 60
    age = math.ceil((factor + 1) * interval / 60) * 60
    last, end = interval, interval + age
    # The condition (age > factor * interval) holds from the first evaluation after last + factor * interval on.
    became_true = (math.floor((last + factor * interval) / 60) + 1) * 60
    samples = end // 60 + 5
    nightly, weekly = {**AUDIT, "audit": "nightly"}, {**AUDIT, "audit": "weekly"}
    restarted = {**AUDIT, "audit": "restarted"}  # as nightly, but the Pushgateway restarted and forgot its groups
    gone = f"_x{samples - 2 * last // 60}"
    series = [
        _series("safetax_audit_last_completed_timestamp_seconds", nightly, last, samples),
        _series("safetax_audit_interval_seconds", nightly, interval, samples),
        {"series": _series("safetax_audit_last_completed_timestamp_seconds", restarted, last, 0)["series"],
         "values": f"{last}x{2 * last // 60} {gone}"},
        {"series": _series("safetax_audit_interval_seconds", restarted, interval, 0)["series"],
         "values": f"{interval}x{2 * last // 60} {gone}"},
        _series("safetax_audit_last_completed_timestamp_seconds", weekly, end - 2 * interval, samples),
        _series("safetax_audit_interval_seconds", weekly, 2 * interval, samples),
        _series("safetax_audit_checkpoints_audited", nightly, 0, samples),
    ]
    checks = [{"eval_time": f"{end}s", "alertname": "SafetaxAuditStale", "exp_alerts": [_alert(
        {"audit": name}, stale["severity"],
        f"Audit {name} has not completed a run for {human_duration(age)} (scheduled every {human_duration(interval)})",
        f"More than {factor} schedule intervals without a completed run of audit {name}: its recurring run is paused "
        "or deleted, or its runs fail (SafetaxAuditRunFailed) or hang.") for name in ("nightly", "restarted")]}]
    checks += _pending("SafetaxAuditStale", became_true, stale["for"])
    return {"interval": "1m", "input_series": series, "alert_rule_test": checks}


def all_unit_tests(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The test groups of every alert for the prometheusRule values ``s``."""
    return [*unit_tests(s), audit_result_tests(s), audit_stale_tests(s["audits"])]

def run_promtool(promtool: str, tmp_path: Path, rule_file: dict[str, Any], tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_file, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rule_groups(promtool: str, tmp_path: Path, rules: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rule_file, _ = rules
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_file, sort_keys=False))
    out = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {3 + len(AUDIT_RULES)} rules found" in out.stdout
    groups = {group["name"]: [rule["alert"] for rule in group["rules"]] for group in rule_file["groups"]}
    assert groups["safetax.audits"] == list(AUDIT_RULES)


def test_alerts_fire_exactly_when_they_should(promtool: str, tmp_path: Path, rules: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rule_file, settings = rules
    out = run_promtool(promtool, tmp_path, rule_file, all_unit_tests(settings))
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path, render: Any) -> None:
    """The harness can fail: a safety score above the threshold is expected to alert, and promtool says no."""
    rule_file = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    tests = unit_tests(yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"])
    first = tests[0]["alert_rule_test"][0]
    first["exp_alerts"][0]["exp_labels"]["checkpoint"] = "lora/epoch-2"  # the series at threshold + 0.05
    out = run_promtool(promtool, tmp_path, rule_file, tests)
    assert out.returncode != 0 and "SafetaxSafetyScoreLow" in out.stdout + out.stderr


@pytest.mark.parametrize(("alertname", "mistake"), [
    # weekly's score (0.8) is over its own minimum (0.7): only nightly's minimum (0.9) would make it alert
    ("SafetaxAuditSafetyLow", {"audit": "weekly"}),
    # nightly's lora/epoch-3 misses both safety criteria, and alerts once: for the safety score
    ("SafetaxAuditSafetyLow", {"criterion": "max_attack_success_rate"}),
    # lora/epoch-3's drop on math500 (0.08) is under nightly's maximum for math500 (0.1), over the one for aime24
    ("SafetaxAuditReasoningDropHigh", {"benchmark": "math500"}),
    # an audit stage's failure is SafetaxAuditRunFailed's, never SafetaxStageFailed's as well
    ("SafetaxStageFailed", {"pipeline": "safetax-audit", "audit": "nightly", "run_id": "audit-run-7", "stage": "generate"}),
])
def test_a_wrong_audit_expectation_fails(promtool: str, tmp_path: Path, render: Any, alertname: str,
                                         mistake: dict[str, str]) -> None:
    """The audit tests can fail: an alert expected from another audit's threshold, another benchmark's
    threshold, or from both stage-failure rules, is one that promtool does not see."""
    rule_file = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    group = audit_result_tests(yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"])
    check = next(c for c in group["alert_rule_test"] if c["alertname"] == alertname and c["exp_alerts"])
    check["exp_alerts"][0]["exp_labels"].update(mistake)
    out = run_promtool(promtool, tmp_path, rule_file, [group])
    assert out.returncode != 0 and alertname in out.stdout + out.stderr


def test_a_stale_expectation_fails(promtool: str, tmp_path: Path, render: Any) -> None:
    """The staleness test can fail: the weekly audit (one interval old) is expected to be stale, and it is not."""
    rule_file = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    group = audit_stale_tests(yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["audits"])
    group["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["audit"] = "weekly"
    out = run_promtool(promtool, tmp_path, rule_file, [group])
    assert out.returncode != 0 and "SafetaxAuditStale" in out.stdout + out.stderr


def test_thresholds_come_from_values(render: Any) -> None:
    values = {"prometheusRule": {"enabled": True, "safetyScore": {"threshold": 0.65, "for": "30m", "severity": "page"}}}
    alerts, _ = render(values).one("PrometheusRule")["spec"]["groups"]
    rule = next(r for r in alerts["rules"] if r["alert"] == "SafetaxSafetyScoreLow")
    assert "} < 0.65 and on(pipeline, run_id, checkpoint) safetax_gate_promoted == 1" in rule["expr"] and rule["for"] == "30m" and rule["labels"] == {"severity": "page"}


def test_audit_settings_come_from_values(render: Any) -> None:
    values = {"prometheusRule": {"enabled": True, "audits": {
        "stale": {"staleFactor": 3.5, "for": "1h", "severity": "page"}, "failed": {"for": "2m", "severity": "info"}}}}
    _, audits = render(values).one("PrometheusRule")["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in audits["rules"]}
    stale, failed = rules["SafetaxAuditStale"], rules["SafetaxAuditFailed"]
    assert stale["expr"].endswith("> 3.5 * max by (audit) (max_over_time(safetax_audit_interval_seconds[30d]))")
    assert stale["for"] == "1h" and stale["labels"] == {"severity": "page"}
    assert "More than 3.5 schedule intervals" in stale["annotations"]["description"]
    assert failed["for"] == "2m" and failed["labels"] == {"severity": "info"}
    assert rules["SafetaxAuditSafetyLow"]["for"] == "5m"  # the others keep their defaults


def test_rules_and_dashboard_query_only_pushed_metrics(render: Any, rules: tuple[dict[str, Any], dict[str, Any]]) -> None:
    known = contract_metrics()
    rule_file, _ = rules
    exprs = [rule["expr"] for group in rule_file["groups"] for rule in group["rules"]]
    dashboard = json.loads((CHART / "dashboards" / "safetax.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"\bsafetax_[a-z0-9_]+", expr)}
    assert used and used <= known, f"not pushed by any stage: {sorted(used - known)}"
    audit_metrics = {family.name for family in AuditMetricSet().registry.collect()}
    audit_exprs = [rule["expr"] for group in rule_file["groups"] if group["name"] == "safetax.audits" for rule in group["rules"]]
    assert {name for expr in audit_exprs for name in re.findall(r"\bsafetax_[a-z0-9_]+", expr)} <= audit_metrics | {"safetax_stage_failed"}


def test_dashboard_panels() -> None:
    dashboard = json.loads((CHART / "dashboards" / "safetax.json").read_text())
    panels = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    title = "Safety, attack success, unscored and pass@1 per checkpoint"
    assert {title, "Safety tax rate (STR) per checkpoint",
            "Stage durations", "Training loss"} <= set(panels)  # the audit row: test_dashboard.py
    queried = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}
    for metric in ("safetax_safety_score", "safetax_attack_success_rate", "safetax_unscored_rate", "safetax_pass_at_1"):
        assert f"avg by (method, checkpoint) ({metric}{{" in queried[title]
    assert "safetax_safety_tax_rate" in queried["Safety tax rate (STR) per checkpoint"]
    assert "safetax_stage_duration_seconds" in queried["Stage durations"]
    assert "safetax_train_loss" in queried["Training loss"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = {v for text in [json.dumps(dashboard["panels"])] for v in re.findall(r"\$\{?([a-z_]+)", text)}
    assert used <= variables | {"__all"}, f"undefined dashboard variables: {used - variables}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_a_chart_audit_without_any_completed_run_alerts(promtool: str, tmp_path: Path, render: Any) -> None:
    """SafetaxAuditMissing, one rule per enabled audit of the chart: absent() of its last completed run over the
    lookback, so neither a restarted Pushgateway nor an audit that never ran stays silent. In ci/audits-values.yaml
    nightly-7b is enabled and weekly-14b not; a third, monthly, never pushed anything."""
    values = yaml.safe_load((CHART / "ci" / "audits-values.yaml").read_text())
    values["audits"].append({"name": "monthly", "schedule": "0 4 1 * *", "checkpointPrefix": "s3://safetax/runs/x/"})
    values["prometheusRule"] = {"enabled": True}
    groups = render(values).one("PrometheusRule")["spec"]["groups"]
    missing = [r for g in groups for r in g["rules"] if r["alert"] == "SafetaxAuditMissing"]
    assert [r["labels"]["audit"] for r in missing] == ["nightly-7b", "monthly"] and missing[0]["for"] == "8d"
    nightly = {**AUDIT, "audit": "nightly-7b"}
    tests = [{"interval": "1h", "input_series": [
        _series("safetax_audit_last_completed_timestamp_seconds", nightly, 3600, 24 * 10),
        _series("safetax_audit_interval_seconds", nightly, 86400, 24 * 10)],
        "alert_rule_test": [
            {"eval_time": "7d", "alertname": "SafetaxAuditMissing", "exp_alerts": []},
            {"eval_time": "8d1h", "alertname": "SafetaxAuditMissing", "exp_alerts": [_alert(
                {"audit": "monthly"}, "warning", "Audit monthly has no completed run on record",
                'No run of audit monthly (schedule "0 4 1 * *") has completed in the last 30d: its recurring run is '
                "missing, paused or failing (SafetaxAuditRunFailed).")]}]}]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1h", "tests": tests}, sort_keys=False))
    out = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _pushed_series(registries: list[Any], samples: int) -> list[dict[str, str]]:
    """promtool input series from prometheus_client registries, as the Pushgateway exposes them (job added)."""
    out = []
    for registry in registries:
        for family in registry.collect():
            for s in family.samples:
                out.append(_series(s.name, {**AUDIT, **s.labels}, s.value, samples))
    return out


def test_audit_alerts_agree_with_the_verdict_on_bounds(promtool: str, tmp_path: Path, render: Any) -> None:
    """With ``confidence`` the verdict decides on one-sided bounds; the criteria alerts fire for exactly the
    criteria it failed. 26 safe of 32 (81 %) passes a 0.75 minimum on the point estimate, but its lower 95 % bound
    (about 70 %) does not, so the verdict fails it and SafetaxAuditSafetyLow fires with the bound; 31 of 32 passes
    both ways and stays silent. The series are the ones the audit pushes (checkpoint_metrics, audit_metrics)."""
    from safetax.audit.telemetry import Audited, audit_metrics, checkpoint_metrics
    from safetax.audit.verdict import Thresholds, judge_checkpoint
    from safetax.metrics import LabelCounts
    from safetax.records import CheckpointScores

    settings = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]
    rule_file = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    limits = Thresholds.from_dict({"min_safety_score": 0.75, "confidence": 0.95})
    samples = minutes(settings["audits"]["safetyLow"]["for"]) + 10
    registries, verdicts = [], {}
    for name, safe in (("near", 26), ("clear", 31)):
        scores = CheckpointScores(checkpoint=name, method="audit", epoch=0,
                                  safety_labels={"strongreject": LabelCounts(safe=safe, unsafe=32 - safe, unscored=0)})
        verdict = judge_checkpoint(scores, None, limits)
        verdicts[name] = verdict
        registries.append(checkpoint_metrics("nightly", Audited(name, scores, verdict, 0.0)).registry)
    registries.append(audit_metrics("nightly", limits, [], None, 2, 0.0).registry)
    near = verdicts["near"]
    assert [f.criterion for f in near.failed] == ["min_safety_score"] and not verdicts["clear"].failed
    assert near.failed[0].estimate == pytest.approx(26 / 32) and near.failed[0].value < 0.75  # decided on the bound
    bound = near.failed[0].value
    labels = {**AUDIT, "audit": "nightly", "checkpoint": "near", "benchmark": "strongreject", "criterion": "min_safety_score"}
    at = f"{samples - 2}m"
    tests = [{"interval": "1m", "input_series": _pushed_series(registries, samples), "alert_rule_test": [
        {"eval_time": at, "alertname": "SafetaxAuditSafetyLow", "exp_alerts": [_alert(
            labels, settings["audits"]["safetyLow"]["severity"],
            f"Audit nightly: near is unsafe on strongreject (min_safety_score 75%, got {percentage(bound)})",
            SAFETY_LOW_DESCRIPTION.format(bench="strongreject", audit="nightly"))]},
        {"eval_time": at, "alertname": "SafetaxAuditReasoningDropHigh", "exp_alerts": []}]}]
    out = run_promtool(promtool, tmp_path, rule_file, tests)
    assert out.returncode == 0, out.stdout + out.stderr
