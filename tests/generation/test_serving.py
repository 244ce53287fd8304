"""LoRA serving: the cost rule, merge-first (against PEFT's merge_and_unload), and the target server, which keeps
one engine at a time. Engines are transformers backends here (vLLM is not installable on a CPU); the server's
choices are the ones it makes for vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from safetax.generation.backends import EngineSettings, make_backend
from safetax.generation.base import SamplingConfig
from safetax.generation.hf import HFBackend
from safetax.generation.serving import (
    TargetServer, choose_serving, describe, expected_tokens, merge_adapter, serving_seconds, weight_bytes,
)

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft on transformers 5
GB = 10**9
PROMPTS = ["Compute 1+2.", "Compute 12+30-7.", "Compute 5."]


def test_expected_tokens_follow_samples_budgets_and_the_estimates_share() -> None:
    from safetax.estimate import BUDGET_FRACTION

    reasoning = SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=32768)
    safety = SamplingConfig(max_new_tokens=1024)
    assert expected_tokens([reasoning] * 30 + [safety] * 100) == pytest.approx((30 * 8 * 32768 + 100 * 1024) * BUDGET_FRACTION)
    assert expected_tokens([safety], budget_fraction=1.0) == 1024


def test_the_rule_merges_when_the_adapters_extra_time_exceeds_the_merge() -> None:
    e = EngineSettings(adapter_slowdown=0.5, merge_bytes_per_second=1e9, engine_start_seconds=60, tokens_per_second=5000)
    # 7B in bf16 (15 GB): merge = 2 x 15 s + 60 s = 90 s; the adapter costs T/5000 extra seconds at a 50 % loss.
    adapter_s, merged_s = serving_seconds(1e6, 15 * GB, e)
    assert (adapter_s, merged_s) == (pytest.approx(400.0), pytest.approx(290.0))
    break_even = 90 * 5000  # tokens where T/2500 = T/5000 + 90
    assert choose_serving("a", break_even * 1.01, 15 * GB, e) == "merge"
    assert choose_serving("a", break_even * 0.99, 15 * GB, e) == "adapter"
    # One checkpoint under the seeds' protocol (~20M tokens) always merges; a 64-prompt smoke test never does.
    assert choose_serving("a", 20e6, 15 * GB, e) == "merge" and choose_serving("a", 64 * 1024 * 0.06, 15 * GB, e) == "adapter"
    # A small measured loss keeps adapters longer: at 5 % the adapter's extra time is T/5000 x 0.05/0.95 s
    # (1M tokens: 10.5 s < 90 s), and the seeds' checkpoint (20M: 210 s) still merges.
    small = EngineSettings(adapter_slowdown=0.05, engine_start_seconds=60)
    assert choose_serving("a", 1e6, 15 * GB, small) == "adapter" and choose_serving("a", 20e6, 15 * GB, small) == "merge"
    # Explicit settings win; a base model is always the base.
    assert choose_serving("a", 1.0, 15 * GB, EngineSettings(lora_serving="merge")) == "merge"
    assert choose_serving("a", 1e12, 15 * GB, EngineSettings(lora_serving="adapter")) == "adapter"
    assert choose_serving(None, 1e12, 15 * GB, EngineSettings(lora_serving="merge")) == "base"


def _adapter(base: Path, out: Path, **lora: Any) -> Path:
    """A PEFT adapter with random A and B (non-zero update) on the q and up projections."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "up_proj"], init_lora_weights=False, **lora))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _adapter(tiny_model, tmp_path_factory.mktemp("lora") / "adapter")


def test_merge_adapter_equals_peft_merge_and_unload(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(base, max_shard_size="60KB")  # names across shards
    for f in tiny_model.iterdir():
        if "token" in f.name or f.name.endswith(".jinja"):
            (base / f.name).write_bytes(f.read_bytes())
    assert len(list(base.glob("model*.safetensors"))) > 1
    adapter = _adapter(base, tmp_path / "adapter", rank_pattern={"up_proj": 2}, alpha_pattern={"up_proj": 3})
    out = merge_adapter(base, adapter, tmp_path / "merged")
    expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload().state_dict()
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    changed = [k for k in expected if not torch.equal(got[k], AutoModelForCausalLM.from_pretrained(base).state_dict()[k])]
    assert len(changed) == 2 * 4  # q_proj and up_proj of 4 layers
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, atol=1e-6, rtol=0)
    assert (out / "tokenizer_config.json").is_file() and (out / "model.safetensors.index.json").is_file()
    assert weight_bytes(out) == weight_bytes(base) and not (tmp_path / "merged.partial").exists()


@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`:UserWarning")
def test_merge_refuses_embedding_adapters(tiny_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, target_modules=["embed_tokens", "q_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path / "emb")
    with pytest.raises(ValueError, match="adapts embeddings: merge-first cannot apply it; use lora_serving: adapter"):
        merge_adapter(tiny_model, tmp_path / "emb", tmp_path / "out")


class Engines:
    """A ``make_backend`` that builds transformers engines and records each build (model, lora)."""

    def __init__(self) -> None:
        self.built: list[tuple[str, bool]] = []

    def __call__(self, backend: str, model: str, batch_size: int, tp: int, engine: EngineSettings, lora: bool = True) -> HFBackend:
        self.built.append((Path(model).name, lora))
        return make_backend("hf", model, batch_size, tp, engine, lora=lora)  # type: ignore[return-value]


def _texts(out: list[list[Any]]) -> list[str]:
    return [c[0].text for c in out]


def test_merged_first_generates_what_the_adapter_generates(tiny_model: Path, adapter: Path, tmp_path: Path) -> None:
    greedy = SamplingConfig(max_new_tokens=12)
    reference = HFBackend(str(tiny_model))
    prompts = [reference.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                       add_generation_prompt=True) for p in PROMPTS]
    want = _texts(reference.generate(prompts, greedy, adapter=str(adapter)))
    assert want != _texts(reference.generate(prompts, greedy))  # the adapter changes the outputs
    engines = Engines()
    server = TargetServer("vllm", EngineSettings(lora_serving="merge"), scratch=tmp_path / "scratch", factory=engines)
    assert _texts(server.generate(str(tiny_model), str(adapter), prompts, greedy)) == want
    assert engines.built == [(engines.built[0][0], False)] and engines.built[0][0].startswith("merged-")  # no LoRA slots
    server.generate(str(tiny_model), str(adapter), prompts[:1], greedy)  # merged once, engine kept
    assert len(engines.built) == 1 and len(list((tmp_path / "scratch").iterdir())) == 1
    server.release()
    assert not (tmp_path / "scratch").exists()


def test_one_engine_at_a_time_and_one_decision_per_target(tiny_model: Path, adapter: Path, tmp_path: Path) -> None:
    greedy = SamplingConfig(max_new_tokens=4)
    engines = Engines()
    server = TargetServer("vllm", EngineSettings(engine_start_seconds=60), scratch=tmp_path / "scratch", factory=engines)  # auto
    model, small = str(tiny_model), weight_bytes(tiny_model)
    server.generate(model, None, PROMPTS, greedy)
    server.generate(model, str(adapter), PROMPTS, greedy, expected=10.0)  # too few tokens to pay for a merge
    assert engines.built == [(tiny_model.name, True)]  # the base engine serves the adapter: one load
    assert server.serving(model, str(adapter), 1e12) == "adapter"  # decided once, kept
    other = _adapter(tiny_model, tmp_path / "other")
    tokens = 10 * 5000 * (60 + 2 * small / 1e9)  # well past the break-even
    server.generate(model, str(other), PROMPTS, greedy, expected=tokens)
    assert engines.built[-1][1] is False and len(engines.built) == 2  # merged: a new engine, the old one released
    assert describe(server.decisions) == {"base": 1, "adapter": 1, "merge": 1}


def test_transformers_backend_applies_adapters_as_they_are(tiny_model: Path, adapter: Path, tmp_path: Path) -> None:
    engines = Engines()
    server = TargetServer("hf", EngineSettings(lora_serving="merge"), scratch=tmp_path / "scratch", factory=engines)
    server.generate(str(tiny_model), str(adapter), PROMPTS, SamplingConfig(max_new_tokens=2), expected=1e12)
    assert server.decisions == {(str(tiny_model), str(adapter)): "adapter"}
    assert engines.built == [(tiny_model.name, False)] and not (tmp_path / "scratch").exists()


def test_base_only_server_starts_vllm_without_lora(tiny_model: Path, tmp_path: Path) -> None:
    # A pod that evaluates only the base model (the fan-out's base chain) has no adapter to share the engine with.
    engines = Engines()
    server = TargetServer("vllm", EngineSettings(), scratch=tmp_path / "scratch", factory=engines, adapters=False)
    server.generate(str(tiny_model), None, PROMPTS, SamplingConfig(max_new_tokens=2))
    assert engines.built == [(tiny_model.name, False)]
