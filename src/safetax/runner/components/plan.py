from kfp import dsl
from kfp.dsl import Dataset, Output

from safetax.runner.components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan(base_model_uri: str, refusal_data_uri: str, eval_sets: list, methods: list, epochs: int, seed: int, max_length: int,
         judge_name: str, judge_model: str, judge_mode: str, judge_scope: str, equivalence_model: str, safety_max_new_tokens: int,
         reasoning_samples: int, reasoning_temperature: float, reasoning_top_p: float, reasoning_max_new_tokens: int,
         generation_batch_size: int, generation_backend: str, tensor_parallel_size: int, store_uri: str, analysis_k: int,
         rpsa_corpus: dict, rpsa_corpus_size: int, rpsa_keep: str, rpsa_validate: bool, fisher_estimator: str,
         fisher_tokens_per_sequence: int, train_gpus: str, generate_gpus: str,
         judge_gpus: str, gate_thresholds: dict, run_plan: Output[Dataset], protocol: str = "seeds",
         train_nodes: int = 1, eval_shards: int = 1, generation_cache: str = "", safety_temperature: float = -1.0,
         safety_top_p: float = -1.0, trainjob_platform: dict = {}) -> list:
    """Validate the whole run on a CPU (every method, eval set, judge, threshold, the generation cache, that every
    model and data URI is reachable, the refusal rows, and the methods against the base model's config.json) after
    filling in what `protocol` sets, resolve defaults once, and return one item per method for the training loop."""
    from pathlib import Path

    from safetax.runid import run_id_of
    from safetax.stages import plan as stage
    from safetax.stages.runtime import RunContext, stage_run
    from safetax.timing import setup_logging

    setup_logging()
    params = stage.AlignmentParams(**{k: v for k, v in locals().items() if k in stage.AlignmentParams.__dataclass_fields__})
    with stage_run("plan", RunContext(run_id_of(run_plan.uri), "", base_model_uri), Path(run_plan.path)):
        return stage.plan(params, Path(run_plan.path))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def base_items(eval_shards: int) -> list:
    """The base model's evaluation chains: one (item "", as before shards), or one per shard (`base/shard-i-of-n`).

    A task of its own because KFP's local runner loops only over a task's single `Output` (plan's is the methods)."""
    from safetax.shards import items

    n = int(eval_shards)
    return items(["base"], n) if n > 1 else [""]
