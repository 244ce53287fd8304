"""The alerts, in the chart (defaults and ci/monitoring-values.yaml) and in k8s/: `promtool check rules`
accepts the rule groups, and `promtool test rules` shows each alert firing exactly when it should, with the
thresholds and `for:` durations that the values set. Every metric the rules and the dashboard query is one
the stages push (safetax.telemetry.metrics)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.telemetry.metrics import MetricSet

CHART = Path(__file__).resolve().parents[2] / "helm" / "safetax"
SOURCES = ("chart-defaults", "chart-monitoring-values", "k8s")
# The labels the stages push (safetax.telemetry.metrics); Prometheus keeps job with honorLabels.
RUN = {"job": "safetax", "pipeline": "safetax-alignment", "run_id": "run-1", "model": "R1-Distill-Qwen-7B"}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def contract_metrics() -> set[str]:
    return {family.name for family in MetricSet().registry.collect()}


def minutes(duration: str) -> int:
    """A Prometheus duration ("1h30m", "0m") in whole minutes."""
    return int(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(duration)) // 60)


def percentage(value: float) -> str:
    """Prometheus' humanizePercentage: %.4g of value * 100."""
    return f"{value * 100:.4g}%"


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
    settings = {**defaults, **values["prometheusRule"]}
    doc = render(values).one("PrometheusRule")
    return {"groups": doc["spec"]["groups"]}, settings


def _series(metric: str, labels: dict[str, str], value: float, samples: int) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{body}}}", "values": f"{round(value, 6)}x{samples}"}


def _alert(labels: dict[str, str], severity: str, summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": {**labels, "severity": severity}, "exp_annotations": {"summary": summary, "description": description}}


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
    series = [
        _series("safetax_safety_score", low, low_score, samples),  # under the threshold: fires
        _series("safetax_safety_score", high, safety["threshold"] + 0.05, samples),  # above: silent
        _series("safetax_safety_score", base, 0.0, samples),  # the base model is exempt
        _series("safetax_reasoning_drop", big, big_drop, samples),  # over the threshold: fires
        _series("safetax_reasoning_drop", small, drop["threshold"] - 0.02, samples),
        _series("safetax_stage_failed", train, 1, samples),  # a failed stage fires
        _series("safetax_stage_failed", generate, 0, samples),
    ]
    run = "Run run-1 of R1-Distill-Qwen-7B (lora)"
    checks = [
        {"eval_time": f"{at}m", "alertname": "SafetaxSafetyScoreLow", "exp_alerts": [_alert(
            low, safety["severity"],
            f"Safety score of lora/epoch-1 on strongreject is {percentage(low_score)} (threshold {safety['threshold']})",
            f"{run}: the checkpoint answers too few harmful prompts safely.")]},
        {"eval_time": f"{at}m", "alertname": "SafetaxReasoningDropHigh", "exp_alerts": [_alert(
            big, drop["severity"],
            f"Reasoning (pass@1) of lora/epoch-1 dropped by {percentage(big_drop)} against the base model (threshold {drop['threshold']})",
            f"{run} pays a high safety tax.")]},
        {"eval_time": f"{at}m", "alertname": "SafetaxStageFailed", "exp_alerts": [_alert(
            train, failed["severity"], "Stage train of run run-1 failed",
            "safetax-alignment run run-1 (R1-Distill-Qwen-7B, lora): see the run in the KFP UI. "
            "The Pushgateway keeps the series until its group is deleted.")]},
    ]
    for name, alert in (("SafetaxSafetyScoreLow", safety), ("SafetaxReasoningDropHigh", drop), ("SafetaxStageFailed", failed)):
        if minutes(alert["for"]) >= 2:  # still pending one minute before `for:` has passed
            checks.append({"eval_time": f"{minutes(alert['for']) - 1}m", "alertname": name, "exp_alerts": []})
    return [{"interval": "1m", "input_series": series, "alert_rule_test": checks}]


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
    assert "SUCCESS: 3 rules found" in out.stdout


def test_alerts_fire_exactly_when_they_should(promtool: str, tmp_path: Path, rules: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rule_file, settings = rules
    out = run_promtool(promtool, tmp_path, rule_file, unit_tests(settings))
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path, render: Any) -> None:
    """The harness can fail: a safety score above the threshold is expected to alert, and promtool says no."""
    rule_file = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    tests = unit_tests(yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"])
    first = tests[0]["alert_rule_test"][0]
    first["exp_alerts"][0]["exp_labels"]["checkpoint"] = "lora/epoch-2"  # the series at threshold + 0.05
    out = run_promtool(promtool, tmp_path, rule_file, tests)
    assert out.returncode != 0 and "SafetaxSafetyScoreLow" in out.stdout + out.stderr


def test_thresholds_come_from_values(render: Any) -> None:
    values = {"prometheusRule": {"enabled": True, "safetyScore": {"threshold": 0.65, "for": "30m", "severity": "page"}}}
    (group,) = render(values).one("PrometheusRule")["spec"]["groups"]
    rule = next(r for r in group["rules"] if r["alert"] == "SafetaxSafetyScoreLow")
    assert rule["expr"].endswith("< 0.65") and rule["for"] == "30m" and rule["labels"] == {"severity": "page"}


def test_rules_and_dashboard_query_only_pushed_metrics(render: Any, rules: tuple[dict[str, Any], dict[str, Any]]) -> None:
    known = contract_metrics()
    rule_file, _ = rules
    exprs = [rule["expr"] for group in rule_file["groups"] for rule in group["rules"]]
    dashboard = json.loads((CHART / "dashboards" / "safetax.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"\bsafetax_[a-z0-9_]+", expr)}
    assert used and used <= known, f"not pushed by any stage: {sorted(used - known)}"


def test_dashboard_panels() -> None:
    dashboard = json.loads((CHART / "dashboards" / "safetax.json").read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    assert set(panels) == {"Safety score vs pass@1 per checkpoint", "Safety tax rate (STR) per checkpoint",
                           "Stage durations", "Training loss"}
    queried = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}
    assert "safetax_safety_score" in queried["Safety score vs pass@1 per checkpoint"]
    assert "safetax_pass_at_1" in queried["Safety score vs pass@1 per checkpoint"]
    assert "safetax_safety_tax_rate" in queried["Safety tax rate (STR) per checkpoint"]
    assert "safetax_stage_duration_seconds" in queried["Stage durations"]
    assert "safetax_train_loss" in queried["Training loss"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = {v for text in [json.dumps(dashboard["panels"])] for v in re.findall(r"\$\{?([a-z_]+)", text)}
    assert used <= variables | {"__all"}, f"undefined dashboard variables: {used - variables}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
