"""Merge (plain and OrthoMerge), the orthogonality regulariser and the weight-update analysis on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from safetax.config import ConfigError
from safetax.stages import analyze, merge, train
from safetax.store import StoreError

from tests.conftest import put_in_hf_cache

FAST = {"batch_size": 4, "learning_rate": 1e-2, "epochs": 2, "lora_dropout": 0.0, "seed": 3}


@pytest.fixture()
def lora_run(tiny_model: Path, sft: Path, tmp_path: Path) -> Path:
    train.run(train.TrainConfig(method="lora", target_modules="mlp", **FAST), str(tiny_model), sft, tmp_path / "lora")
    return tmp_path / "lora"


@pytest.fixture()
def offline_hub(tiny_model: Path, offline_hf_cache: Path) -> str:
    """The tiny model as hub model ``org/tiny`` in the local HF cache, the hub offline."""
    put_in_hf_cache(offline_hf_cache, "org/tiny", "0123456789abcdef0123456789abcdef01234567", tiny_model)
    return "org/tiny"


def _logits(model_dir: Path, adapter: Path | None = None) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    ids = torch.arange(3, 40).reshape(1, -1)
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_plain_merge_gives_the_logits_of_base_plus_adapter(tiny_model: Path, lora_run: Path, tmp_path: Path) -> None:
    names = merge.run(merge.MergeConfig(mode="plain"), str(tiny_model), lora_run, tmp_path / "merged")
    assert names == ["lora-r4+plain-epoch-2"]
    merged = _logits(tmp_path / "merged" / names[0])
    reference = _logits(tiny_model, lora_run / "epoch-2")
    assert not torch.allclose(merged, _logits(tiny_model), atol=1e-3)  # the adapter did change the model
    torch.testing.assert_close(merged, reference, atol=1e-5, rtol=1e-5)  # fp32: only summation order differs
    assert (tmp_path / "merged" / names[0] / "model.safetensors").is_file()


def test_orthomerge_both_removes_the_top_subspaces_and_lambda_scales(tiny_model: Path, lora_run: Path, tmp_path: Path) -> None:
    cfg = merge.MergeConfig(mode="ortho-both", k=8, lambdas=(1.0, 1.5), epochs="all")
    names = merge.run(cfg, str(tiny_model), lora_run, tmp_path / "merged")
    assert names == [f"lora-r4+ortho-both-l{lam}-epoch-{e}" for e in (1, 2) for lam in ("1", "1.5")]
    base = load_file(tiny_model / "model.safetensors")
    one = load_file(tmp_path / "merged" / "lora-r4+ortho-both-l1-epoch-2" / "model.safetensors")
    scaled = load_file(tmp_path / "merged" / "lora-r4+ortho-both-l1.5-epoch-2" / "model.safetensors")
    adapted = [k for k in base if ".mlp." in k and not torch.equal(base[k], one[k])]
    assert len(adapted) == 4 * 3  # every MLP matrix of every layer
    from safetax.weights.svd import top_singular

    for key in adapted:
        u, _, v = (x.double() for x in top_singular(base[key].float(), 8, seed=0))  # the stage's basis (same seed)
        d1, d15 = (one[key] - base[key]).double(), (scaled[key] - base[key]).double()
        assert (u.T @ d1).norm() < 1e-3 * d1.norm() and (d1 @ v).norm() < 1e-3 * d1.norm()
        torch.testing.assert_close(d15, 1.5 * d1, atol=1e-5, rtol=1e-3)
    untouched = [k for k in base if k not in adapted]
    assert all(torch.equal(base[k], one[k]) for k in untouched)


def test_none_writes_no_candidates(tiny_model: Path, lora_run: Path, tmp_path: Path) -> None:
    assert merge.run(merge.MergeConfig(), str(tiny_model), lora_run, tmp_path / "m") == []
    from safetax.stages.generate import targets_of

    assert targets_of(str(tiny_model), tmp_path / "m") == []


def test_merge_candidates_become_generation_targets(tiny_model: Path, lora_run: Path, tmp_path: Path) -> None:
    from safetax.stages.generate import targets_of

    merge.run(merge.MergeConfig(mode="ortho-col", k=4, lambdas=(1.0, 1.2)), str(tiny_model), lora_run, tmp_path / "m")
    targets = targets_of(str(tiny_model), tmp_path / "m")
    assert [(t.checkpoint, t.method, t.epoch, t.adapter) for t in targets] == [
        ("lora-r4+ortho-col-l1/epoch-2", "lora-r4+ortho-col-l1", 2, None),
        ("lora-r4+ortho-col-l1.2/epoch-2", "lora-r4+ortho-col-l1.2", 2, None),
    ]


def test_regulariser_lowers_the_overlap_with_the_base_weights(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    overlaps = {}
    for reg in ("none", "both"):
        cfg = train.TrainConfig(method="lora", target_modules="mlp", ortho_reg=reg, ortho_beta=50.0, ortho_k=8, **FAST)
        train.run(cfg, str(tiny_model), sft, tmp_path / reg)
        table = analyze.run(analyze.AnalyzeConfig(k=8), str(tiny_model), tmp_path / reg, tmp_path / f"{reg}-analysis")
        overlaps[reg] = table[["col_overlap", "row_overlap", "col_subspace", "row_subspace"]].mean()
    # The rank-k regulariser sees W_I's top-k subspaces: overlaps with them fall several-fold (here ~4x),
    # the overlaps with the whole W_I less (W_I's flat random spectrum leaves much outside the top 8).
    none, both = overlaps["none"], overlaps["both"]
    assert both["col_subspace"] < 0.5 * none["col_subspace"] and both["row_subspace"] < 0.5 * none["row_subspace"], overlaps
    assert both["col_overlap"] < none["col_overlap"] and both["row_overlap"] < none["row_overlap"], overlaps


def test_analysis_of_lora_and_full(tiny_model: Path, sft: Path, lora_run: Path, tmp_path: Path) -> None:
    lora = analyze.run(analyze.AnalyzeConfig(k=8), str(tiny_model), lora_run, tmp_path / "a-lora")
    assert len(lora) == 12 and set(lora["module"]) == {"gate_proj", "up_proj", "down_proj"}
    assert (lora["stable_rank"] <= 4 + 1e-6).all() and (lora["stable_rank"] >= 1 - 1e-6).all()  # rank-4 updates
    for col in ("col_overlap", "col_subspace", "row_overlap", "row_subspace"):
        assert lora[col].between(0, 1).all()
    train.run(train.TrainConfig(method="full", batch_size=4, learning_rate=1e-3, epochs=1), str(tiny_model), sft, tmp_path / "full")
    full = analyze.run(analyze.AnalyzeConfig(k=8), str(tiny_model), tmp_path / "full", tmp_path / "a-full")
    assert {"q_proj", "up_proj"} <= set(full["module"]) and full["stable_rank"].max() > 4  # full updates spread out
    assert (tmp_path / "a-lora" / "stable_rank.png").stat().st_size > 5_000
    # analytics puts both side by side in the report
    from safetax.stages.analytics import weight_sections

    both = analyze.load_tables([tmp_path / "a-lora", tmp_path / "a-full"])
    out = tmp_path / "report"
    out.mkdir()
    sections = weight_sections(both, out)
    assert sections[0] == "## Weight updates" and "| full |" in sections[2] and "| lora-r4 |" in sections[2]
    assert (out / "weights-overlaps.png").is_file() and len(pd.read_csv(out / "weights.csv")) == len(both)


def test_middle_layers(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", target_modules="up_proj", layers="middle", **FAST | {"epochs": 1})
    train.run(cfg, str(tiny_model), sft, tmp_path / "out")
    keys = load_file(tmp_path / "out" / "epoch-1" / "adapter_model.safetensors")
    assert {k.split(".layers.")[1].split(".")[0] for k in keys} == {"1"}  # 4 layers: the middle third is layer 1


def test_bad_merge_and_regulariser_configs_fail_before_work(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        merge.MergeConfig(mode="orthomerge", k=0, lambdas=(0.0,))
    msg = str(err.value)
    assert "`merge` must be one of 'none', 'plain', 'ortho-col', 'ortho-both'" in msg and "merge_k" in msg and "merge_lambdas" in msg
    with pytest.raises(ConfigError, match="`ortho_reg` must be 'none' for full fine-tuning"):
        train.TrainConfig(method="full", ortho_reg="col")
    with pytest.raises(ConfigError, match=r"`merge_k` must be at most 32 .* got 64"):
        train.run(train.TrainConfig(method="lora", **FAST), str(tiny_model), sft, tmp_path / "x", merge_k=64)
    with pytest.raises(ConfigError, match=r"`ortho_k` must be at most 32"):
        train.run(train.TrainConfig(method="lora", ortho_reg="col", ortho_k=40, **FAST), str(tiny_model), sft, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert merge.MergeConfig.from_method({"method": "lora", "merge": "ortho-both", "merge_k": 8.0, "merge_lambdas": [1, 1.15]}) == \
        merge.MergeConfig(mode="ortho-both", k=8, lambdas=(1.0, 1.15))
    assert train.TrainConfig.from_dict({"method": "lora", "merge": "ortho-both", "merge_k": 8}).method == "lora"


def test_merge_and_analyze_take_the_base_model_as_a_hub_id(tiny_model: Path, lora_run: Path, offline_hub: str, tmp_path: Path) -> None:
    [name] = merge.run(merge.MergeConfig(mode="plain"), offline_hub, lora_run, tmp_path / "hub")
    merge.run(merge.MergeConfig(mode="plain"), str(tiny_model), lora_run, tmp_path / "local")
    hub, local = (load_file(tmp_path / d / name / "model.safetensors") for d in ("hub", "local"))
    assert hub.keys() == local.keys() and all(torch.equal(hub[k], local[k]) for k in hub)
    from_hub = analyze.run(analyze.AnalyzeConfig(k=8), offline_hub, lora_run, tmp_path / "a-hub")
    pd.testing.assert_frame_equal(from_hub, analyze.run(analyze.AnalyzeConfig(k=8), str(tiny_model), lora_run, tmp_path / "a-local"))
    with pytest.raises(StoreError, match=r"model_uri: hub model 'org/other': the hub is offline \(HF_HUB_OFFLINE=1\) and the "
                                         r"repo is not \(completely\) in the local HF cache"):
        analyze.run(analyze.AnalyzeConfig(k=8), "org/other", lora_run, tmp_path / "a-other")
