"""Protocol presets: run a paper's evaluation and training protocol, not a neighbour of it.

A protocol fills in every alignment-pipeline parameter the user left unset; a parameter the user set
explicitly always wins. ``seeds`` is the project's defaults (the values the pipeline had before
protocols existed), ``lora-paper`` is Xue & Mirzasoleiman (2025), ``rpsa-paper`` is the RPSA
submission. :func:`resolve_protocol` is pure: the plan step and any stage can call it on the
parameters they hold and get the same answer.

What "unset" means (:data:`UNSET`): a scalar parameter equal to its sentinel ("" for text, 0 for
counts and budgets, -1 for the four sampling floats and for ``fisher_tokens_per_sequence``, where 0
is meaningful). Inside ``eval_sets`` and ``methods`` a key is unset when it is absent from the dict;
the run-level ``epochs`` > 0 counts as every method setting its epochs. Parameters absent from the
dict passed in are left absent.

>>> r = resolve_protocol("rpsa-paper", {"judge_name": "", "reasoning_samples": 0,
...                                     "eval_sets": [{"benchmark": "wildjailbreak"}]})
>>> r["judge_name"], r["reasoning_samples"], r["eval_sets"][0]["sample"]
('llama-guard', 1, 250)
>>> resolve_protocol("rpsa-paper", {"judge_name": "refusal"})["judge_name"]  # explicit wins
'refusal'
"""

from __future__ import annotations

import re
from typing import Any

from safetax.config import ConfigError

PROTOCOLS = ("seeds", "lora-paper", "rpsa-paper")
DEFAULT_PROTOCOL = "seeds"

# The sentinel of each scalar parameter a protocol may set: equal to it = "not set by the user".
UNSET: dict[str, Any] = {
    "judge_name": "", "judge_model": "", "judge_mode": "", "judge_scope": "",
    "safety_max_new_tokens": 0, "reasoning_samples": 0, "reasoning_max_new_tokens": 0,
    "reasoning_temperature": -1.0, "reasoning_top_p": -1.0,  # 0 is greedy / invalid: -1 is unambiguous
    "safety_temperature": -1.0, "safety_top_p": -1.0,
    "analysis_k": 0, "rpsa_corpus_size": 0,
    "fisher_estimator": "", "fisher_tokens_per_sequence": -1,  # 0 = every token, a real choice
}

# Scalars per protocol. ``seeds`` is exactly the pipeline's defaults before protocols.
_SCALARS: dict[str, dict[str, Any]] = {
    "seeds": {
        "judge_name": "refusal", "judge_model": "meta-llama/Llama-Guard-3-8B", "judge_mode": "logit", "judge_scope": "answer",
        "safety_max_new_tokens": 1024, "safety_temperature": 0.0, "safety_top_p": 1.0,  # greedy safety answers
        "reasoning_samples": 8, "reasoning_temperature": 0.6, "reasoning_top_p": 0.95,
        "reasoning_max_new_tokens": 32768, "analysis_k": 16, "rpsa_corpus_size": 0,
        "fisher_estimator": "sequence", "fisher_tokens_per_sequence": 32,
    },
    "lora-paper": {
        # §4.2/§4.3 and A.2: Llama-Guard-3-8B, verdict = "safe"/"unsafe" in its generated text (read as the first
        # line, which gives the paper's substring rule on every output in Llama Guard's format).
        "judge_name": "llama-guard", "judge_model": "meta-llama/Llama-Guard-3-8B", "judge_mode": "generate",
        "judge_scope": "answer",  # A.2 passes "the answer" to the judge; whether the trace is cut is not stated
        # A.2 gives no budget for the greedy safety answers; A.3/A.4's 32,768 is the paper's only one. A shorter
        # budget cuts R1 answers inside <think> and counts them against safety.
        "safety_max_new_tokens": 32768,
        "safety_temperature": 0.0, "safety_top_p": 1.0,  # A.2: "we sample the answer using greedy decoding"
        "reasoning_samples": 8,  # §4.2: pass@1 over n = 8 samples
        "reasoning_temperature": 0.6, "reasoning_top_p": 0.95,  # A.3 (A.4 states temperature 0.6 only)
        "reasoning_max_new_tokens": 32768,  # A.3, A.4
        "analysis_k": 16,  # §5.1: top-16 singular vectors (U_16, V_16)
        "rpsa_corpus_size": 0, "fisher_estimator": "sequence", "fisher_tokens_per_sequence": 32,  # no RPSA in this paper
    },
    "rpsa-paper": {
        # RPSA names no safety judge (§4.2.1 reports ASR only); the LoRA paper's judge (A.2), which RPSA compares to.
        "judge_name": "llama-guard", "judge_model": "meta-llama/Llama-Guard-3-8B", "judge_mode": "generate",
        "judge_scope": "answer",
        # §4.2.1: "follow the recommended configurations in Guo et al. (2025)": 32,768 tokens, temperature 0.6, top-p 0.95.
        "safety_max_new_tokens": 32768, "reasoning_max_new_tokens": 32768,
        "reasoning_temperature": 0.6, "reasoning_top_p": 0.95,
        # §4.2.1 "Evaluation": "All evaluations ... evaluated with a temperature of 0.6 and top-p sampling of 0.95": the
        # safety answers (StrongREJECT, WildJailbreak) are sampled too, unlike the LoRA paper's greedy ones (A.2).
        "safety_temperature": 0.6, "safety_top_p": 0.95,
        # Table 1's scores are whole counts over one response each (AIME 53.33 = 16/30, GPQA Main 53.79 = 241/448,
        # HE+ 78.05 = 128/164): one sample per problem.
        "reasoning_samples": 1,
        "analysis_k": 16,  # not in RPSA; the LoRA paper's §5.1 value for the weight analysis
        "rpsa_corpus_size": 100,  # §4.1: 100 MATH-500 problems
        # §3.1 Eq. 4: squared per-token gradients; 32 sampled positions per answer estimate it without bias (0 = exact).
        "fisher_estimator": "token", "fisher_tokens_per_sequence": 32,
    },
}

# Eval-set keys per protocol and benchmark ("*" = every benchmark); plain files get none.
_EVAL_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "seeds": {},
    "lora-paper": {"*": {"prompt_style": "lora-paper"}},  # A.3 (GPQA); other benchmarks fall back, see benchmarks.styles
    "rpsa-paper": {
        "*": {"prompt_style": "rpsa-paper"},  # appendix B
        # §4.2.1 / Table 1: 250 WildJailbreak prompts (WJ 49.60 = 124/250); the subset is unpublished, the seed is App. A's.
        "wildjailbreak": {"sample": 250, "sample_seed": 42},
    },
}

_LORA = {"lora_rank": 4, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "mlp"}
# Method keys per protocol and family (full | lora; an RPSA method takes its rpsa_base's). ``batch_size`` is global.
_METHODS: dict[str, dict[str, dict[str, Any]]] = {
    "seeds": {},
    "lora-paper": {
        # A.5: lr 5e-5, weight decay 1e-4 for all; full 5 epochs, 7B 4 GPUs x 2 = 8, 14B 8 x 1 = 8.
        "full": {"learning_rate": 5e-5, "weight_decay": 1e-4, "epochs": 5, "batch_size": 8},
        # A.5: LoRA 10 epochs, alpha 16, dropout 0.05; 7B 2 GPUs x 2 = 4 (14B: 4 x 2 = 8, see _batch_for); §4.3: r = 4 on the MLP.
        "lora": {"learning_rate": 5e-5, "weight_decay": 1e-4, "epochs": 10, "batch_size": 4, **_LORA},
    },
    "rpsa-paper": {
        # Appendix A, Table 2 (same for the baselines and RPSA): full lr 1e-5, 3 epochs, 4 H100 x 2 per device = 8;
        # LoRA lr 1e-4, 6 epochs, 2 H100 x 2 = 4; weight decay 1e-4, clipping 1.0, cosine with 100 warmup steps, seed 42.
        "full": {"learning_rate": 1e-5, "epochs": 3, "batch_size": 8, "weight_decay": 1e-4, "grad_clip": 1.0, "warmup_steps": 100},
        "lora": {"learning_rate": 1e-4, "epochs": 6, "batch_size": 4, "weight_decay": 1e-4, "grad_clip": 1.0, "warmup_steps": 100,
                 **_LORA},  # Table 2 LoRA config and §4.2: r 4, alpha 16, dropout 0.05, MLP only
        # §4.2: W = 20, k recomputed every 25 steps; §3.3: k = 0.5 until the window is full.
        "rpsa": {"update_every": 25, "conflict_window": 20, "frozen_ratio": 0.5, "dynamic_ratio": True},
    },
}


def check_protocol(protocol: str) -> str:
    """``protocol`` if known, else a ConfigError naming the allowed values."""
    if protocol not in PROTOCOLS:
        raise ConfigError("protocol", [f"`protocol` must be one of {', '.join(repr(p) for p in PROTOCOLS)}, got {protocol!r}"])
    return protocol


def _batch_for(protocol: str, family: str, base_model_uri: str) -> dict[str, Any]:
    """LoRA paper A.5: the 14B LoRA runs used 4 GPUs x 2 = 8 (the 7B ones 4); told apart by the model's name."""
    if protocol == "lora-paper" and family == "lora" and re.search(r"14b", base_model_uri, re.IGNORECASE):
        return {"batch_size": 8}
    return {}


def _family(method: dict[str, Any]) -> str:
    kind = str(method.get("method", "lora"))
    return str(method.get("rpsa_base", "lora")) if kind == "rpsa" else kind


def resolve_method(protocol: str, method: dict[str, Any], run_epochs: int = 0, base_model_uri: str = "") -> dict[str, Any]:
    """One method config with the protocol's keys for its family filled in where the config has none.

    >>> resolve_method("rpsa-paper", {"method": "rpsa", "rpsa_base": "full", "epochs": 1})["learning_rate"]
    1e-05
    >>> resolve_method("rpsa-paper", {"method": "rpsa", "rpsa_base": "full", "epochs": 1})["epochs"]
    1
    """
    family = _family(method)
    table = _METHODS[check_protocol(protocol)]
    if str(method.get("method")) == "rpsa" and "rpsa" not in table:
        return dict(method)  # a paper without RPSA sets nothing: TrainConfig's RPSA defaults are the RPSA paper's
    preset = dict(table.get(family, {})) | _batch_for(protocol, family, base_model_uri)
    if str(method.get("method")) == "rpsa":
        preset |= table.get("rpsa", {})
        if method.get("dynamic_ratio") is False:  # a constant k (sec. 4.3): the dynamic-k settings do not apply
            preset = {k: v for k, v in preset.items() if k not in ("update_every", "conflict_window", "frozen_ratio")}
    if run_epochs:  # the run-level `epochs` parameter is explicit: it beats the preset
        preset.pop("epochs", None)
    return preset | dict(method)


def resolve_eval_set(protocol: str, eval_set: dict[str, Any]) -> dict[str, Any]:
    """One eval-set spec with the protocol's keys filled in where the spec has none (benchmarks only).

    A spec with ``limit`` gets no ``sample`` (the two exclude each other; the user's ``limit`` wins).
    """
    table = _EVAL_SETS[check_protocol(protocol)]
    bench = str(eval_set.get("benchmark") or "")
    if not bench:
        return dict(eval_set)
    preset = dict(table.get("*", {})) | table.get(bench, {})
    if eval_set.get("limit"):
        preset.pop("sample", None)
        preset.pop("sample_seed", None)
    return preset | dict(eval_set)


def resolve_protocol(protocol: str, params: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters with every unset one filled in from ``protocol``; explicit values win.

    Args:
        protocol: one of :data:`PROTOCOLS`.
        params: pipeline parameter name -> value; scalars at their :data:`UNSET` sentinel and keys missing from
            an eval set or method dict are "not set by the user". Other parameters pass through unchanged.

    Returns:
        A new dict with the same keys; ``eval_sets``, ``rpsa_corpus`` and ``methods`` (when present) resolved item by item.

    Raises:
        ConfigError: ``protocol`` is unknown (the message lists the allowed values).
    """
    scalars = _SCALARS[check_protocol(protocol)]
    out = dict(params)
    for name, sentinel in UNSET.items():
        if name in out and out[name] == sentinel and not isinstance(out[name], bool):
            out[name] = scalars[name]
    if isinstance(out.get("eval_sets"), list):
        out["eval_sets"] = [resolve_eval_set(protocol, e) if isinstance(e, dict) else e for e in out["eval_sets"]]
    if isinstance(out.get("rpsa_corpus"), dict):  # RPSA's Fisher corpus is answered in the protocol's prompts too
        out["rpsa_corpus"] = resolve_eval_set(protocol, out["rpsa_corpus"])
    if isinstance(out.get("methods"), list):
        epochs, base = int(out.get("epochs") or 0), str(out.get("base_model_uri") or "")
        out["methods"] = [resolve_method(protocol, m, epochs, base) if isinstance(m, dict) else m for m in out["methods"]]
    return out
