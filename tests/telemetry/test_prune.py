"""The Pushgateway's retention policy, against a real Pushgateway: old alignment groups go, audits stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from safetax.cli import main
from safetax.telemetry.prune import groups, parse_duration, prune
from safetax.testing.prometheus import pushgateway


def _push(gateway: str, **labels: str) -> None:
    registry = CollectorRegistry()
    Gauge("safetax_stage_duration_seconds", "d", registry=registry).set(1.0)
    push_to_gateway(gateway.removeprefix("http://"), job="safetax", registry=registry, grouping_key=labels)


def test_prune_deletes_old_alignment_groups_and_keeps_audits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pushgateway(tmp_path / "gw") as gateway:
        _push(gateway, pipeline="safetax-alignment", run_id="r1", stage="train", method="lora-r4")
        _push(gateway, pipeline="safetax-alignment", run_id="r1", stage="score", method="base")
        _push(gateway, pipeline="safetax-audit", audit="nightly", checkpoint="ckpt-a")
        assert prune(gateway, 3600.0) == []  # nothing is an hour old
        assert len(prune(gateway, 0.0, dry_run=True)) == 2 and len(groups(gateway)) == 3
        main(["metrics", "prune", "--pushgateway", gateway, "--older-than", "0s"])
        assert "deleted 2 group(s)" in capsys.readouterr().out
        left = [g.labels for g in groups(gateway)]
        assert left == [{"job": "safetax", "pipeline": "safetax-audit", "audit": "nightly", "checkpoint": "ckpt-a"}]


def test_durations() -> None:
    assert parse_duration("12h") == 43200.0
    with pytest.raises(ValueError, match="--older-than"):
        parse_duration("a week")
