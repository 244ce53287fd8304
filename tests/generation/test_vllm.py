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


def test_requests_that_do_not_fit_the_context_are_found() -> None:
    from safetax.generation.vllm import too_long

    assert too_long([10, 200, 50], [100, 100, 150], 200) == [1]
    assert too_long([10**6], [10**6], 0) == []  # no limit known


def test_adapter_rank_is_the_largest_of_r_and_its_pattern(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from safetax.generation.vllm import adapter_rank

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"down_proj": 32}}))
    assert adapter_rank(tmp_path) == 32
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert adapter_rank(tmp_path) == 4


class _Tokenizer:
    """Splits on spaces; a BOS id (1) would be added unless add_special_tokens=False."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [len(w) + 10 for w in text.split()]


class _LLM:  # vllm.LLM's constructor and generate, recording what they get
    def __init__(self, **kwargs: object) -> None:
        self.kwargs, self.calls = kwargs, []  # type: ignore[var-annotated]
        self.llm_engine = type("E", (), {"model_config": type("M", (), {"max_model_len": kwargs["max_model_len"] or 64})()})()

    def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    def generate(self, requests, params, lora_request=None, use_tqdm=True):  # type: ignore[no-untyped-def]
        self.calls.append((requests, params, lora_request))
        return [_Req([_Out("x", [7] * p["n"], "stop")] * p["n"]) for p in params]


@pytest.fixture()
def fake_vllm(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import sys
    import types

    vllm = types.ModuleType("vllm")
    vllm.LLM = _LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, i, path: (name, i, path)  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.lora", types.ModuleType("vllm.lora")), ("vllm.lora.request", lora)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr("safetax.generation.vllm.engine_version", lambda: "vllm-fake")


def test_engine_gets_the_platform_settings_and_token_ids_without_a_second_bos(fake_vllm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from safetax.generation.backends import EngineSettings, make_backend
    from safetax.generation.base import SamplingConfig

    engine = EngineSettings(max_model_len=40, gpu_memory_utilization=0.8, max_lora_rank=16)
    backend = make_backend("vllm", "m", tensor_parallel_size=2, engine=engine)
    kw = backend.llm.kwargs  # type: ignore[attr-defined]
    assert (kw["max_model_len"], kw["gpu_memory_utilization"], kw["tensor_parallel_size"]) == (40, 0.8, 2)
    assert (kw["enable_lora"], kw["max_lora_rank"], kw["enable_prefix_caching"]) == (True, 16, True)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    s = [SamplingConfig(max_new_tokens=5), SamplingConfig(temperature=1.0, n=2, max_new_tokens=9, seed=3)]
    out = backend.generate(["<bos> a bb", "ccc"], s, adapter=str(tmp_path))
    requests, params, lora = backend.llm.calls[0]  # type: ignore[attr-defined]
    assert requests == [{"prompt_token_ids": [15, 11, 12]}, {"prompt_token_ids": [13]}]  # as rendered: no BOS added
    assert [(p["n"], p["max_tokens"]) for p in params] == [(1, 5), (2, 9)] and lora == ("adapter-1", 1, str(tmp_path))
    assert [len(c) for c in out] == [1, 2]
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 32}))
    with pytest.raises(ValueError, match="rank 32 .* max_lora_rank=16: raise the platform's defaults.vllm.max_lora_rank"):
        backend.generate(["a"], s[0], adapter=str(tmp_path))
    with pytest.raises(ValueError, match=r"1 of 2 requests need more than max_model_len=40 tokens \(longest: a 1-token prompt \+ max_new_tokens 40\)"):
        backend.generate(["a", "b"], [SamplingConfig(max_new_tokens=39), SamplingConfig(max_new_tokens=40)])
    merged = make_backend("vllm", "m", engine=engine, lora=False)
    assert "enable_lora" not in merged.llm.kwargs  # type: ignore[attr-defined]
    assert make_backend("vllm", "m").llm.kwargs["max_model_len"] is None  # type: ignore[attr-defined]
