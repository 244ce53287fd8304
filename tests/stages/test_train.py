from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safetax.artifacts import read_checkpoints
from safetax.config import ConfigError
from safetax.stages import prepare, train
from safetax.store import StoreError, is_complete

FAST = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 3}


def _base_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def _merged_state(model_dir: Path, adapter: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter).merge_and_unload()
    return {k: v for k, v in merged.state_dict().items()}


def test_lora_touches_only_chosen_modules_and_layers(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", target_modules="up_proj", layers="1-2", lora_dropout=0.0, **FAST)
    res = train.run(cfg, str(tiny_model), sft, tmp_path / "out")
    assert res.checkpoints == ["epoch-1", "epoch-2", "epoch-3"]
    adapter = load_file(tmp_path / "out" / "epoch-3" / "adapter_model.safetensors")
    assert adapter and all(".up_proj." in k and (".layers.1." in k or ".layers.2." in k) for k in adapter)
    base, merged = _base_state(tiny_model), _merged_state(tiny_model, tmp_path / "out" / "epoch-3")
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed == {f"model.layers.{i}.mlp.up_proj.weight" for i in (1, 2)}


def test_full_finetuning_changes_every_parameter_and_loss_decreases(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    res = train.run(train.TrainConfig(method="full", **FAST), str(tiny_model), sft, tmp_path / "out")
    assert res.losses[2] < res.losses[1] < res.losses[0] * 0.95
    base, tuned = _base_state(tiny_model), load_file(tmp_path / "out" / "epoch-3" / "model.safetensors")
    assert base.keys() == tuned.keys()
    assert all(not torch.equal(base[k], tuned[k]) for k in base)


def test_lora_loss_decreases_and_same_seed_gives_same_weights(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", seed=7, **FAST)
    a = train.run(cfg, str(tiny_model), sft, tmp_path / "a")
    train.run(cfg, str(tiny_model), sft, tmp_path / "b")
    assert a.losses[-1] < a.losses[0]
    wa = load_file(tmp_path / "a" / "epoch-3" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "b" / "epoch-3" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train.run(train.TrainConfig(method="lora", seed=8, **FAST), str(tiny_model), sft, tmp_path / "c")
    wc = load_file(tmp_path / "c" / "epoch-3" / "adapter_model.safetensors")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert c.out_dir.is_dir() and is_complete(c.out_dir)


def test_config_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as e:
        train.TrainConfig(method="lora", lora_rank=0, target_modules="mlpp", learning_rate=-1.0, layers="5-2")
    msg = str(e.value)
    assert "4 problem(s)" in msg
    assert "`lora_rank` must be an integer >= 1, got 0" in msg
    assert "`target_modules` must be one of mlp, attn, all, up_proj or module names, got 'mlpp'" in msg
    assert "`learning_rate` must be >= 0, got -1.0" in msg
    assert "`layers` range must be low-high with low <= high, got '5-2'" in msg


def test_unknown_method_and_keys_name_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"`method` must be one of 'full', 'lora', 'rpsa', got 'qlora'"):
        train.TrainConfig(method="qlora")
    with pytest.raises(ConfigError, match=r"`method config keys` must be among method, name, epochs"):
        train.TrainConfig.from_dict({"method": "lora", "rank": 4})
    assert train.TrainConfig.from_dict({"method": "lora", "lora_rank": 8.0}).lora_rank == 8


def test_bad_model_targets_fail_before_training(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"`layers` \[4, 5\] outside the model's layers 0-3"):
        train.run(train.TrainConfig(method="lora", layers="3-5"), str(tiny_model), sft, out)
    with pytest.raises(ConfigError, match=r"`target_modules` \['w1'\] not found in the model"):
        train.run(train.TrainConfig(method="lora", target_modules=("w1",)), str(tiny_model), sft, out)
    with pytest.raises(StoreError, match=r"model_uri: '/nonexistent/model' does not exist"):
        train.run(train.TrainConfig(), "/nonexistent/model", sft, out)
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_failed_training_leaves_no_complete_output(tiny_model: Path, sft: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetax.training import sft as loop

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train, "train_loop", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        train.run(train.TrainConfig(**FAST), str(tiny_model), sft, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    assert loop.train_loop is not boom


def test_prepare_rejects_missing_column_before_writing(tiny_model: Path, tmp_path: Path) -> None:
    from safetax.data.tables import DataError

    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,answer\nExplain restricted task 1.,No\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) refusal"):
        prepare.run(prepare.PrepareConfig(str(bad), str(tiny_model)), tmp_path / "sft")
    assert not (tmp_path / "sft").exists()


def _dtypes(path: Path) -> set[torch.dtype]:
    return {t.dtype for t in load_file(path).values()}


def test_checkpoints_take_the_base_models_dtype(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    bf16 = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(bf16)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(bf16)
    one = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 1}
    train.run(train.TrainConfig(method="full", **one), str(bf16), sft, tmp_path / "full")
    train.run(train.TrainConfig(method="full", save_dtype="float32", **one), str(bf16), sft, tmp_path / "full32")
    ckpt = tmp_path / "full" / "epoch-1"
    assert _dtypes(ckpt / "model.safetensors") == {torch.bfloat16}
    assert json.loads((ckpt / "config.json").read_text())["dtype"] == "bfloat16"
    # the same fp32 training, rounded once at the end
    exact, stored = load_file(tmp_path / "full32" / "epoch-1" / "model.safetensors"), load_file(ckpt / "model.safetensors")
    assert exact[next(iter(exact))].dtype == torch.float32 and all(torch.equal(exact[k].to(torch.bfloat16), stored[k]) for k in exact)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype="auto")
    assert model.dtype == torch.bfloat16
    ids = torch.arange(3, 20).reshape(1, -1)
    assert torch.isfinite(model(input_ids=ids).logits).all()
    assert read_checkpoints(tmp_path / "full").entries[0].details["dtype"] == "bfloat16"

    # LoRA adapters stay fp32 unless asked otherwise
    train.run(train.TrainConfig(method="lora", **one), str(bf16), sft, tmp_path / "lora")
    train.run(train.TrainConfig(method="lora", save_dtype="bfloat16", **one), str(bf16), sft, tmp_path / "lora16")
    assert _dtypes(tmp_path / "lora" / "epoch-1" / "adapter_model.safetensors") == {torch.float32}
    assert _dtypes(tmp_path / "lora16" / "epoch-1" / "adapter_model.safetensors") == {torch.bfloat16}
    with pytest.raises(ConfigError, match=r"`save_dtype` must be one of 'base', 'float32', 'bfloat16', 'float16', got 'fp8'"):
        train.TrainConfig(save_dtype="fp8")


# The losses of the tiny model's training, pinned: a silent change of the loop, the loss or the data path fails here.
# (CPU, torch 2.13.0; relative tolerance for BLAS differences between machines.)
PINNED_LOSSES = {"full": [5.263317, 4.720514, 4.482016], "lora": [5.535247, 5.456873, 5.417583]}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_losses_are_pinned(method: str, tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    res = train.run(train.TrainConfig(method=method, seed=7, **FAST), str(tiny_model), sft, tmp_path / "out")
    assert res.losses == pytest.approx(PINNED_LOSSES[method], rel=2e-3)
