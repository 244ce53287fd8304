"""The chart values that docs/deploy.md shows render: every YAML block marked ``<!-- chart-values ... -->`` on the
line before its fence is checked by the values schema and rendered by real Helm, as `helm template` (no cluster)
would, so an example in the documentation cannot drift from the chart again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
MARKER = "<!-- chart-values"
# A marker line, then a ```yaml fence, its body, and the closing fence.
_BLOCK = re.compile(r"^<!-- chart-values[^\n]*-->\n```yaml\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def chart_value_blocks(text: str) -> list[dict[str, Any]]:
    """The marked YAML blocks of a Markdown text, parsed; a marker not followed by a YAML fence is an error."""
    blocks = [yaml.safe_load(body) for body in _BLOCK.findall(text)]
    assert len(blocks) == text.count(MARKER), f"a `{MARKER} -->` line must come right before a ```yaml fence"
    return blocks


BLOCKS = chart_value_blocks(DOC.read_text(encoding="utf-8"))


def test_the_doc_marks_its_chart_values() -> None:
    assert len(BLOCKS) >= 2
    assert any("audits" in block for block in BLOCKS)  # the first audit of "From helm install to a first audit"


@pytest.mark.parametrize("values", BLOCKS, ids=[",".join(block) for block in BLOCKS])
def test_each_values_block_of_the_doc_renders(chart: Any, render: Any, values: dict[str, Any]) -> None:
    chart.validate_schema(values)
    offline = values if "networkPolicy" in values else {**values, "networkPolicy": {"kubeAPIServer": {"cidrs": ["10.0.0.2/32"]}}}
    rendered = render(offline, cluster=False)
    assert rendered.objects
    if "audits" in values:
        runs = yaml.safe_load(rendered.one("ConfigMap", "schedules")["data"]["schedules.yaml"])["recurringRuns"]
        assert [run["name"] for run in runs] == [audit["name"] for audit in values["audits"]]


def test_a_block_that_breaks_the_chart_fails(helm_error: Any) -> None:
    """The check is real: the example as it was (`cron:`, no store, a drop threshold without a baseline) fails."""
    old = chart_value_blocks('<!-- chart-values -->\n```yaml\naudits:\n  - name: nightly-r1-7b\n    cron: "0 2 * * *"\n'
                             '    checkpointPrefix: s3://safetax/checkpoints/r1-7b/\n```\n')[0]
    assert "schedule" in helm_error(old)
    with_schedule = {"audits": [{"name": "nightly-r1-7b", "schedule": "0 2 * * *", "checkpointPrefix": "s3://safetax/c/",
                                 "thresholds": {"max_reasoning_drop": 0.05}}], "auditDefaults": {"storeUri": "s3://safetax/runs"}}
    assert "audits[0].baseline is empty" in helm_error(with_schedule)
