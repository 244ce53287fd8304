"""The Pushgateway's retention policy, against a real Pushgateway: old per-run groups go, audit verdicts stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from safetax.cli import main
from safetax.telemetry.prune import clear_earlier_audit_runs, groups, parse_duration, prune
from safetax.testing.prometheus import pushgateway


def _push(gateway: str, **labels: str) -> None:
    registry = CollectorRegistry()
    Gauge("safetax_stage_duration_seconds", "d", registry=registry).set(1.0)
    push_to_gateway(gateway.removeprefix("http://"), job="safetax", registry=registry, grouping_key=labels)


def test_prune_deletes_old_alignment_groups_and_keeps_audits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pushgateway(tmp_path / "gw") as gateway:
        _push(gateway, pipeline="safetax-alignment", run_id="r1", stage="train", method="lora-r4")
        _push(gateway, pipeline="safetax-alignment", run_id="r1", stage="score", method="base")
        _push(gateway, pipeline="safetax-audit", audit="nightly", checkpoint="ckpt-a")  # a verdict group: no run_id
        _push(gateway, pipeline="safetax-audit", run_id="a1", stage="generate", method="ckpt-a", audit="nightly")
        assert prune(gateway, 3600.0) == []  # nothing is an hour old
        assert len(prune(gateway, 0.0, dry_run=True)) == 3 and len(groups(gateway)) == 4
        main(["metrics", "prune", "--pushgateway", gateway, "--older-than", "0s"])
        assert "deleted 3 group(s)" in capsys.readouterr().out
        left = [g.labels for g in groups(gateway)]
        assert left == [{"job": "safetax", "pipeline": "safetax-audit", "audit": "nightly", "checkpoint": "ckpt-a"}]


def test_a_finished_audit_run_clears_its_earlier_runs_groups(tmp_path: Path) -> None:
    import time

    with pushgateway(tmp_path / "gw") as gateway:
        _push(gateway, pipeline="safetax-audit", run_id="a1", stage="generate", method="ckpt-a", audit="nightly")  # failed
        _push(gateway, pipeline="safetax-audit", run_id="b1", stage="generate", method="ckpt-b", audit="weekly")
        _push(gateway, pipeline="safetax-audit", audit="nightly", checkpoint="ckpt-a")
        time.sleep(1.1)  # push times have a resolution of one second or so
        started = time.time()
        _push(gateway, pipeline="safetax-audit", run_id="a2", stage="generate", method="ckpt-a", audit="nightly")
        _push(gateway, pipeline="safetax-audit", run_id="a3", stage="generate", method="ckpt-c", audit="nightly")  # beside a2
        gone = clear_earlier_audit_runs(gateway, "nightly", "a2", started)
        assert [g["run_id"] for g in gone] == ["a1"]
        assert sorted(g.labels.get("run_id", "-") for g in groups(gateway)) == ["-", "a2", "a3", "b1"]


def test_an_unreachable_gateway_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "prune", "--pushgateway", f"http://user:secret@127.0.0.1:{port}", "--older-than", "1d"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "cannot be reached" in err and "secret" not in err and "Traceback" not in err


def test_durations() -> None:
    assert parse_duration("12h") == 43200.0
    with pytest.raises(ValueError, match="--older-than"):
        parse_duration("a week")
