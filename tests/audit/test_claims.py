"""Claims on checkpoints: two concurrent audits audit each checkpoint exactly once, and a crashed claimant
blocks nothing past its lease (issue 14, item 3). On a local store and against SeaweedFS (conditional PUTs)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from safetax.audit.ledger import Ledger
from safetax.stages import audit as stage
from safetax.store import StoreError, publish
from safetax.store.objects import create_text, delete, list_keys, read_text, read_versioned, replace_text

from tests.audit.conftest import PROFILE, finish_targets


def _checkpoints(root: str, tmp_path: Path, n: int) -> str:
    prefix = f"{root}/ckpts"
    for i in range(n):
        src = tmp_path / "src" / f"ckpt-{i}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "config.json").write_text(json.dumps({"i": i}))
        (src / "model.safetensors").write_bytes(b"w" * (i + 1))  # a full model: config.json and weights
        publish(src, f"{prefix}/ckpt-{i}")
    return prefix


def _config(root: str, prefix: str, **kw: object) -> stage.AuditConfig:
    d = {"audit_name": "nightly", "store_uri": root, "checkpoint_prefix": prefix, "profile": "custom",
         "custom_profile": PROFILE, "thresholds": {"min_safety_score": 0.8}}
    return stage.AuditConfig.from_dict(d | kw)


def test_conditional_writes(store: str) -> None:
    uri = f"{store}/claims/x.json"
    v1 = create_text(uri, "one")
    assert v1 is not None and create_text(uri, "two") is None  # create only if absent
    text, version = read_versioned(uri)  # type: ignore[misc]
    assert (text, version) == ("one", v1)
    assert replace_text(uri, "three", "not-the-version") is None  # replace only the version read
    v3 = replace_text(uri, "three", version)
    assert v3 is not None and v3 != v1 and read_text(uri) == "three"
    assert replace_text(uri, "four", version) is None  # the old version is gone
    delete(uri)
    assert read_versioned(uri) is None and replace_text(uri, "five", v3) is None
    assert create_text(uri, "six") is not None
    assert [k for k in list_keys(f"{store}/claims")] == ["x.json"]  # no probe, temp or lock file listed


def test_a_claim_is_held_until_released_or_expired(store: str) -> None:
    ledger, digest = Ledger(store, "nightly"), "d" * 64
    assert ledger.claim(digest, "run-a", "ckpt-0", lease_s=60, now=1000.0) is None
    assert ledger.claim(digest, "run-a", "ckpt-0", lease_s=60, now=1001.0) is None  # a retried plan of the same run
    held = ledger.claim(digest, "run-b", "ckpt-0", lease_s=60, now=1059.0)
    assert held is not None and held["owner"] == "run-a" and held["expires_at"] == 1060.0
    assert ledger.claim(digest, "run-b", "ckpt-0", lease_s=60, now=1061.0) is None  # run-a died: taken over
    ledger.release(digest, "run-a")  # a claimant whose claim was taken over removes nothing
    assert json.loads(read_text(ledger.claim_uri(digest)) or "{}")["owner"] == "run-b"
    ledger.release(digest, "run-b")
    assert read_text(ledger.claim_uri(digest)) is None
    assert ledger.claim(digest, "run-c", "ckpt-0", lease_s=60, now=1062.0) is None


def test_of_two_runs_taking_over_an_expired_claim_one_wins(store: str) -> None:
    ledger = Ledger(store, "nightly")
    for trial in range(5):
        digest = f"{trial:064d}"
        assert ledger.claim(digest, "crashed", "ckpt", lease_s=1, now=0.0) is None
        barrier, won = threading.Barrier(2), []

        def take(owner: str) -> None:
            barrier.wait()
            if ledger.claim(digest, owner, "ckpt", lease_s=60, now=10.0) is None:
                won.append(owner)

        threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(won) == 1, won
        assert json.loads(read_text(ledger.claim_uri(digest)) or "{}")["owner"] == won[0]


def test_two_concurrent_audits_audit_each_checkpoint_exactly_once(store: str, tmp_path: Path) -> None:
    prefix = _checkpoints(store, tmp_path, 8)
    cfg = _config(store, prefix)
    barrier, planned, errors = threading.Barrier(2), {}, []

    def audit(run_id: str) -> None:
        try:
            barrier.wait()
            plan_dir = tmp_path / f"plan-{run_id}"
            planned[run_id] = [t["name"] for t in stage.plan(cfg, plan_dir, run_id=run_id)["targets"]]
            finish_targets(tmp_path, plan_dir, run_id) if planned[run_id] else stage.idle(plan_dir, tmp_path / "out" / run_id,
                                                                                    run_id, gateway="")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=audit, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    a, b = planned["run-0"], planned["run-1"]
    assert not set(a) & set(b), (a, b)  # no checkpoint audited twice
    assert sorted(a + b) == [f"ckpt-{i}" for i in range(8)]  # and none left out
    ledger = Ledger(store, "nightly")
    records = [json.loads(read_text(ledger.record_uri(d)) or "{}") for d in sorted(ledger.audited())]
    assert len(records) == 8
    assert all(r["checkpoint"] in planned[r["run_id"]] for r in records)  # each written by the run that claimed it
    assert list_keys(f"{ledger.root}/claims") == []  # every claim released after its record
    assert stage.plan(cfg, tmp_path / "plan-3", run_id="run-3")["targets"] == []


def test_a_crashed_claimant_blocks_only_until_its_lease_expires(store: str, tmp_path: Path) -> None:
    prefix = _checkpoints(store, tmp_path, 2)
    stage.plan(_config(store, prefix, claim_lease_s=1.0), tmp_path / "plan-a", run_id="run-a")  # then run-a dies
    planned = stage.plan(_config(store, prefix), tmp_path / "plan-b", run_id="run-b")
    assert planned["targets"] == [] and [c["owner"] for c in planned["claimed_elsewhere"]] == ["run-a", "run-a"]
    report = stage.idle(tmp_path / "plan-b", tmp_path / "out-b", "run-b", gateway="")
    assert "2 checkpoint(s) claimed by another run, left to it: `ckpt-0` (run-a, until " in report
    time.sleep(1.1)
    planned = stage.plan(_config(store, prefix), tmp_path / "plan-c", run_id="run-c")
    assert [t["name"] for t in planned["targets"]] == ["ckpt-0", "ckpt-1"]
    assert finish_targets(tmp_path, tmp_path / "plan-c", "run-c") == ["ckpt-0", "ckpt-1"]


def test_a_failed_finish_frees_its_claims_for_the_next_run(store: str, tmp_path: Path) -> None:
    prefix = _checkpoints(store, tmp_path, 1)
    cfg = _config(store, prefix)
    stage.plan(cfg, tmp_path / "plan-a", run_id="run-a")
    with pytest.raises(ValueError, match="no scores"):
        stage.finish(tmp_path / "plan-a", [], tmp_path / "out-a", "run-a", gateway="")
    assert [t["name"] for t in stage.plan(cfg, tmp_path / "plan-b", run_id="run-b")["targets"]] == ["ckpt-0"]


def test_a_store_that_ignores_conditional_writes_is_refused(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetax.store.s3 as s3

    monkeypatch.setattr(s3, "_CONDITIONAL_OK", set())
    monkeypatch.setattr(s3.S3Store, "put_if", lambda self, uri, data, etag=None, content_type="": "etag")
    with pytest.raises(StoreError, match="does not honour conditional writes"):
        create_text(f"s3://safetax-audits/{uuid.uuid4().hex[:8]}/claims/x.json", "x")
