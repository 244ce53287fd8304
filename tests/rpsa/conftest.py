"""A tiny random Qwen2 and single-sequence reasoning batches for the RPSA tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

VOCAB = 64


def tiny_qwen(seed: int = 0, layers: int = 2) -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return Qwen2ForCausalLM(cfg).float()


def make_sequences(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random sequences of 8-15 tokens; the first 3-5 tokens are the prompt (labels -100)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(8, 16, (1,), generator=g))
        prompt = int(torch.randint(3, 6, (1,), generator=g))
        ids = torch.randint(0, VOCAB, (length,), generator=g)
        labels = ids.clone()
        labels[:prompt] = -100
        out.append({"input_ids": ids, "labels": labels, "attention_mask": torch.ones(length, dtype=torch.long)})
    return out


@pytest.fixture()
def model() -> nn.Module:
    return tiny_qwen()


@pytest.fixture()
def sequences() -> list[dict[str, torch.Tensor]]:
    return make_sequences(6)
