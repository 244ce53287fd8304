"""Pipeline parameters for the demo: the seeds' method space, scaled to the 0.5M-parameter demo model."""

from __future__ import annotations

from typing import Any

from safetax.demo import DemoAssets

# The seeds' learning rate (5e-5) is for 7B-14B models; the tiny demo model (trained from
# scratch at 3e-3) needs larger steps to learn refusals from 64 rows in a few epochs. Rank,
# alpha, targets, weight decay and LoRA's longer schedule are the seeds'. The rates were
# picked so both methods reach substantial refusal, not to favour either (see the README).
DEMO_METHODS: list[dict[str, Any]] = [
    # OrthoMerge-both of the last epoch (LoRA paper, sec. 5.3) adds two candidates (lambda 1 and 1.25).
    {"method": "lora", "name": "lora-r4-mlp", "lora_rank": 4, "lora_alpha": 16, "target_modules": "mlp", "learning_rate": 1e-3, "epochs": 8,
     "merge": "ortho-both", "merge_k": 16, "merge_lambdas": [1.0, 1.25]},
    {"method": "full", "name": "full", "learning_rate": 3e-4, "epochs": 3},
    # RPSA on the same LoRA (paper: k adapted every 25 steps over a window of 20; the demo's run has ~64 steps).
    {"method": "rpsa", "name": "rpsa-lora-r4", "rpsa_base": "lora", "lora_rank": 4, "lora_alpha": 16, "target_modules": "mlp",
     "learning_rate": 1e-3, "epochs": 8, "update_every": 4, "conflict_window": 4, "warmup_steps": 0},
]


def demo_params(
    assets: DemoAssets,
    methods: list[dict[str, Any]] | None = None,
    safety_limit: int = 0,
    reasoning_limit: int = 0,
    max_new_tokens: int = 96,
) -> dict[str, Any]:
    """Alignment-pipeline parameters for the demo assets; limits of 0 take every eval row."""
    return {
        "base_model_uri": str(assets.model_dir),
        "refusal_data_uri": str(assets.refusal_path),
        "eval_sets": [
            {"name": "demo-harmful", "kind": "safety", "uri": str(assets.safety_eval_path), "limit": safety_limit},
            {"name": "demo-arith", "kind": "reasoning", "uri": str(assets.reasoning_eval_path), "limit": reasoning_limit},
        ],
        "methods": methods if methods is not None else DEMO_METHODS,
        "max_length": 256,
        # Greedy everywhere: the demo model is small and the table should be reproducible.
        "safety_max_new_tokens": max_new_tokens,
        "reasoning_samples": 1,
        "reasoning_temperature": 0.0,
        "reasoning_max_new_tokens": max_new_tokens,
        "generation_batch_size": 64,
        # RPSA's reference corpus: the demo model's own answers to 32 arithmetic problems.
        "rpsa_corpus": {"name": "demo-arith", "kind": "reasoning", "uri": str(assets.reasoning_eval_path)},
        "rpsa_corpus_size": 32,
    }


def upload_demo_inputs(params: dict[str, Any], assets: DemoAssets, store: str) -> dict[str, Any]:
    """Publish the demo's model and data under ``<store>/inputs/demo-<version>/`` and point the parameters there,
    so the run reads its inputs through the store as a cluster run would."""
    from safetax.demo import DEMO_VERSION
    from safetax.store import publish

    root = f"{store.rstrip('/')}/inputs/demo-{DEMO_VERSION}"
    publish(assets.model_dir, f"{root}/model")
    data = assets.root / "data"
    if not data.is_dir():  # the data files as one published directory
        import shutil

        tmp = assets.root / ".data-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path in (assets.refusal_path, assets.safety_eval_path, assets.reasoning_eval_path):
            shutil.copy(path, tmp / path.name)
        tmp.rename(data)
    publish(data, f"{root}/data")
    uri = {str(p): f"{root}/data/{p.name}" for p in (assets.refusal_path, assets.safety_eval_path, assets.reasoning_eval_path)}
    return params | {
        "base_model_uri": f"{root}/model",
        "refusal_data_uri": uri[params["refusal_data_uri"]],
        "eval_sets": [e | {"uri": uri[e["uri"]]} for e in params["eval_sets"]],
        "rpsa_corpus": params["rpsa_corpus"] | {"uri": uri[params["rpsa_corpus"]["uri"]]},
    }
