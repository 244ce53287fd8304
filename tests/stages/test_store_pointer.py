"""One copy of each artifact: with a run store a stage's KFP output keeps a pointer, and downstream
stages read the data through it (a local store, and one round trip through S3)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from safetax.stages import analyze, merge, prepare, train
from safetax.stages.generate import targets_of
from safetax.stages.runtime import RunContext, stage_run
from safetax.artifacts import checkpoint_files
from safetax.store import POINTER, StoreError, check_reachable, input_dir, publish, require_complete
from safetax.store.manifest import sha256_file


@pytest.fixture(autouse=True)
def no_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFETAX_PUSHGATEWAY", raising=False)  # metrics.prom goes into the output directory


@pytest.fixture()
def output(tmp_path: Path) -> Path:
    """What a training stage leaves: a small manifest and report, two 'checkpoints', big and small data files."""
    src = tmp_path / "src"
    for rel, size in (("epoch-1/model.safetensors", 3 << 20), ("epoch-2/model.safetensors", 3 << 20), ("big.jsonl", 2 << 20)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(uuid.uuid4().bytes * (size // 16))
    (src / "checkpoints.json").write_text(json.dumps({"checkpoints": [{"name": "epoch-1"}, {"name": "epoch-2"}]}))
    (src / "report.md").write_text("# report\n")
    (src / "small.jsonl").write_text('{"x": 1}\n')
    return src


def _run_stage(out: Path, ctx: RunContext, src: Path) -> None:
    from safetax.store import atomic_dir

    with stage_run("train", ctx, out, "full"), atomic_dir(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def _same_files(a: Path, b: Path, rels: list[str]) -> bool:
    return all(sha256_file(a / r) == sha256_file(b / r) for r in rels)


def test_a_stage_with_a_store_leaves_a_pointer_and_the_small_files(output: Path, tmp_path: Path) -> None:
    out = tmp_path / "kfp" / "train"
    _run_stage(out, RunContext("run-1", str(tmp_path / "store")), output)
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", POINTER, "checkpoints.json", "metrics.prom", "report.md"]
    pointer = json.loads((out / POINTER).read_text())
    copy = tmp_path / "store" / "run-1" / "train" / "full"
    assert pointer["uri"] == str(copy) and pointer["files"] == 7 and pointer["bytes"] > 8 << 20
    assert input_dir(out, "checkpoints") == copy
    assert _same_files(copy, output, ["epoch-1/model.safetensors", "epoch-2/model.safetensors", "big.jsonl", "report.md"])
    with pytest.raises(StoreError, match=r"checkpoints: .* holds a pointer to the run store, not the data; read it through "
                                         r"safetax.store.input_dir"):
        require_complete(out, "checkpoints")
    publish(output.parent / "kfp", str(copy))  # someone replaces the store's copy
    with pytest.raises(StoreError, match=r"checkpoints: .* was republished with other content since the pointer was written"):
        input_dir(out, "checkpoints")


def test_without_a_store_nothing_changes(output: Path, tmp_path: Path) -> None:
    out = tmp_path / "kfp" / "train"
    _run_stage(out, RunContext("run-1"), output)
    assert not (out / POINTER).exists() and input_dir(out, "checkpoints") == out
    assert _same_files(out, output, ["epoch-1/model.safetensors", "big.jsonl"])
    with pytest.raises(StoreError, match="not a complete stage output"):
        input_dir(tmp_path / "nothing", "checkpoints")


def test_stages_read_their_inputs_through_pointers(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> None:
    ctx, kfp = RunContext("run-1", str(tmp_path / "store"), str(tiny_model)), tmp_path / "kfp"
    with stage_run("prepare", ctx, kfp / "sft"):
        prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), kfp / "sft")
    cfg = train.TrainConfig(method="lora", epochs=2, batch_size=4, learning_rate=1e-2, lora_dropout=0.0, seed=3)
    with stage_run("train", ctx, kfp / "train", cfg.label):
        train.run(cfg, str(tiny_model), kfp / "sft", kfp / "train")
    assert sorted(p.name for p in (kfp / "sft").iterdir()) == ["COMPLETE", POINTER, "metrics.prom", "stats.json"]
    assert not (kfp / "train" / "epoch-2").exists()  # only in the store
    with stage_run("merge", ctx, kfp / "merge", cfg.label):
        names = merge.run(merge.MergeConfig(mode="plain"), str(tiny_model), kfp / "train", kfp / "merge")
    [target] = targets_of(str(tiny_model), kfp / "merge", fetch=True)
    assert target.checkpoint == f"{names[0].removesuffix('-epoch-2')}/epoch-2"
    assert Path(target.model).is_relative_to(tmp_path / "store") and (Path(target.model) / "model.safetensors").is_file()
    table = analyze.run(analyze.AnalyzeConfig(k=4), str(tiny_model), kfp / "train", tmp_path / "analysis")
    reference = analyze.run(analyze.AnalyzeConfig(k=4), str(tiny_model), input_dir(kfp / "train", "train"), tmp_path / "a2")
    assert len(table) == 12 and table.equals(reference)


def test_s3_round_trip_fetches_only_what_a_stage_names(s3_env, output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path / "cache"))
    store = f"s3://safetax-runs/{uuid.uuid4().hex[:10]}"
    out = tmp_path / "kfp" / "train"
    _run_stage(out, RunContext("run-1", store), output)
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", POINTER, "checkpoints.json", "metrics.prom", "report.md"]

    part = checkpoint_files(out, ["epoch-2"])  # what merge of the last epoch asks for
    assert sorted(p.relative_to(part).as_posix() for p in part.rglob("*") if p.is_file()) == \
        ["COMPLETE", "checkpoints.json", "epoch-2/model.safetensors"]
    assert _same_files(part, output, ["epoch-2/model.safetensors"])
    assert len([p for p in (tmp_path / "cache" / "s3" / "blobs").rglob("*") if p.is_file()]) == 2  # nothing else came down
    assert checkpoint_files(out, ["epoch-2"]) == part  # served from the cache

    full = input_dir(out, "checkpoints")
    assert full != part and _same_files(full, output, ["epoch-1/model.safetensors", "epoch-2/model.safetensors", "big.jsonl"])
    assert checkpoint_files(out, ["epoch-1"]) == full  # once everything is here, subsets use it

    published = f"{store}/run-1/train/full"
    check_reachable(published, "base_model_uri")
    check_reachable(f"{published}/big.jsonl", "refusal_data_uri")  # a file inside a published directory
    with pytest.raises(StoreError, match=r"eval set 'x' uri: s3://.*/run-2 is neither a published directory"):
        check_reachable(f"{store}/run-2", "eval set 'x' uri")
