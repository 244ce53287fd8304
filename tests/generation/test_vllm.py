"""The vLLM backend's translation layer (vLLM itself is not installable on CPU machines)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import pytest

from safetax.generation.vllm import VLLMBackend, completions


@dataclass
class _Out:  # the fields of vllm.outputs.CompletionOutput that the backend reads
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _Req:  # the field of vllm.outputs.RequestOutput that the backend reads
    outputs: list[_Out] = field(default_factory=list)


def test_completions_keep_prompt_order_samples_and_eos_flag() -> None:
    got = completions([_Req([_Out("a", [1, 2], "stop"), _Out("b", [3], "length")]), _Req([_Out("c", [], "stop")])])
    assert [[(c.text, c.n_tokens, c.finished) for c in r] for r in got] == [[("a", 2, True), ("b", 1, False)], [("c", 0, True)]]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_gives_a_clear_error() -> None:
    with pytest.raises(ImportError, match="backend 'vllm' needs the vllm package"):
        VLLMBackend("any/model")
