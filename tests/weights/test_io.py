"""Streaming readers on a tiny random Qwen2 and real PEFT adapters (merged with merge_and_unload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from safetax.weights.io import iter_lora_deltas, iter_matrix_deltas, iter_matrix_pairs

TARGETS = ["q_proj", "up_proj", "down_proj"]
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft on transformers 5


def tiny_qwen2(layers: int = 2, seed: int = 0):
    """A random Qwen2 (hidden 32, untied lm_head): the few lines of tests/conftest.py's make_tiny_model, no tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(cfg)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base")
    tiny_qwen2().save_pretrained(path, max_shard_size="40KB")  # several shards: names map across files
    assert len(list(path.glob("model*.safetensors"))) > 1
    return path


def make_adapter(base_dir: Path, out: Path, **lora_kwargs) -> tuple[Path, dict[str, torch.Tensor]]:
    """Save a LoRA adapter with random (non-zero) A and B; return it and merged-minus-base per weight."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    base = Qwen2ForCausalLM.from_pretrained(base_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(target_modules=TARGETS, init_lora_weights=False, **lora_kwargs))
    model.save_pretrained(out)
    merged = model.merge_and_unload().state_dict()
    return out, {k: merged[k] - before[k] for k in before}


@pytest.mark.parametrize(
    "lora_kwargs",
    [
        {"r": 4, "lora_alpha": 8, "rank_pattern": {"down_proj": 2}, "alpha_pattern": {"down_proj": 3}},
        {"r": 4, "lora_alpha": 8, "use_rslora": True},
    ],
    ids=["patterns", "rslora"],
)
def test_lora_deltas_equal_merged_minus_base(base_dir: Path, tmp_path: Path, lora_kwargs: dict) -> None:
    adapter, diffs = make_adapter(base_dir, tmp_path / "adapter", **lora_kwargs)
    rows = list(iter_lora_deltas(base_dir, adapter))
    names = [name for name, _, _ in rows]
    expected = [f"model.layers.{i}.{m}.weight" for i in range(2) for m in ("mlp.down_proj", "mlp.up_proj", "self_attn.q_proj")]
    assert names == expected  # natural name order
    for name, W_I, dW in rows:
        assert W_I.shape == dW.shape and dW.dtype == W_I.dtype
        assert dW.abs().max() > 1e-3, name
        torch.testing.assert_close(dW, diffs[name], atol=1e-5, rtol=0)


def test_matrix_pairs_of_a_merged_checkpoint(base_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    adapter, _ = make_adapter(base_dir, tmp_path / "adapter", r=4, lora_alpha=8)
    torch.manual_seed(1)
    config = LoraConfig(target_modules=TARGETS, init_lora_weights=False, r=4, lora_alpha=8)
    model = get_peft_model(Qwen2ForCausalLM.from_pretrained(base_dir), config)
    model.merge_and_unload().save_pretrained(tmp_path / "tuned")  # one shard against the base's several
    deltas = {name: dW for name, _, dW in iter_lora_deltas(base_dir, adapter)}
    pairs = list(iter_matrix_pairs(base_dir, tmp_path / "tuned"))
    names = [name for name, _, _ in pairs]
    assert len(names) == 2 * 7 and names[0].startswith("model.layers.0.") and names[-1].startswith("model.layers.1.")
    assert not any("embed" in n or "lm_head" in n or "norm" in n for n in names)
    for name, W_I, W_tuned in pairs:
        if name in deltas:
            torch.testing.assert_close(W_tuned - W_I, deltas[name], atol=1e-5, rtol=0)
        else:
            assert torch.equal(W_tuned, W_I), name
    for (name, W_I, dW), (_, _, W_tuned) in zip(iter_matrix_deltas(base_dir, tmp_path / "tuned"), pairs, strict=True):
        assert dW.dtype == torch.float32
        torch.testing.assert_close(dW, W_tuned - W_I, atol=0, rtol=0)
    everything = [n for n, _, _ in iter_matrix_pairs(base_dir, tmp_path / "tuned", include_embeddings=True)]
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(everything)


def test_mismatched_checkpoints_are_refused_before_reading(base_dir: Path, tmp_path: Path) -> None:
    tiny_qwen2(layers=1).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match=r"weight\(s\) of .* missing from"):
        next(iter_matrix_pairs(base_dir, tmp_path / "small"))
    with pytest.raises(FileNotFoundError, match="no model"):
        next(iter_matrix_pairs(base_dir, tmp_path))


def test_dora_adapters_are_refused(base_dir: Path, tmp_path: Path) -> None:
    adapter, _ = make_adapter(base_dir, tmp_path / "adapter", r=2, lora_alpha=4)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match="`use_dora`=true"):
        next(iter_lora_deltas(base_dir, adapter))
