"""SafetaxAuditCheckpointGivenUp, in the chart and in k8s/: `promtool test rules` on the series the audit pushes
(safetax.audit.telemetry.audit_metrics: each checkpoint's failed attempts and the audit's max_attempts) fires for a
checkpoint at its audit's max_attempts, and not for one below it or for another audit with a higher maximum."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.audit.telemetry import audit_metrics
from safetax.audit.verdict import Thresholds

SAMPLES = 10
DESCRIPTION = ("Every run of audit {audit} that evaluated {ckpt} failed (see SafetaxAuditRunFailed and the runs' logs), "
               "so later runs skip it. Fix the cause, then delete attempts/<digest>.json under the audit's ledger "
               "(<store_uri>/audits/{audit}/; the run report names the digest) to audit it again.")


@pytest.fixture(params=["chart", "k8s"])
def rule_file(request: pytest.FixtureRequest, render: Any) -> dict[str, Any]:
    if request.param == "k8s":
        (doc,) = [d for d in request.getfixturevalue("kustomized") if d["kind"] == "PrometheusRule"]
    else:
        doc = render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")
    return {"groups": doc["spec"]["groups"]}


def pushed_series() -> list[dict[str, str]]:
    """The audit groups of two audits as the Pushgateway exposes them: nightly gives up at 3 failed runs (ckpt-a has
    3, ckpt-b 2), weekly at 5 (ckpt-c has 3)."""
    none = Thresholds.from_dict({})
    registries = [audit_metrics("nightly", none, [], None, 0, 0.0, {"ckpt-a": 3, "ckpt-b": 2}, 3).registry,
                  audit_metrics("weekly", none, [], None, 0, 0.0, {"ckpt-c": 3}, 5).registry]
    series = []
    for registry in registries:
        for family in registry.collect():
            for s in family.samples:
                labels = {"job": "safetax", "pipeline": "safetax-audit", **s.labels}
                body = ",".join(f'{k}="{v}"' for k, v in labels.items())
                series.append({"series": f"{s.name}{{{body}}}", "values": f"{s.value}x{SAMPLES}"})
    return series


def given_up(audit: str, ckpt: str, count: int) -> dict[str, Any]:
    return {"exp_labels": {"job": "safetax", "pipeline": "safetax-audit", "audit": audit, "checkpoint": ckpt,
                           "severity": "warning"},
            "exp_annotations": {"summary": f"Audit {audit} gave up on checkpoint {ckpt} after {count} failed runs",
                                "description": DESCRIPTION.format(audit=audit, ckpt=ckpt)}}


def run_promtool(promtool: str, tmp_path: Path, rule_file: dict[str, Any], alerts: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    tests = [{"interval": "1m", "input_series": pushed_series(),
              "alert_rule_test": [{"eval_time": "5m", "alertname": "SafetaxAuditCheckpointGivenUp", "exp_alerts": alerts}]}]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_file, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_a_checkpoint_at_max_attempts_alerts(promtool: str, tmp_path: Path, rule_file: dict[str, Any]) -> None:
    out = run_promtool(promtool, tmp_path, rule_file, [given_up("nightly", "ckpt-a", 3)])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("audit", "ckpt", "count"), [("nightly", "ckpt-b", 2), ("weekly", "ckpt-c", 3)])
def test_a_checkpoint_below_its_audits_maximum_does_not(promtool: str, tmp_path: Path, render: Any, audit: str,
                                                        ckpt: str, count: int) -> None:
    """The harness can fail: ckpt-b is one failure short of nightly's 3, and ckpt-c's 3 is weekly's, not nightly's."""
    rules = {"groups": render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")["spec"]["groups"]}
    out = run_promtool(promtool, tmp_path, rules, [given_up("nightly", "ckpt-a", 3), given_up(audit, ckpt, count)])
    assert out.returncode != 0 and "SafetaxAuditCheckpointGivenUp" in out.stdout + out.stderr
