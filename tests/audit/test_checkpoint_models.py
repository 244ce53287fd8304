"""Under a watched prefix only full models are checkpoints (config.json and *.safetensors at the top level, read
from the manifest): a prefix that points at a whole run store skips its generations, training outputs and adapters
with their reasons, in the log and in the run report, on a local store and against SeaweedFS. An explicit
checkpoint directory that is not a model fails the plan, naming the URI and what it lacks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from safetax.audit.discover import discover, not_a_model
from safetax.stages import audit as stage
from safetax.store import StoreError, publish

from tests.audit.conftest import PROFILE
from tests.conftest import put_in_hf_cache


def files(root: Path, contents: dict[str, str]) -> Path:
    for rel, text in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


FULL_MODEL = {"config.json": json.dumps({"model_type": "qwen2"}), "model.safetensors": "weights",
              "tokenizer.json": "{}"}


def run_store(prefix: str, tmp_path: Path) -> None:
    """What a run store holds under one run: a stage output, a training output (checkpoints.json, epoch-N/), a
    LoRA adapter, and one full model (the gate's promotion)."""
    layout = {
        "generations/base": {"generations.jsonl": "{}\n", "targets.json": "[]"},
        "train/full": {"checkpoints.json": "{}", "epoch-1/config.json": "{}", "epoch-1/model.safetensors": "w"},
        "train/lora-r4": {"adapter_config.json": "{}", "adapter_model.safetensors": "w"},
        "promoted/full-epoch-1": FULL_MODEL,
    }
    for name, contents in layout.items():
        publish(files(tmp_path / "src" / name, contents), f"{prefix}/{name}")


def test_only_full_models_under_a_prefix_are_checkpoints(store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"{store}/runs/r1-7b"
    run_store(prefix, tmp_path)
    cfg = stage.AuditConfig.from_dict({"audit_name": "nightly", "store_uri": store, "checkpoint_prefix": prefix,
                                       "profile": "custom", "custom_profile": PROFILE})
    with caplog.at_level(logging.INFO, logger="safetax.audit.discover"):
        planned = stage.plan(cfg, tmp_path / "plan", run_id="run-1")
    assert [t["name"] for t in planned["targets"]] == ["promoted/full-epoch-1"]
    assert planned["skipped"] == [
        {"name": "generations/base", "reason": "no config.json and no *.safetensors weights at its top level"},
        {"name": "train/full", "reason": "no config.json and no *.safetensors weights at its top level"},
        {"name": "train/lora-r4", "reason": "no config.json at its top level (a LoRA adapter: the audit evaluates full "
                                            "models; merge it first)"}]
    # discovery's own line (the plan's summary, shown when an earlier test let the stage logger's INFO through, counts too)
    [line] = [r.getMessage() for r in caplog.records if r.name == "safetax.audit.discover" and "not models" in r.getMessage()]
    assert line.startswith("checkpoint_prefix: 3 published director(ies) are not models") and line.endswith(
        "skipped: generations/base, train/full, train/lora-r4")

    stage.release_claims(tmp_path / "plan")
    report = stage.idle(tmp_path / "plan", tmp_path / "out", "run-1", gateway="")
    assert "3 published director(ies) under the prefix are not models, skipped: `generations/base` (no config.json" in report
    assert "`train/lora-r4` (no config.json at its top level (a LoRA adapter" in report


def test_discovery_lists_what_it_skipped(tmp_path: Path) -> None:
    prefix = tmp_path / "ckpts"
    run_store(str(prefix), tmp_path)
    found = discover(str(prefix), [], audited=set())
    assert [t.name for t in found.new] == ["promoted/full-epoch-1"]
    assert [name for name, _ in found.skipped] == ["generations/base", "train/full", "train/lora-r4"]
    assert found.incomplete == []


@pytest.mark.parametrize(("contents", "missing"), [
    ({"tokenizer.json": "{}", "model.safetensors": "w"}, "no config.json at its top level"),
    ({"config.json": "{}", "pytorch_model.bin": "w"}, "no *.safetensors weights at its top level"),
    ({"adapter_config.json": "{}", "adapter_model.safetensors": "w"}, "(a LoRA adapter: the audit evaluates full models"),
])
def test_an_explicit_directory_that_is_no_model_fails_the_plan(tmp_path: Path, contents: dict[str, str], missing: str) -> None:
    ckpt = files(tmp_path / "not-a-model", contents)
    cfg = stage.AuditConfig.from_dict({"audit_name": "nightly", "store_uri": str(tmp_path / "store"),
                                       "checkpoints": [str(ckpt)], "profile": "custom", "custom_profile": PROFILE})
    with pytest.raises(StoreError) as e:
        stage.plan(cfg, tmp_path / "plan", run_id="run-1")
    assert f"checkpoints: {str(ckpt)!r} is not a model directory the audit can load: " in str(e.value)
    assert missing in str(e.value)
    assert not (tmp_path / "store").exists() and not (tmp_path / "plan").exists()  # no claim, no plan


def test_a_published_explicit_checkpoint_is_checked_from_its_manifest(store: str, tmp_path: Path) -> None:
    publish(files(tmp_path / "gen", {"generations.jsonl": "{}\n"}), f"{store}/gen")
    publish(files(tmp_path / "model", FULL_MODEL), f"{store}/model")
    cfg = stage.AuditConfig.from_dict({"audit_name": "nightly", "store_uri": store, "checkpoints": [f"{store}/model"],
                                       "profile": "custom", "custom_profile": PROFILE})
    assert [t["uri"] for t in stage.plan(cfg, tmp_path / "plan", run_id="run-1")["targets"]] == [f"{store}/model"]
    bad = stage.AuditConfig.from_dict({**cfg.to_dict(), "checkpoints": [f"{store}/gen"]})
    with pytest.raises(StoreError, match=rf"checkpoints: '{store}/gen' is not a model directory .*no config.json"):
        stage.plan(bad, tmp_path / "plan-2", run_id="run-2")


def test_a_hub_id_is_audited_once_per_revision(tiny_model: Path, offline_hf_cache: Path, tmp_path: Path) -> None:
    """A hub id is the commit its main branch names at planning (the same identity as that snapshot's directory): a new
    revision pushed under the id is a new checkpoint; an id that cannot be resolved fails the plan, naming it."""
    snapshot = put_in_hf_cache(offline_hf_cache, "org/tiny", "a" * 40, tiny_model)
    first = discover("", ["org/tiny"], audited=set())
    # the target is pinned to the commit identified: the generate step loads what the ledger will record
    assert [(t.name, t.uri, t.digest) for t in first.new] == [("tiny", "org/tiny@" + "a" * 40,
                                                               discover("", [str(snapshot)], set()).new[0].digest)]
    assert discover("", ["org/tiny"], audited={first.new[0].digest}).new == []
    put_in_hf_cache(offline_hf_cache, "org/tiny", "b" * 40, tiny_model)  # a new revision
    again = discover("", ["org/tiny"], audited={first.new[0].digest})
    assert [t.uri for t in again.new] == ["org/tiny@" + "b" * 40] and again.new[0].digest != first.new[0].digest
    cfg = stage.AuditConfig.from_dict({"audit_name": "nightly", "store_uri": str(tmp_path / "store"),
                                       "checkpoints": ["org/other"], "profile": "custom", "custom_profile": PROFILE})
    with pytest.raises(StoreError, match=r"checkpoints: hub model 'org/other': the hub is offline .* not .*in the local HF cache"):
        stage.plan(cfg, tmp_path / "plan")


def test_the_gate_promotes_a_pinned_hub_checkpoint(tiny_model: Path, offline_hf_cache: Path, tmp_path: Path) -> None:
    from safetax.audit.gate import promote

    put_in_hf_cache(offline_hf_cache, "org/tiny", "a" * 40, tiny_model)
    dest = promote("org/tiny@" + "a" * 40, {"verdict": "pass"}, str(tmp_path / "promoted" / "tiny"))
    assert json.loads((Path(dest) / "audit.json").read_text()) == {"verdict": "pass"}
    assert (Path(dest) / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()


def test_a_baseline_model_that_is_no_model_is_named(tmp_path: Path) -> None:
    base = files(tmp_path / "base", {"config.json": "{}"})
    publish(files(tmp_path / "src" / "ckpt", FULL_MODEL), str(tmp_path / "ckpts" / "ckpt"))
    cfg = stage.AuditConfig.from_dict({"audit_name": "nightly", "store_uri": str(tmp_path / "store"),
                                       "checkpoint_prefix": str(tmp_path / "ckpts"), "profile": "custom",
                                       "custom_profile": PROFILE, "baseline": "r1", "baseline_model": str(base)})
    with pytest.raises(StoreError, match=rf"baseline_model: '{base}' is not a model directory .*no \*.safetensors"):
        stage.plan(cfg, tmp_path / "plan")


def test_not_a_model_reads_the_top_level_only() -> None:
    assert not_a_model(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]) == ""
    assert not_a_model(["sub/config.json", "sub/model.safetensors"]) == ("no config.json and no *.safetensors weights "
                                                                          "at its top level")
