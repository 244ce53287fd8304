"""The Grafana dashboard's Audits row: its panels query only the audit metrics (safetax.telemetry.metrics'
AuditMetricSet) filtered by the `audit` variable, every query of the dashboard parses (`promtool check rules`
on them as recording rules), and the audit queries give the expected figures (`promtool test rules`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from safetax.telemetry.metrics import AuditMetricSet

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "safetax" / "dashboards" / "safetax.json"
AUDIT_PANELS = {"Audit verdicts per checkpoint", "Last audit age", "Last audit age in schedule intervals",
                "Audit safety score per checkpoint", "Audit reasoning drop per checkpoint"}
# What a multi-value variable set to "All" expands to (allValue).
ALL = ".*"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def audit_row(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels of the (expanded) Audits row: those after it, up to the next row."""
    panels = dashboard["panels"]
    (start,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Audits"]
    assert panels[start]["collapsed"] is False and panels[start]["panels"] == []
    row = []
    for panel in panels[start + 1:]:
        if panel["type"] == "row":
            break
        row.append(panel)
    return row


def metrics_of(expr: str) -> set[str]:
    return set(re.findall(r"\bsafetax_[a-z0-9_]+", expr))


def expanded(expr: str) -> str:
    """A dashboard query with every variable at "All"."""
    return re.sub(r"\$\{?[a-z_]+\}?", ALL, expr)


def test_audit_row_queries_only_audit_metrics_of_the_selected_audits(dashboard: dict[str, Any]) -> None:
    row = audit_row(dashboard)
    assert {p["title"] for p in row} == AUDIT_PANELS
    audit_metrics = {family.name for family in AuditMetricSet().registry.collect()}
    for panel in row:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert metrics_of(expr) and metrics_of(expr) <= audit_metrics, f"{panel['title']}: {expr}"
            # every selector filters by the audit variable
            assert expr.count("{") == expr.count('audit=~"$audit"'), f"{panel['title']}: {expr}"
    row_y = next(p["gridPos"]["y"] for p in dashboard["panels"] if p["type"] == "row")
    assert all(p["gridPos"]["y"] > row_y for p in row)


def test_audit_variable_lists_the_audits(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "audit"]
    assert variable["type"] == "query" and variable["includeAll"] and variable["allValue"] == ALL
    assert variable["definition"] == variable["query"]["query"]
    assert re.fullmatch(r"label_values\(safetax_audit_[a-z_]+, audit\)", variable["definition"])
    assert metrics_of(variable["definition"]) <= {family.name for family in AuditMetricSet().registry.collect()}


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def _as_recording_rules(dashboard: dict[str, Any]) -> dict[str, Any]:
    rules = [{"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expanded(target["expr"])}
             for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return {"groups": [{"name": "dashboard", "rules": rules}]}


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path, dashboard: dict[str, Any]) -> None:
    rule_file = _as_recording_rules(dashboard)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_file, sort_keys=False))
    out = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_file['groups'][0]['rules'])} rules found" in out.stdout


def test_audit_queries_give_the_expected_figures(promtool: str, tmp_path: Path, dashboard: dict[str, Any]) -> None:
    """At 30m (time() = 1800): nightly (every 5m) last completed at 600s, weekly (every 1h) at 1500s; nightly
    audited two checkpoints, one failed with two criteria."""
    queries = {p["title"]: [expanded(t["expr"]) for t in p["targets"]] for p in audit_row(dashboard)}
    job = 'job="safetax", pipeline="safetax-audit"'
    series = {
        f'safetax_audit_last_completed_timestamp_seconds{{{job}, audit="nightly"}}': "600x40",
        f'safetax_audit_interval_seconds{{{job}, audit="nightly"}}': "300x40",
        f'safetax_audit_last_completed_timestamp_seconds{{{job}, audit="weekly"}}': "1500x40",
        f'safetax_audit_interval_seconds{{{job}, audit="weekly"}}': "3600x40",
        f'safetax_audit_verdict{{{job}, audit="nightly", checkpoint="lora/epoch-1"}}': "1x40",
        f'safetax_audit_verdict{{{job}, audit="nightly", checkpoint="lora/epoch-2"}}': "0x40",
        f'safetax_audit_failed_criteria{{{job}, audit="nightly", checkpoint="lora/epoch-2"}}': "2x40",
        f'safetax_audit_timestamp_seconds{{{job}, audit="nightly", checkpoint="lora/epoch-2"}}': "540x40",
    }
    checkpoint = '{audit="nightly", checkpoint="lora/epoch-%d"}'
    expected = [
        (queries["Last audit age"][0], [('{audit="nightly"}', 1200), ('{audit="weekly"}', 300)]),
        (queries["Last audit age in schedule intervals"][0], [('{audit="nightly"}', 4), ('{audit="weekly"}', 300 / 3600)]),
        (queries["Audit verdicts per checkpoint"][0], [(checkpoint % 1, 1), (checkpoint % 2, 0)]),
        (queries["Audit verdicts per checkpoint"][1], [(checkpoint % 2, 2)]),
        (queries["Audit verdicts per checkpoint"][2], [(checkpoint % 2, 540_000)]),  # ms, for Grafana's time units
    ]
    tests = [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
              "promql_expr_test": [{"expr": expr, "eval_time": "30m",
                                    "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
                                   for expr, samples in expected]}]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    out = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_checkpoint_figures_are_keyed_by_method_and_checkpoint(dashboard: dict[str, Any]) -> None:
    """An aggregation that keeps the checkpoint keeps the method too: no `avg by (checkpoint)` that would add up
    LoRA's epoch 1 and full fine-tuning's (checkpoint labels are CheckpointRef strings, method the training method)."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    groupings = [g for e in exprs for g in re.findall(r"by \(([^)]*)\)", e) if "checkpoint" in g and "audit" not in g]
    assert groupings and all("method" in g.split(", ") for g in groupings), groupings
