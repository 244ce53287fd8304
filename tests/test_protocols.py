"""Protocol presets: each resolves to its paper's values, explicit parameters win, unknown names fail."""

from __future__ import annotations

from typing import Any

import pytest

from safetax.config import ConfigError
from safetax.data.eval_sets import EvalSet
from safetax.protocols import PROTOCOLS, UNSET, resolve_protocol
from safetax.stages.train import TrainConfig

EVAL_SETS = [{"benchmark": b} for b in ("strongreject", "wildjailbreak", "aime24", "gpqa", "humanevalplus", "mbppplus")]
METHODS = [{"method": "full", "name": "full"}, {"method": "lora", "name": "lora"},
           {"method": "rpsa", "name": "rpsa-full", "rpsa_base": "full"}, {"method": "rpsa", "name": "rpsa-lora", "rpsa_base": "lora"}]


def unset_params(**over: Any) -> dict[str, Any]:
    """Every presettable parameter at its sentinel, plus the lists and the run-level epochs."""
    return dict(UNSET) | {"eval_sets": EVAL_SETS, "methods": METHODS, "epochs": 0, "base_model_uri": "r1-qwen-7b"} | over


def by_name(resolved: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {str(x.get("name") or x.get("benchmark")): x for x in resolved[key]}


def test_seeds_is_the_pipeline_defaults_before_protocols() -> None:
    r = resolve_protocol("seeds", unset_params())
    assert {k: r[k] for k in UNSET} == {  # the alignment pipeline's defaults before `protocol` existed
        "judge_name": "refusal", "judge_model": "meta-llama/Llama-Guard-3-8B", "judge_mode": "logit", "judge_scope": "answer",
        "safety_max_new_tokens": 1024, "safety_temperature": 0.0, "safety_top_p": 1.0,  # greedy safety answers
        "reasoning_samples": 8, "reasoning_temperature": 0.6, "reasoning_top_p": 0.95, "reasoning_max_new_tokens": 32768, "analysis_k": 16, "rpsa_corpus_size": 0, "fisher_estimator": "sequence",
        "fisher_tokens_per_sequence": 32}
    assert r["eval_sets"] == EVAL_SETS and r["methods"] == METHODS  # nothing added


def test_lora_paper_values() -> None:
    r = resolve_protocol("lora-paper", unset_params())
    assert (r["judge_name"], r["judge_mode"], r["judge_scope"]) == ("llama-guard", "generate", "answer")  # A.2
    assert (r["reasoning_samples"], r["reasoning_temperature"], r["reasoning_top_p"]) == (8, 0.6, 0.95)  # sec. 4.2, A.3
    assert r["reasoning_max_new_tokens"] == r["safety_max_new_tokens"] == 32768  # A.3, A.4
    assert (r["safety_temperature"], r["safety_top_p"]) == (0.0, 1.0)  # A.2: greedy decoding
    assert r["analysis_k"] == 16
    assert {e["prompt_style"] for e in r["eval_sets"]} == {"lora-paper"} and not any("sample" in e for e in r["eval_sets"])
    m = by_name(r, "methods")
    assert (m["full"]["epochs"], m["full"]["batch_size"], m["full"]["learning_rate"]) == (5, 8, 5e-5)  # A.5
    assert (m["lora"]["epochs"], m["lora"]["batch_size"], m["lora"]["lora_rank"], m["lora"]["target_modules"]) == (10, 4, 4, "mlp")
    assert (m["lora"]["lora_alpha"], m["lora"]["lora_dropout"], m["lora"]["weight_decay"]) == (16, 0.05, 1e-4)
    assert m["rpsa-full"] == METHODS[2]  # no RPSA in the LoRA paper: nothing set
    fourteen = resolve_protocol("lora-paper", unset_params(base_model_uri="deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"))
    assert by_name(fourteen, "methods")["lora"]["batch_size"] == 8  # A.5: 14B LoRA on 4 GPUs x 2


def test_rpsa_paper_values() -> None:
    r = resolve_protocol("rpsa-paper", unset_params())
    assert (r["reasoning_samples"], r["reasoning_temperature"], r["reasoning_top_p"]) == (1, 0.6, 0.95)
    assert (r["safety_temperature"], r["safety_top_p"]) == (0.6, 0.95)  # sec. 4.2.1: every evaluation is sampled
    assert (r["fisher_estimator"], r["rpsa_corpus_size"]) == ("token", 100)  # Eq. 4; sec. 4.1
    corpus = resolve_protocol("rpsa-paper", {"rpsa_corpus": {"benchmark": "math500"}})["rpsa_corpus"]
    assert corpus == {"benchmark": "math500", "prompt_style": "rpsa-paper"}
    sets = by_name(r, "eval_sets")
    assert (sets["wildjailbreak"]["sample"], sets["wildjailbreak"]["sample_seed"]) == (250, 42)
    assert "sample" not in sets["strongreject"] and {e["prompt_style"] for e in r["eval_sets"]} == {"rpsa-paper"}
    m = by_name(r, "methods")
    assert (m["full"]["learning_rate"], m["full"]["epochs"], m["full"]["batch_size"]) == (1e-5, 3, 8)  # Table 2
    assert (m["lora"]["learning_rate"], m["lora"]["epochs"], m["lora"]["batch_size"]) == (1e-4, 6, 4)
    assert (m["rpsa-full"]["learning_rate"], m["rpsa-lora"]["learning_rate"]) == (1e-5, 1e-4)
    assert (m["rpsa-lora"]["conflict_window"], m["rpsa-lora"]["update_every"], m["rpsa-lora"]["warmup_steps"]) == (20, 25, 100)
    assert "update_every" not in m["lora"]  # RPSA keys only on RPSA methods


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_resolved_specs_are_valid_configs(protocol: str) -> None:
    r = resolve_protocol(protocol, unset_params())
    for e in r["eval_sets"]:
        EvalSet.from_dict(e)
    for m in r["methods"]:
        TrainConfig.from_dict(m)


def test_explicit_values_win() -> None:
    explicit = unset_params(judge_name="refusal", reasoning_samples=4, reasoning_temperature=0.0, fisher_tokens_per_sequence=0,
                            epochs=2,
                            eval_sets=[{"benchmark": "wildjailbreak", "limit": 10}, {"benchmark": "gpqa", "prompt_style": "deepseek"}],
                            methods=[{"method": "lora", "learning_rate": 3e-4, "lora_rank": 64}])
    r = resolve_protocol("rpsa-paper", explicit)
    assert (r["judge_name"], r["reasoning_samples"], r["reasoning_temperature"], r["fisher_tokens_per_sequence"]) == ("refusal", 4, 0.0, 0)
    assert r["judge_mode"] == "generate"  # unset ones still filled
    wj, gpqa = r["eval_sets"]
    assert "sample" not in wj and wj["limit"] == 10 and gpqa["prompt_style"] == "deepseek"
    (m,) = r["methods"]
    assert (m["learning_rate"], m["lora_rank"], m["batch_size"]) == (3e-4, 64, 4)
    assert "epochs" not in m  # the run-level epochs=2 is explicit: plan applies it, the preset does not
    assert explicit["methods"][0] == {"method": "lora", "learning_rate": 3e-4, "lora_rank": 64}  # input untouched


def test_absent_parameters_stay_absent_and_others_pass_through() -> None:
    assert resolve_protocol("lora-paper", {"judge_mode": "", "seed": 7}) == {"judge_mode": "generate", "seed": 7}


def test_unknown_protocol_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="`protocol` must be one of 'seeds', 'lora-paper', 'rpsa-paper', got 'lora'"):
        resolve_protocol("lora", {})


@pytest.mark.parametrize(("protocol", "greedy"), [("seeds", True), ("lora-paper", True), ("rpsa-paper", False)])
def test_safety_sampling_is_a_valid_config_per_protocol(protocol: str, greedy: bool) -> None:
    """Each protocol's safety sampling builds a SamplingConfig; only a sampled one allows several samples per prompt."""
    from safetax.generation.base import SamplingConfig

    r = resolve_protocol(protocol, unset_params())

    def build(n: int) -> SamplingConfig:
        return SamplingConfig(temperature=r["safety_temperature"], top_p=r["safety_top_p"], n=n,
                              max_new_tokens=r["safety_max_new_tokens"], seed=42)

    assert build(1).temperature == (0.0 if greedy else 0.6)
    if greedy:
        with pytest.raises(ConfigError, match="greedy samples are identical"):
            build(4)
    else:
        assert build(4).n == 4


def test_explicit_safety_sampling_wins_over_the_protocol() -> None:
    greedy = resolve_protocol("rpsa-paper", unset_params(safety_temperature=0.0, safety_top_p=1.0))
    assert (greedy["safety_temperature"], greedy["safety_top_p"]) == (0.0, 1.0)
    sampled = resolve_protocol("lora-paper", unset_params(safety_temperature=0.7))
    assert (sampled["safety_temperature"], sampled["safety_top_p"]) == (0.7, 1.0)  # top_p still the protocol's
