"""Giving up after repeated failures: a claim still held when a run ends (the exit handler) or released without a
record (a failed finish) counts one failed attempt in the ledger, once per run; at ``max_attempts`` later runs skip
the checkpoint and say so in their report and metrics (a real Pushgateway); its record, or an operator deleting the
attempts object, lets it be audited again. On a local store and against SeaweedFS (conditional writes)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from safetax.audit.ledger import Ledger
from safetax.config import ConfigError
from safetax.stages import audit as stage
from safetax.store import publish
from safetax.store.objects import delete, list_keys, read_text

from tests.audit.conftest import PROFILE, finish_targets


def checkpoints(root: str, tmp_path: Path, names: list[str]) -> str:
    prefix = f"{root}/promoted"
    for name in names:
        src = tmp_path / "src" / name
        src.mkdir(parents=True, exist_ok=True)
        (src / "config.json").write_text(json.dumps({"name": name}))
        (src / "model.safetensors").write_text(name)
        publish(src, f"{prefix}/{name}")
    return prefix


def config(store: str, prefix: str, **kw: object) -> stage.AuditConfig:
    d = {"audit_name": "nightly", "store_uri": store, "checkpoint_prefix": prefix, "profile": "custom",
         "custom_profile": PROFILE, "thresholds": {"min_safety_score": 0.8}, "max_attempts": 2}
    return stage.AuditConfig.from_dict(d | kw)


finish = finish_targets


def failed_run(cfg: stage.AuditConfig, tmp_path: Path, run_id: str) -> list[str]:
    """A run whose evaluation fails after its plan: the exit handler releases its claims."""
    names = [t["name"] for t in stage.plan(cfg, tmp_path / f"plan-{run_id}", run_id=run_id)["targets"]]
    assert stage.release_run_claims(cfg.store_uri, cfg.audit_name, run_id) == len(names)
    return names


def test_a_checkpoint_is_given_up_after_max_attempts_failed_runs(store: str, tmp_path: Path) -> None:
    cfg = config(store, checkpoints(store, tmp_path, ["ckpt-a", "ckpt-b"]))
    ledger = Ledger(store, "nightly")
    assert failed_run(cfg, tmp_path, "run-1") == ["ckpt-a", "ckpt-b"]
    assert stage.release_run_claims(store, "nightly", "run-1") == 0  # a retried exit handler counts nothing twice
    [a, b] = sorted(ledger.attempts().values(), key=lambda e: e["checkpoint"])
    assert (a["checkpoint"], a["count"], a["last_run_id"]) == ("ckpt-a", 1, "run-1") and b["count"] == 1

    # run-2 audits ckpt-b, then fails on ckpt-a (its finish releases a claim without a record)
    delete(ledger.attempts_uri(b["digest"]))  # ckpt-b: counted once above, tested below
    plan_dir = tmp_path / "plan-run-2"
    assert [t["name"] for t in stage.plan(cfg, plan_dir, run_id="run-2")["targets"]] == ["ckpt-a", "ckpt-b"]
    with pytest.raises(ValueError, match=r"no scores for \['ckpt-a', 'ckpt-b'\]"):
        stage.finish(plan_dir, [], tmp_path / "out-2", "run-2", gateway="")
    assert {e["checkpoint"]: e["count"] for e in ledger.attempts().values()} == {"ckpt-a": 2, "ckpt-b": 1}
    assert list_keys(f"{ledger.root}/claims") == []  # finish released them: the exit handler finds none
    assert stage.release_run_claims(store, "nightly", "run-2") == 0

    planned = stage.plan(cfg, tmp_path / "plan-3", run_id="run-3")  # ckpt-a reached max_attempts (2): given up
    assert [t["name"] for t in planned["targets"]] == ["ckpt-b"]
    [given] = planned["given_up"]
    assert (given["name"], given["count"], given["last_run_id"]) == ("ckpt-a", 2, "run-2")
    assert finish(tmp_path, tmp_path / "plan-3", "run-3") == ["ckpt-b"]
    assert {e["checkpoint"] for e in ledger.attempts().values()} == {"ckpt-a"}  # ckpt-b's record removed its attempts
    report = read_text(f"{ledger.root}/runs/run-3/report.md") or ""
    assert "1 checkpoint(s) given up after 2 failed run(s), not audited until their `attempts/<digest>.json` is " \
           "deleted: `ckpt-a` (2 failed, last run run-2, digest " in report

    planned = stage.plan(cfg, tmp_path / "plan-4", run_id="run-4")
    assert planned["targets"] == [] and [g["name"] for g in planned["given_up"]] == ["ckpt-a"]
    assert "`ckpt-a` (2 failed" in stage.idle(tmp_path / "plan-4", tmp_path / "out-4", "run-4", gateway="")

    delete(ledger.attempts_uri(given["digest"]))  # the operator's retry, as docs/audits.md says
    assert [t["name"] for t in stage.plan(cfg, tmp_path / "plan-5", run_id="run-5")["targets"]] == ["ckpt-a"]
    assert finish(tmp_path, tmp_path / "plan-5", "run-5") == ["ckpt-a"]
    assert ledger.attempts() == {} and len(ledger.audited()) == 2


def test_a_raised_max_attempts_audits_a_given_up_checkpoint_again(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    cfg = config(store, checkpoints(store, tmp_path, ["ckpt-a"]), max_attempts=1)
    failed_run(cfg, tmp_path, "run-1")
    assert stage.plan(cfg, tmp_path / "plan-2", run_id="run-2")["targets"] == []
    again = config(store, cfg.checkpoint_prefix, max_attempts=2)
    assert [t["name"] for t in stage.plan(again, tmp_path / "plan-3", run_id="run-3")["targets"]] == ["ckpt-a"]


def test_a_given_up_baseline_defers_every_checkpoint(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    prefix = checkpoints(store, tmp_path, ["ckpt-a"])
    base = checkpoints(str(tmp_path / "models"), tmp_path, ["r1-base"]) + "/r1-base"
    cfg = config(store, prefix, baseline="r1-base", baseline_model=base, max_attempts=1)
    assert failed_run(cfg, tmp_path, "run-1") == ["baseline-r1-base", "ckpt-a"]
    planned = stage.plan(cfg, tmp_path / "plan-2", run_id="run-2")
    assert planned["targets"] == [] and [g["name"] for g in planned["given_up"]] == ["baseline-r1-base", "ckpt-a"]


def test_concurrent_failures_of_two_runs_both_count(store: str) -> None:
    ledger, digest = Ledger(store, "nightly"), "f" * 64
    for trial in range(3):
        barrier, counts = threading.Barrier(2), []

        def fail(run_id: str) -> None:
            barrier.wait()
            counts.append(ledger.record_failure(digest, "ckpt", run_id)["count"])

        threads = [threading.Thread(target=fail, args=(f"run-{trial}-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(counts) == [2 * trial + 1, 2 * trial + 2]  # conditional writes: no lost update
    assert ledger.record_failure(digest, "ckpt", "run-last")["count"] == 7
    assert ledger.record_failure(digest, "ckpt", "run-last")["count"] == 7  # the same run again: not counted twice


@pytest.mark.parametrize("value", [0, -1, True, "3", 2.5])
def test_max_attempts_is_validated(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match=r"`max_attempts` must be a whole number of failed runs >= 1 .*got"):
        config(str(tmp_path / "store"), str(tmp_path / "ckpts"), max_attempts=value)
    assert config(str(tmp_path / "store"), str(tmp_path / "ckpts"), max_attempts=3.0).max_attempts == 3  # KFP's 3.0


# -- the operator sees it: safetax_audit_failed_attempts and safetax_audit_max_attempts ------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    from safetax.testing.prometheus import pushgateway

    with pushgateway(tmp_path_factory.mktemp("attempts-gateway")) as url:
        yield url


def pushed(gateway: str, metric: str, audit: str) -> dict[str, float]:
    from safetax.testing.prometheus import scrape

    return {s.labels.get("checkpoint", ""): s.value for s in scrape(gateway, metric)
            if s.name == metric and s.labels.get("audit") == audit}


def test_failed_attempts_reach_the_pushgateway_and_go_with_the_record(tmp_path: Path, gateway: str) -> None:
    store = str(tmp_path / "store")
    cfg = config(store, checkpoints(store, tmp_path, ["ckpt-a"]), audit_name="given-up", max_attempts=2)
    failed_run(cfg, tmp_path, "run-1")
    failed_run(cfg, tmp_path, "run-2")
    assert stage.plan(cfg, tmp_path / "plan-3", run_id="run-3")["targets"] == []
    stage.idle(tmp_path / "plan-3", tmp_path / "out-3", "run-3", gateway=gateway)
    assert pushed(gateway, "safetax_audit_failed_attempts", "given-up") == {"ckpt-a": 2.0}
    assert pushed(gateway, "safetax_audit_max_attempts", "given-up") == {"": 2.0}

    ledger = Ledger(store, "given-up")
    [digest] = ledger.attempts()
    delete(ledger.attempts_uri(digest))
    stage.plan(cfg, tmp_path / "plan-4", run_id="run-4")
    assert finish(tmp_path, tmp_path / "plan-4", "run-4", gateway=gateway) == ["ckpt-a"]
    assert pushed(gateway, "safetax_audit_failed_attempts", "given-up") == {}  # the audit's group was replaced
