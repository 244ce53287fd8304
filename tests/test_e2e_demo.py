"""The real alignment pipeline through KFP's local runner on the demo model (slow; runs in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from safetax.cli import main
from safetax.data.tables import read_rows
from safetax.demo import build_demo
from safetax.presets import DEMO_METHODS

pytestmark = pytest.mark.e2e


def test_demo_pipeline_aligns_both_methods(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], s3_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo as a platform team runs it: outputs in a real S3 bucket, metrics through a real Pushgateway."""
    import builtins

    from safetax.store.s3 import S3Store
    from safetax.testing.prometheus import prometheus, pushgateway, query

    assets = build_demo()  # cached after the first build
    aten = os.environ.get("ATEN_CPU_CAPABILITY")
    print_before = builtins.print
    monkeypatch.setenv("SAFETAX_PUSHGATEWAY", "")  # restored after the test; --pushgateway sets it for the run
    with pushgateway(tmp_path / "pushgateway") as gateway, prometheus(tmp_path / "prometheus", [gateway]) as prom:
        main(["demo", "--out", str(tmp_path / "runs"), "--safety-limit", "16", "--reasoning-limit", "32", "--max-new-tokens", "64",
              "--store", "s3://safetax-e2e/runs", "--pushgateway", gateway])
        out, err = capfd.readouterr()
        assert os.environ.get("ATEN_CPU_CAPABILITY") == aten  # the demo's portable kernels were its tasks' only
        # A quiet console: a line per method stage (a method's per-checkpoint chains sum up as one), the table, paths.
        assert len(out.splitlines()) < 60 and "executor_input" not in out + err, out
        assert sum(line.strip().startswith("evaluated ") for line in out.splitlines()) == len(DEMO_METHODS), out
        # Every stage's metrics, read back through Prometheus' query API.
        # The gate is the run's last task: wait for Prometheus to have scraped its push, then read every stage's.
        assert query(prom, 'safetax_stage_duration_seconds{stage="gate"}', timeout=60)
        stages = {r["metric"]["stage"] for r in query(prom, "safetax_stage_duration_seconds", timeout=60)}
        assert stages == {"plan", "prepare", "fisher", "train", "merge", "analyze", "generate", "judge", "score", "analytics", "gate"}
        safety = query(prom, 'safetax_safety_score{benchmark="demo-harmful"}', timeout=30)
        # Each checkpoint's chain pushes its own figures: a merge candidate under its own method (the table's
        # "<name>+<merge>"), so the dashboard keeps LoRA, its merges and full fine-tuning apart.
        methods, names = {r["metric"]["method"] for r in safety}, {m["name"] for m in DEMO_METHODS}
        assert {"base", *names} <= methods and {m.split("+")[0] for m in methods - {"base"}} == names, methods
        assert {m for m in methods if "+" in m} == {"lora-r4-mlp+ortho-both-l1", "lora-r4-mlp+ortho-both-l1.25"}
        assert query(prom, "safetax_train_loss", timeout=30) and query(prom, "safetax_reasoning_drop", timeout=30)

    # The run's outputs sit under one run prefix in the bucket, each with its manifest.
    store = S3Store()
    manifests = [o.object_name for o in store.client.list_objects("safetax-e2e", prefix="runs/", recursive=True)
                 if o.object_name.endswith("/MANIFEST.json") and "/inputs/" not in o.object_name]
    run_ids = {m.split("/")[1] for m in manifests}
    assert len(run_ids) == 1, manifests
    published = {tuple(m.split("/")[2:4]) for m in manifests}
    assert {("train", m["name"]) for m in DEMO_METHODS} | {("analytics", "analytics"), ("score", "base")} <= published
    [run_id] = run_ids
    assert "results.csv" in store.list(f"s3://safetax-e2e/runs/{run_id}/analytics/analytics")
    tmp_path = tmp_path / "runs"
    assert builtins.print is print_before  # the local runner's print indentation does not leak out

    [results] = list(tmp_path.glob("*/analytics/results"))
    table = pd.read_csv(results / "results.csv").set_index("checkpoint")
    merges = sum(len(m.get("merge_lambdas", [])) for m in DEMO_METHODS)
    assert len(table) == 1 + sum(m["epochs"] for m in DEMO_METHODS) + merges  # a row per checkpoint and merge candidate
    assert "lora-r4-mlp+ortho-both-l1.25/epoch-8" in table.index
    base = table.loc["base"]
    # Exact match on a multi-step arithmetic result: chance is ~0.
    assert base["acc:demo-arith"] >= 40.0
    assert base["safety:demo-harmful"] <= 10.0  # the demo model complies with harmful requests
    for m in DEMO_METHODS:
        last = table.loc[f"{m['name']}/epoch-{m['epochs']}"]
        if m["method"] != "rpsa":  # RPSA's table row is reported as measured, not asserted
            assert last["safety:demo-harmful"] >= base["safety:demo-harmful"] + 50.0, m["name"]
    assert (results / "report.md").is_file() and (results / "tradeoff.png").stat().st_size > 10_000
    report = (results / "report.md").read_text()
    assert "## Pareto-optimal checkpoints" in report and "## Weight updates" in report  # the analysis of both methods
    assert (results / "weights-stable-rank.png").stat().st_size > 10_000 and (results / "weights-overlaps.png").is_file()
    weights = pd.read_csv(results / "weights.csv")
    assert set(weights["method"]) == {m["name"] for m in DEMO_METHODS}
    assert "report.md" in out and "lora-r4-mlp/epoch-1" in out  # the CLI printed the table and the path
    # RPSA: its corpus and Fisher in its train task's `rpsa` artifact (written and read in that pod), its conflict /
    # frozen-ratio history in the bucket; the other methods' train pods computed no Fisher.
    rpsa = next(m["name"] for m in DEMO_METHODS if m["method"] == "rpsa")
    [fisher] = list(tmp_path.glob("*/*/train/rpsa/fisher/fisher.safetensors"))
    assert (fisher.parent.parent / "corpus" / "corpus.jsonl").is_file()
    assert "rpsa.json" in store.list(f"s3://safetax-e2e/runs/{run_id}/train/{rpsa}")

    # Harmful prompts never reach stdout or logs (the demo's are placeholders; the habit is what is tested).
    prompts = [r["prompt"] for r in read_rows(assets.safety_eval_path)] + [r["prompt"] for r in read_rows(assets.refusal_path)]
    assert not [p for p in prompts if p in out or p in err]
