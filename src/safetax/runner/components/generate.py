from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from safetax.runner.components._image import VLLM_IMAGE


@dsl.component(base_image=VLLM_IMAGE, install_kfp_package=False)
def generate(
    model_uri: str,
    eval_sets: list,
    safety_max_new_tokens: int,
    reasoning_samples: int,
    reasoning_temperature: float,
    reasoning_top_p: float,
    reasoning_max_new_tokens: int,
    batch_size: int,
    backend: str,
    tensor_parallel_size: int,
    seed: int,
    gpus: str,
    store_uri: str,
    generations: Output[Dataset],
    metrics: Output[Metrics],
    checkpoints: Optional[Input[Model]] = None,
    merged: Optional[Input[Model]] = None,
    name: str = "",
    audit: str = "",
    protocol: str = "seeds",
    target: str = "",
    generation_cache: str = "",
    engine: dict = {},
    safety_temperature: float = 0.0,
    safety_top_p: float = 1.0,
):
    """Responses of the base model, or of every epoch checkpoint (`checkpoints`) and merge candidate (`merged`), or of
    the one named `target` (the alignment pipeline evaluates each checkpoint in a chain of its own); a `target` ending
    in `/shard-i-of-n` generates only that evaluation shard's prompts (run parameter eval_shards).

    Budgets, sampling and eval-set settings left unset (0, -1, absent) come from `protocol`; safety answers are greedy
    unless `safety_temperature` / `safety_top_p` say otherwise (the alignment pipeline passes -1: the protocol's;
    the audit pipeline passes nothing: greedy). Generations are reused
    from the cache (`generation_cache`: "" = the store's, "off", or a root URI) and a retried task resumes from its
    last finished chunk. `engine`: the platform's engine settings (vLLM max_model_len, gpu_memory_utilization,
    lora_serving), compiled in. The audit pipeline
    evaluates `model_uri` under the label `name` and pushes metrics as audit `audit`."""
    import time
    from pathlib import Path

    from safetax.data.eval_sets import EvalSet
    from safetax.generation.backends import EngineSettings
    from safetax.generation.base import SamplingConfig
    from safetax.protocols import resolve_protocol
    from safetax.stages import generate as stage
    from safetax.artifacts import read_cost
    from safetax.stages.runtime import RunContext, check_gpus, record_cost, reuse_uris, stage_run
    from safetax.runid import run_id_of
    from safetax.shards import parse
    from safetax.timing import setup_logging

    setup_logging()
    only, shard = parse(target)
    gpus = int(gpus)  # a string parameter: KFP resolves accelerator counts from strings only
    check_gpus("generate", gpus)
    r = resolve_protocol(protocol, {"eval_sets": eval_sets, "safety_max_new_tokens": safety_max_new_tokens,
                                    "safety_temperature": safety_temperature, "safety_top_p": safety_top_p,
                                    "reasoning_samples": reasoning_samples, "reasoning_temperature": reasoning_temperature,
                                    "reasoning_top_p": reasoning_top_p, "reasoning_max_new_tokens": reasoning_max_new_tokens})
    eval_sets, safety_max_new_tokens, reasoning_samples = r["eval_sets"], r["safety_max_new_tokens"], r["reasoning_samples"]
    reasoning_temperature, reasoning_top_p = r["reasoning_temperature"], r["reasoning_top_p"]
    reasoning_max_new_tokens = r["reasoning_max_new_tokens"]
    safety_temperature, safety_top_p = r["safety_temperature"], r["safety_top_p"]
    cfg = stage.GenerateConfig(
        model_uri=model_uri,
        eval_sets=tuple(EvalSet.from_dict(e) for e in eval_sets),
        safety_sampling=SamplingConfig(temperature=safety_temperature, top_p=safety_top_p,
                                       max_new_tokens=safety_max_new_tokens, seed=seed),
        reasoning_sampling=SamplingConfig(
            temperature=reasoning_temperature, top_p=reasoning_top_p, n=reasoning_samples,
            max_new_tokens=reasoning_max_new_tokens, seed=seed,
        ),
        batch_size=batch_size,
        backend=backend,
        tensor_parallel_size=tensor_parallel_size,
        engine=EngineSettings.from_dict(engine),
        chunk_prompts=stage.chunk_prompts_setting(),  # $SAFETAX_CHUNK_PROMPTS, else 256
    )
    train_dir = Path(checkpoints.path) if checkpoints is not None else None
    method = stage.targets_of(model_uri, train_dir)[0].method if train_dir is not None else (name or "base")
    ctx = RunContext(run_id_of(generations.uri), store_uri, model_uri, audit=audit)
    cache_uri, partial_uri = reuse_uris(ctx, "generate", target or name or method, generation_cache)
    with stage_run("generate", ctx, Path(generations.path), method, part=target) as tel:
        start = time.perf_counter()
        n = stage.run(cfg, Path(generations.path), train_dir, Path(merged.path) if merged is not None else None, name or "base",
                      only=only, shard=shard, cache_uri=cache_uri, partial_uri=partial_uri)
        tel.samples_per_second("generation", n / (time.perf_counter() - start))
        record_cost(tel, read_cost(Path(generations.path)))
    for name, value in tel.kfp_metrics().items():
        metrics.log_metric(name, value)
