"""The audit's plan and finish stages on a local store: the ledger, baselines, reports, metrics and the gate.

Checkpoints here are published directories with a few files (no model is evaluated): the scores that the
pipeline's generate -> judge -> score steps would write are written directly."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from safetax.audit.gate import GateError
from safetax.config import ConfigError
from safetax.records import CheckpointScores
from safetax.stages import audit as stage
from safetax.stages.score import SCORES
from safetax.store import StoreError, atomic_dir, publish, write_json


def checkpoint(prefix: Path, name: str, content: str) -> Path:
    src = prefix.parent / "src" / name
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text(json.dumps({"content": content}))
    (src / "model.safetensors").write_bytes(content.encode() * 100)
    publish(src, str(prefix / name))
    return prefix / name


def score_dir(root: Path, label: str, safety: float, math: float) -> Path:
    out = root / "scores" / label.replace("/", "_")
    with atomic_dir(out) as tmp:
        cs = CheckpointScores(label, label, 0, reasoning={"demo-arith": math}, safety={"demo-harmful": safety},
                              counts={"demo-harmful": {"n": 10, "unscored": 0}})
        write_json(tmp / SCORES, [cs.to_dict()])
    return out


PROFILE = {"eval_sets": [{"name": "demo-harmful", "kind": "safety", "uri": "/dev/null"},
                         {"name": "demo-arith", "kind": "reasoning", "uri": "/dev/null"}]}


def config(tmp_path: Path, **kw) -> stage.AuditConfig:
    d = {"audit_name": "nightly", "store_uri": str(tmp_path / "store"), "checkpoint_prefix": str(tmp_path / "ckpts"),
         "profile": "custom", "custom_profile": PROFILE, "thresholds": {"min_safety_score": 0.8}, "audit_schedule": "0 2 * * *"}
    return stage.AuditConfig.from_dict(d | kw)


def run(tmp_path: Path, cfg: stage.AuditConfig, scores: dict[str, tuple[float, float]], n: int) -> list:
    plan_dir = tmp_path / f"plan-{n}"
    planned = stage.plan(cfg, plan_dir, run_id=f"run-{n}")
    labels = [t["label"] for t in stage.targets(plan_dir)]
    assert labels == [t["name"] for t in planned["targets"]]
    if not labels:
        stage.idle(plan_dir, tmp_path / f"out-{n}", f"run-{n}", gateway="")
        return []
    dirs = [score_dir(tmp_path / f"s{n}", label, *scores[label]) for label in labels]
    return stage.finish(plan_dir, dirs, tmp_path / f"out-{n}", f"run-{n}", gateway="")


def test_audits_each_complete_checkpoint_once(tmp_path: Path) -> None:
    prefix = tmp_path / "ckpts"
    checkpoint(prefix, "ckpt-a", "a")
    (prefix / "ckpt-b").mkdir()  # still being written: files, no manifest
    (prefix / "ckpt-b" / "config.json").write_text("{}")
    cfg = config(tmp_path)
    first = run(tmp_path, cfg, {"ckpt-a": (0.9, 0.5)}, 1)
    assert [(a.checkpoint, a.verdict.label) for a in first] == [("ckpt-a", "pass")]
    ledger = tmp_path / "store" / "audits" / "nightly"
    [record] = [json.loads(p.read_text()) for p in (ledger / "ledger").glob("*.json")]
    assert record["checkpoint"] == "ckpt-a" and record["verdict"] == "pass" and record["scores"]["safety"] == {"demo-harmful": 0.9}
    assert (ledger / "reports" / f"{record['digest']}.md").read_text().startswith("# Audit `nightly`: ckpt-a")
    assert "<b>Verdict: PASS</b>" in (ledger / "reports" / f"{record['digest']}.html").read_text()
    out = tmp_path / "out-1"
    assert "Audited 1 checkpoint(s): 1 pass, 0 fail; 0 already audited, 1 incomplete" in (out / "report.md").read_text()
    prom = "".join(p.read_text() for p in out.glob("audit-metrics-*.prom"))  # no gateway: textfiles
    assert 'safetax_audit_verdict{audit="nightly",checkpoint="ckpt-a"} 1.0' in prom
    assert 'safetax_audit_interval_seconds{audit="nightly"} 86400.0' in prom
    assert 'safetax_audit_threshold{audit="nightly",benchmark="",criterion="min_safety_score"} 0.8' in prom

    assert run(tmp_path, cfg, {}, 2) == []  # nothing new: the ledger knows ckpt-a, ckpt-b is incomplete
    assert "Nothing new to audit: 1 checkpoint(s) already audited, 1 incomplete" in (tmp_path / "out-2" / "report.md").read_text()
    assert 'safetax_audit_checkpoints_audited{audit="nightly"} 0.0' in (tmp_path / "out-2" / "audit-metrics-0.prom").read_text()

    checkpoint(prefix, "ckpt-c", "c")
    (prefix / "ckpt-b" / "MANIFEST.json").unlink(missing_ok=True)
    third = run(tmp_path, cfg, {"ckpt-c": (0.5, 0.6)}, 3)
    assert [(a.checkpoint, a.verdict.label) for a in third] == [("ckpt-c", "fail")]
    assert len(list((ledger / "ledger").glob("*.json"))) == 2
    # A copy of an audited checkpoint under another name has the same digest: not audited again.
    checkpoint(prefix, "copy-of-a", "a")
    assert stage.plan(cfg, tmp_path / "plan-4")["targets"] == []


def test_baseline_is_audited_once_and_compared_with(tmp_path: Path) -> None:
    prefix = tmp_path / "ckpts"
    checkpoint(prefix, "ckpt-a", "a")
    base = checkpoint(tmp_path / "models", "r1-base", "base")
    cfg = config(tmp_path, baseline="r1-base", baseline_model=str(base),
                 thresholds={"min_safety_score": 0.8, "max_reasoning_drop": 0.05})
    [a] = run(tmp_path, cfg, {"baseline-r1-base": (0.1, 0.6), "ckpt-a": (0.9, 0.5)}, 1)
    assert a.verdict.reasoning_drop == pytest.approx({"demo-arith": 0.1}) and not a.verdict.passed
    record = json.loads((tmp_path / "store" / "audits" / "nightly" / "baselines" / "r1-base.json").read_text())
    assert record["role"] == "baseline" and record["scores"]["reasoning"] == {"demo-arith": 0.6}
    checkpoint(prefix, "ckpt-b", "b")  # the next run compares with the recorded baseline: no re-audit
    planned = stage.plan(cfg, tmp_path / "plan-2")
    assert [t["name"] for t in planned["targets"]] == ["ckpt-b"]
    stage.release_claims(tmp_path / "plan-2")  # a plan whose run ends here: its claim must not hold up run 3
    [b] = run(tmp_path, cfg, {"ckpt-b": (0.9, 0.58)}, 3)
    assert b.verdict.passed and b.verdict.reasoning_drop == pytest.approx({"demo-arith": 0.02})


def test_gate_promotes_the_best_passing_checkpoint(tmp_path: Path) -> None:
    prefix = tmp_path / "ckpts"
    for name in ("ckpt-a", "ckpt-b", "ckpt-c"):
        checkpoint(prefix, name, name)
    cfg = config(tmp_path, promote=True)
    run(tmp_path, cfg, {"ckpt-a": (0.95, 0.4), "ckpt-b": (0.85, 0.6), "ckpt-c": (0.5, 0.9)}, 1)
    promoted = tmp_path / "store" / "audits" / "nightly" / "promoted"
    assert [p.name for p in promoted.iterdir()] == ["ckpt-b"]
    assert (promoted / "ckpt-b" / "MANIFEST.json").is_file()
    assert json.loads((promoted / "ckpt-b" / "audit.json").read_text())["verdict"] == "pass"
    assert json.loads((promoted / "ckpt-b" / "config.json").read_text()) == {"content": "ckpt-b"}


def test_gate_refuses_a_checkpoint_below_the_refusal_threshold(tmp_path: Path) -> None:
    checkpoint(tmp_path / "ckpts", "ckpt-a", "a")
    cfg = config(tmp_path, promote=True)
    with pytest.raises(GateError, match="ckpt-a: safety score on demo-harmful is 0.3, below min_safety_score 0.8"):
        run(tmp_path, cfg, {"ckpt-a": (0.3, 0.9)}, 1)
    ledger = tmp_path / "store" / "audits" / "nightly"
    assert not (ledger / "promoted").exists()
    [record] = [json.loads(p.read_text()) for p in (ledger / "ledger").glob("*.json")]
    assert record["verdict"] == "fail" and record["failed"][0]["criterion"] == "min_safety_score"  # an honest fail verdict
    assert "Safety gate: nothing promoted" in (tmp_path / "out-1" / "report.md").read_text()


@pytest.mark.parametrize(("kw", "needle"), [
    ({"audit_schedule": "0 25 * * *"}, "audit_schedule"),
    ({"thresholds": {"min_safety_score": 1.2}}, "`min_safety_score` must be a number in [0, 1], got 1.2"),
    ({"profile": "hourly"}, "`profile` must be one of ['nightly', 'weekly', 'custom'], got 'hourly'"),
    ({"audit_name": "Nightly_Audit"}, "`audit_name` must be a DNS-1123 label"),
    ({"checkpoint_prefix": ""}, "`checkpoint_prefix` must be an s3:// prefix or local directory to watch"),
    ({"thresholds": {"max_safety_tax_rate": 0.2}}, "compare with a baseline, but `baseline` is empty"),
    ({"thresholds": {"max_reasoning_drop": 0.05}, "baseline": "r1-base"}, "compare with a baseline, but baseline 'r1-base' has no audit record"),
    ({"store_uri": "ftp://host/x"}, "`store_uri`: 'ftp://host/x' has an unknown scheme 'ftp'"),
    ({"checkpoint_prefix": "s3://"}, "`checkpoint_prefix`: 's3://' has no bucket"),
])
def test_bad_input_fails_before_any_work_and_writes_no_record(tmp_path: Path, kw: dict, needle: str) -> None:
    checkpoint(tmp_path / "ckpts", "ckpt-a", "a")
    with pytest.raises(ConfigError) as e:
        stage.plan(config(tmp_path, **kw), tmp_path / "plan")
    assert needle in str(e.value)
    assert not (tmp_path / "store").exists() and not (tmp_path / "plan").exists()


def test_unreachable_prefix_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"checkpoint_prefix: '.*/nowhere' is not an existing directory"):
        stage.plan(config(tmp_path, checkpoint_prefix=str(tmp_path / "nowhere")), tmp_path / "plan")


def test_failed_evaluation_leaves_no_record(tmp_path: Path) -> None:
    checkpoint(tmp_path / "ckpts", "ckpt-a", "a")
    cfg = config(tmp_path)
    stage.plan(cfg, tmp_path / "plan")
    with pytest.raises(ValueError, match=r"no scores for \['ckpt-a'\]"):
        stage.finish(tmp_path / "plan", [], tmp_path / "out", "run-1", gateway="")
    assert not list((tmp_path / "store").rglob("ledger/*.json"))
    assert [t["name"] for t in stage.plan(cfg, tmp_path / "plan-2")["targets"]] == ["ckpt-a"]  # audited next time


def test_missing_bucket_is_named(tmp_path: Path, s3_env) -> None:
    with pytest.raises(StoreError, match=r"checkpoint_prefix: 's3://no-such-bucket/ckpts': bucket 'no-such-bucket' does not exist"):
        stage.plan(config(tmp_path, checkpoint_prefix="s3://no-such-bucket/ckpts"), tmp_path / "plan")
    assert not (tmp_path / "store").exists()


# -- a verdict is never lost to a Pushgateway outage ---------------------------------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    from safetax.testing.prometheus import pushgateway

    with pushgateway(tmp_path_factory.mktemp("audit-gateway")) as url:
        yield url


def verdicts_on(gateway: str, audit: str) -> dict[str, float]:
    from safetax.testing.prometheus import scrape

    return {s.labels["checkpoint"]: s.value for s in scrape(gateway, "safetax_audit_verdict")
            if s.name == "safetax_audit_verdict" and s.labels.get("audit") == audit}


def test_a_verdict_lost_to_a_down_gateway_is_republished_by_the_next_run(tmp_path: Path, gateway: str) -> None:
    from safetax.testing.prometheus import free_port, scrape

    audit = "lost-verdict"
    prefix = tmp_path / "ckpts"
    checkpoint(prefix, "ckpt-a", "a")
    cfg = config(tmp_path, audit_name=audit)
    stage.plan(cfg, tmp_path / "plan-1", run_id="run-1")
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(stage.AuditPublishError, match=f"recorded in the ledger .* did not reach the Pushgateway http://{down}"):
        stage.finish(tmp_path / "plan-1", [score_dir(tmp_path, "ckpt-a", 0.5, 0.5)], tmp_path / "out-1", "run-1",
                     gateway=down)
    ledger = tmp_path / "store" / "audits" / audit
    [record] = [json.loads(p.read_text()) for p in (ledger / "ledger").glob("*.json")]
    assert record["verdict"] == "fail"  # the verdict is durable, the task failed loudly
    assert verdicts_on(gateway, audit) == {}

    planned = stage.plan(cfg, tmp_path / "plan-2", run_id="run-2")
    assert planned["targets"] == []  # nothing new: an idle run...
    stage.idle(tmp_path / "plan-2", tmp_path / "out-2", "run-2", gateway=gateway)
    assert verdicts_on(gateway, audit) == {"ckpt-a": 0.0}  # ...re-publishes the failing verdict: the alert fires
    when = [s.value for s in scrape(gateway, "safetax_audit_timestamp_seconds") if s.labels.get("audit") == audit]
    assert when == [pytest.approx(datetime.fromisoformat(record["completed_at"]).timestamp())]
    assert [s.value for s in scrape(gateway, "safetax_audit_checkpoints_audited") if s.labels.get("audit") == audit] == [0.0]

    # A new run re-publishes older verdicts beside its own; the latest verdict of a checkpoint name wins.
    checkpoint(prefix, "ckpt-b", "b")
    checkpoint(prefix, "ckpt-a", "a2")  # ckpt-a changed: audited again, and now it passes
    stage.plan(cfg, tmp_path / "plan-3", run_id="run-3")
    stage.finish(tmp_path / "plan-3", [score_dir(tmp_path / "3", n, 0.9, 0.5) for n in ("ckpt-a", "ckpt-b")],
                 tmp_path / "out-3", "run-3", gateway=gateway)
    assert verdicts_on(gateway, audit) == {"ckpt-a": 1.0, "ckpt-b": 1.0}


def test_acknowledged_verdicts_are_not_republished(tmp_path: Path, gateway: str) -> None:
    import urllib.request

    from safetax.audit.ledger import Ledger

    audit = "acknowledged"
    checkpoint(tmp_path / "ckpts", "ckpt-a", "a")
    cfg = config(tmp_path, audit_name=audit)
    assert [a.verdict.label for a in run(tmp_path, cfg, {"ckpt-a": (0.5, 0.5)}, 1)] == ["fail"]
    ledger = Ledger(cfg.store_uri, audit)
    [digest] = ledger.audited()
    ledger.acknowledge(digest, "retrained as ckpt-b; ticket 123")
    urllib.request.urlopen(urllib.request.Request(  # the operator deletes the group, as the README says
        f"{gateway}/metrics/job/safetax/pipeline/safetax-audit/audit/{audit}/checkpoint/ckpt-a", method="DELETE"))
    stage.plan(cfg, tmp_path / "plan-2", run_id="run-2")
    stage.idle(tmp_path / "plan-2", tmp_path / "out-2", "run-2", gateway=gateway)
    assert verdicts_on(gateway, audit) == {}  # stays deleted
