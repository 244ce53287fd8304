"""The audit pipeline through KFP's local runner on the demo model, against a real S3 server (SeaweedFS),
Pushgateway and Prometheus: each complete checkpoint under the prefix is audited once (slow; runs in CI)."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from safetax.cli import main
from safetax.demo import build_demo
from safetax.runner import run_local
from safetax.store import publish

pytestmark = pytest.mark.e2e
BUCKET = "audit-e2e"


def _stale_expr() -> str:
    """The SafetaxAuditStale alert's expression, as the kustomize base ships it."""
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "k8s" / "base" / "prometheusrule.yaml").read_text())
    rules = [r for g in doc["spec"]["groups"] for r in g["rules"] if r.get("alert") == "SafetaxAuditStale"]
    return rules[0]["expr"]


def test_audit_pipeline_audits_each_new_checkpoint_once(tmp_path: Path, s3_env, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from safetax.store.s3 import S3Store
    from safetax.testing.prometheus import prometheus, pushgateway, query

    assets = build_demo()
    store = S3Store()
    publish(assets.model_dir, f"s3://{BUCKET}/checkpoints/ckpt-a")
    store.client.put_object(BUCKET, "checkpoints/ckpt-b/u1/config.json", io.BytesIO(b"{}"), 2)  # no manifest: incomplete
    params = {
        "audit_name": "e2e", "store_uri": f"s3://{BUCKET}/safety", "checkpoint_prefix": f"s3://{BUCKET}/checkpoints",
        "profile": "custom", "judge_name": "refusal", "audit_schedule": "* * * * *",
        "custom_profile": {"eval_sets": [{"name": "demo-harmful", "kind": "safety", "uri": str(assets.safety_eval_path), "limit": 8},
                                         {"name": "demo-arith", "kind": "reasoning", "uri": str(assets.reasoning_eval_path), "limit": 8}],
                           "safety_max_new_tokens": 48, "reasoning_max_new_tokens": 48, "reasoning_temperature": 0},
        "thresholds": {"min_safety_score": 0.5},
    }

    def ledger() -> dict[str, dict]:
        keys = [o.object_name for o in store.client.list_objects(BUCKET, prefix="safety/audits/e2e/ledger/", recursive=True)]
        return {json.loads(store.client.get_object(BUCKET, k).read())["checkpoint"]: {"key": k} for k in keys}

    def run_reports() -> list[str]:
        keys = [o.object_name for o in store.client.list_objects(BUCKET, prefix="safety/audits/e2e/runs/", recursive=True)]
        return [store.client.get_object(BUCKET, k).read().decode() for k in keys]

    with pushgateway(tmp_path / "pushgateway") as gateway, prometheus(tmp_path / "prometheus", [gateway]) as prom:
        monkeypatch.setenv("SAFETAX_PUSHGATEWAY", gateway)
        run_local("audit", params, tmp_path / "runs")
        assert set(ledger()) == {"ckpt-a"}  # the checkpoint without a manifest is not audited
        [report] = run_reports()
        assert "Audited 1 checkpoint(s): 0 pass, 1 fail; 0 already audited, 1 incomplete" in report
        verdict = query(prom, 'safetax_audit_verdict{audit="e2e"}', timeout=60)
        assert [(r["metric"]["checkpoint"], r["value"][1]) for r in verdict] == [("ckpt-a", "0")]  # the demo model is unsafe
        assert query(prom, 'safetax_audit_safety_score{audit="e2e",checkpoint="ckpt-a",benchmark="demo-harmful"}', timeout=30)

        # Another audit of the same checkpoint under the same profile: every generation and verdict comes from the
        # cache the first audit filled (<store>/cache), through the runner's tasks.
        run_local("audit", {**params, "audit_name": "e2e-cached"}, tmp_path / "runs")
        [key] = [o.object_name for o in store.client.list_objects(BUCKET, prefix="safety/audits/e2e-cached/ledger/", recursive=True)]
        cached = json.loads(store.client.get_object(BUCKET, key).read())["scores"]
        assert (cached["cost"]["generate"]["generated"], cached["cost"]["generate"]["cached"]) == (0, 16)
        assert cached["cost"]["judge"]["generated"] == 0 and cached["cost"]["judge"]["cached"] > 0
        first = json.loads(store.client.get_object(BUCKET, ledger()["ckpt-a"]["key"]).read())["scores"]
        assert {k: v for k, v in cached.items() if k != "cost"} == {k: v for k, v in first.items() if k != "cost"}

        (tmp_path / "audit.json").write_text(json.dumps(params))  # nothing new, run as a user would: the CLI
        main(["run", "--pipeline", "audit", "--params", str(tmp_path / "audit.json"), "--out", str(tmp_path / "runs")])
        out = capsys.readouterr().out
        assert "Nothing new to audit" in out and f"ledger and reports: s3://{BUCKET}/safety/audits/e2e/" in out
        assert set(ledger()) == {"ckpt-a"}
        assert sum("Nothing new to audit: 1 checkpoint(s) already audited, 1 incomplete" in r for r in run_reports()) == 1

        newer = tmp_path / "ckpt-c"
        shutil.copytree(assets.model_dir, newer)
        (newer / "README.md").write_text("another checkpoint\n")  # other content, other digest
        publish(newer, f"s3://{BUCKET}/checkpoints/ckpt-c")
        # The same weights, evaluated in two shards and without the cache: the merged figures are ckpt-a's.
        run_local("audit", {**params, "eval_shards": 2, "generation_cache": "off"}, tmp_path / "runs")
        assert set(ledger()) == {"ckpt-a", "ckpt-c"}
        records = {name: json.loads(store.client.get_object(BUCKET, e["key"]).read()) for name, e in ledger().items()}
        whole, merged = (records[n]["scores"] for n in ("ckpt-a", "ckpt-c"))
        assert {k: v for k, v in merged.items() if k not in ("checkpoint", "method", "cost")} == \
               {k: v for k, v in whole.items() if k not in ("checkpoint", "method", "cost")}
        assert merged["cost"]["generate"]["samples"] == whole["cost"]["generate"]["samples"] == 16 and "shard" not in merged
        shard_dirs = {o.object_name.split("/generate/ckpt-c/")[1].split("/")[0] for o in store.client.list_objects(
            BUCKET, prefix="safety/", recursive=True) if "/generate/ckpt-c/shard-" in o.object_name}
        assert shard_dirs == {"shard-1-of-2", "shard-2-of-2"}
        assert any("Audited 1 checkpoint(s)" in r and "ckpt-c" in r and "ckpt-a" not in r for r in run_reports())
        assert {o.object_name.rsplit(".", 1)[1] for o in store.client.list_objects(
            BUCKET, prefix="safety/audits/e2e/reports/", recursive=True)} == {"md", "html"}
        # Every run released its claims (finish, then the exit handler): nothing is left claimed.
        assert not list(store.client.list_objects(BUCKET, prefix="safety/audits/e2e/claims/", recursive=True))
        assert list((tmp_path / "runs").glob("safetax-audit-*/audit-release/released/released.json"))

        # The stale-audit alert: silent now, firing once two schedule intervals (60 s) pass without a run.
        last = query(prom, 'safetax_audit_last_completed_timestamp_seconds{audit="e2e"}', timeout=30)
        assert last and float(last[0]["value"][1]) > time.time() - 300
        expr = _stale_expr()
        assert query(prom, expr, timeout=0) == []
        fired = query(prom, expr, timeout=10, at=float(last[0]["value"][1]) + 150)
        assert sorted(r["metric"]["audit"] for r in fired) == ["e2e", "e2e-cached"]  # the second audit ran before
