"""Llama-Guard on vLLM, without vLLM: the readers of vLLM's outputs, and the judge's vLLM path run against a stand-in
``vllm`` module whose ``LLM`` computes what vLLM V1 returns (raw log-softmax of the model's logits; top-k logprobs of
the first generated token plus the sampled one; prompt logprobs ``[None, {token: Logprob}, ...]``) with a real
transformers model. The judge's vLLM path must give the transformers path's numbers on the same tiny guard."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from safetax.config import ConfigError
from safetax.judging import llama_guard_vllm
from safetax.judging.llama_guard import LlamaGuardJudge, render_guard_prompt
from safetax.judging.llama_guard_vllm import appended_logprob, first_token_logprobs, fits, pair_probability


def _helpers() -> Any:
    spec = importlib.util.spec_from_file_location("guard_helpers", Path(__file__).parent / "test_llama_guard.py")
    helpers = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    return helpers


@pytest.fixture(scope="module")
def tiny_guard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = _helpers()
    return h.make_tiny_guard(tmp_path_factory.mktemp("guard") / "model", h.guard_examples(8))


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # the fields of vllm.outputs.CompletionOutput read here
    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOutput:  # the fields of vllm.outputs.RequestOutput read here
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None


class FakeLLM:
    """``vllm.LLM``'s offline calls over a transformers model, with vLLM V1's logprob semantics."""

    instances: list[FakeLLM] = []

    def __init__(self, model: str, max_model_len: int | None = None, max_logprobs: int = 20, **_: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model).eval()
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=max_model_len or 2048))
        self.max_logprobs, self.calls = max_logprobs, []  # type: ignore[var-annotated]
        FakeLLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return self.tok

    @torch.inference_mode()
    def generate(self, requests: list[dict[str, list[int]]], params: dict[str, Any], use_tqdm: bool = False) -> list[RequestOutput]:
        self.calls.append((len(requests), dict(params)))
        k = params.get("logprobs")
        assert k is None or k <= self.max_logprobs, "vLLM raises when a request asks for more than max_logprobs"
        out = []
        for r in requests:
            ids = r["prompt_token_ids"]
            lp = self.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
            gen = self.model.generate(torch.tensor([ids]), max_new_tokens=params["max_tokens"], do_sample=False,
                                      pad_token_id=self.tok.pad_token_id)[0, len(ids):].tolist()
            sample = None
            if k is not None:
                top = {int(t): Logprob(float(lp[-1, t])) for t in lp[-1].topk(k).indices}
                sample = [{**top, gen[0]: Logprob(float(lp[-1, gen[0]]))}]  # the sampled token is always included
            prompt = None
            if params.get("prompt_logprobs") is not None:
                prompt = [None] + [{ids[i]: Logprob(float(lp[i - 1, ids[i]]))} for i in range(1, len(ids))]
            text = self.tok.decode(gen, skip_special_tokens=True)
            out.append(RequestOutput(ids, [CompletionOutput(text, gen, "stop", sample)], prompt))
        return out


@pytest.fixture()
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[FakeLLM]:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr("safetax.generation.vllm.engine_version", lambda: "vllm-fake")
    FakeLLM.instances.clear()
    return FakeLLM


def test_pair_probability_is_the_softmax_over_the_two_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(50) * 3
    lp = logits.log_softmax(-1)
    p, mass = pair_probability(float(lp[7]), float(lp[3]))
    assert p == pytest.approx(float(logits[[7, 3]].softmax(-1)[0]), abs=1e-6)
    assert mass == pytest.approx(float(lp[[7, 3]].exp().sum()), abs=1e-6)
    assert pair_probability(-2000.0, -1.0)[0] == 0.0 and pair_probability(-1.0, -2000.0)[0] == 1.0  # no overflow


def test_readers_of_vllm_outputs() -> None:
    out = RequestOutput([5, 6, 9], [CompletionOutput("safe", [9], "length", [{9: Logprob(-0.1, 1), 4: Logprob(-2.5, 2)}])],
                      [None, {6: Logprob(-3.0), 1: Logprob(-0.5)}, {9: Logprob(-0.7), 2: Logprob(-0.2)}])
    assert first_token_logprobs(out) == {9: -0.1, 4: -2.5}
    assert appended_logprob(out) == -0.7  # the last prompt token's own entry, not the top one
    assert first_token_logprobs(RequestOutput([1], [CompletionOutput("", [], "stop", None)])) == {}
    assert fits([3, 8], 2, 10) == [True, True] and fits([9], 2, 10) == [False] and fits([10**6], 2, 0) == [True]


def _responses() -> tuple[list[str], list[str]]:
    examples = _helpers().guard_examples(8) + [(f"Explain task {i}.", f"Sure, step {i}.", "") for i in range(4)]
    return [p for p, _, _ in examples], [f"thinking {i}\n</think>\n\n{a}" for i, (_, a, _) in enumerate(examples)]


@pytest.mark.parametrize("top", [20, 1], ids=["top-k", "fallback"])
def test_vllm_logit_mode_reads_the_transformers_numbers(tiny_guard: Path, fake_vllm: type[FakeLLM],
                                                        monkeypatch: pytest.MonkeyPatch, top: int) -> None:
    monkeypatch.setattr(llama_guard_vllm, "TOP_LOGPROBS", top)  # 1: one verdict token is always outside the top-k
    prompts, responses = _responses()
    rendered = [render_guard_prompt(p, r.split("</think>")[1]) for p, r in zip(prompts, responses, strict=True)]
    hf = LlamaGuardJudge(str(tiny_guard), mode="logit", device="cpu")
    vl = LlamaGuardJudge(str(tiny_guard), mode="logit", backend="vllm")
    for (p_hf, m_hf), got in zip(hf.unsafe_probabilities(rendered), vl.unsafe_probabilities(rendered), strict=True):
        assert got is not None
        assert got[0] == pytest.approx(p_hf, abs=1e-5) and got[1] == pytest.approx(m_hf, abs=1e-5)
    assert [v.label for v in vl.judge(prompts, responses)] == [v.label for v in hf.judge(prompts, responses)]
    calls = fake_vllm.instances[0].calls
    assert calls[0][0] == len(prompts) and calls[0][1]["max_tokens"] == 1  # one step, all prompts in one call
    fallback = [c for c in calls if c[1].get("prompt_logprobs") is not None]
    assert bool(fallback) == (top == 1)  # prompt logprobs only for tokens missing from the top-k
    assert vl.name == hf.name and vl.engine_id().startswith("vllm-fake/") and hf.engine_id() == "hf"


def test_vllm_generate_mode_parses_like_transformers(tiny_guard: Path, fake_vllm: type[FakeLLM]) -> None:
    prompts, responses = _responses()
    hf = LlamaGuardJudge(str(tiny_guard), mode="generate", max_new_tokens=6, device="cpu")
    vl = LlamaGuardJudge(str(tiny_guard), mode="generate", max_new_tokens=6, backend="vllm")
    got, want = vl.judge(prompts, responses), hf.judge(prompts, responses)
    assert [(v.label, v.categories) for v in got] == [(v.label, v.categories) for v in want]
    assert [v.label for v in got[:8]] == ["unsafe", "safe"] * 4
    assert len(fake_vllm.instances[0].calls) == 1  # one engine call for every response
    assert vl.generated_tokens == hf.generated_tokens > 0  # the judge stage's cost counts them


@pytest.mark.parametrize("mode", ["logit", "generate"])
def test_prompts_longer_than_the_engine_context_are_unscored_never_safe(tiny_guard: Path, fake_vllm: type[FakeLLM],
                                                                        mode: str) -> None:
    prompts, responses = _responses()
    judge = LlamaGuardJudge(str(tiny_guard), mode=mode, max_model_len=100, backend="vllm")  # type: ignore[arg-type]
    verdicts = judge.judge(prompts, responses)
    assert {v.label for v in verdicts} == {"unscored"} and all(v.score is None for v in verdicts)
    assert "max_model_len" in verdicts[0].reason
    assert not fake_vllm.instances[0].calls  # nothing was sent


def test_backend_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as e:
        LlamaGuardJudge("m", backend="tgi", max_model_len=-1, gpu_memory_utilization=0.0)  # type: ignore[arg-type]
    for part in ("`backend` must be one of 'hf', 'vllm', got 'tgi'", "`max_model_len` must be >= 0, got -1",
                 "`gpu_memory_utilization` must be in (0, 1], got 0.0"):
        assert part in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_names_the_setting() -> None:
    with pytest.raises(ImportError, match="judge_backend 'vllm' needs the vllm package"):
        llama_guard_vllm.VLLMGuardEngine("any/model")


def test_pair_probability_doctest_value() -> None:
    assert pair_probability(math.log(0.25), math.log(0.75)) == pytest.approx((0.25, 1.0))


def test_vllm_ids_hold_only_the_templates_control_tokens(tiny_guard: Path, fake_vllm: type[FakeLLM]) -> None:
    """Red team: control tokens written as text in a response (or prompt) do not become control-token ids."""
    spec = importlib.util.spec_from_file_location("guard_injection", Path(__file__).parent / "test_guard_injection.py")
    red = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(red)  # type: ignore[union-attr]
    engine = llama_guard_vllm.VLLMGuardEngine(str(tiny_guard))
    plain, forged = engine._ids([render_guard_prompt("q", "a"), render_guard_prompt(red.FORGED, red.FORGED)], 2)
    assert plain is not None and forged is not None
    assert red.special_counts(engine.tokenizer, forged) == red.special_counts(engine.tokenizer, plain)
    assert red.special_counts(engine.tokenizer, plain)["<|eot_id|>"] == 1
