"""The evaluation engine's run parameters (backend, batch, GPUs, shards, cache, seed): one check for the alignment
plan and the audit plan, so a typo fails the run's first CPU task, before any checkpoint is claimed or any GPU pod
starts, naming the parameter and what it allows.

>>> c = Checks("run")
>>> check_engine(EngineParams(generation_backend="vlm", generate_gpus="two", generation_cache="Off"), c)
>>> for e in c.errors: print(e)
`generation_backend` must be one of 'hf', 'vllm', got 'vlm'
`generate_gpus` must be a whole number of GPUs >= 0, e.g. "1", got 'two'
`generation_cache` must be "" (the store's cache), "off" (exactly) or a root URI (a local path or s3://bucket/prefix), got 'Off'
"""

from __future__ import annotations

from dataclasses import dataclass

from safetax.config import Checks

BACKENDS = ("hf", "vllm")
GPU_PARAMS = ("generate_gpus", "judge_gpus")
_OFF_LOOKALIKES = {"off", "none", "no", "false", "disabled", "disable", "0"}


@dataclass(frozen=True)
class EngineParams:
    """What every evaluation chain of a run is given besides its model and eval sets (the pipelines' names)."""

    generation_backend: str = "hf"
    generation_batch_size: int = 32
    tensor_parallel_size: int = 1
    generate_gpus: int | str = 1
    judge_gpus: int | str = 1
    eval_shards: int | float = 1
    generation_cache: str = ""
    seed: int | float = 42


def gpu_count(c: Checks, name: str, value: object) -> int:
    """A GPU-count parameter (KFP passes them as strings: "1") as an int; a failure recorded in ``c`` (and 0) else."""
    try:
        n = int(str(value).strip()) if not isinstance(value, (bool, float)) else -1
    except ValueError:
        n = -1
    if n < 0:
        c.fail(name, value, "a whole number of GPUs >= 0, e.g. \"1\"")
    return max(n, 0)


def _whole(value: object) -> object:
    """KFP may hand whole numbers over as floats (2.0): those as ints, anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_engine(e: EngineParams, c: Checks, prompts: int = 0) -> None:
    """Record every problem of ``e`` in ``c``; ``prompts`` (the eval sets' prompt count, 0 = unknown) bounds the
    shard count."""
    from safetax.shards import check_count
    from safetax.store import StoreError, parse_store_uri

    c.one_of("generation_backend", e.generation_backend, BACKENDS)
    for name in ("generation_batch_size", "tensor_parallel_size"):
        value = _whole(getattr(e, name))
        if not _is_int(value) or value < 1:
            c.fail(name, getattr(e, name), "a whole number >= 1")
    generate_gpus = gpu_count(c, "generate_gpus", e.generate_gpus)
    gpu_count(c, "judge_gpus", e.judge_gpus)
    tp = _whole(e.tensor_parallel_size)
    if e.generation_backend == "vllm" and _is_int(tp) and generate_gpus and tp > generate_gpus:
        c.fail("tensor_parallel_size", tp, f"at most generate_gpus ({generate_gpus}): vLLM splits one model over "
                                           "that many GPUs of the generate pod")
    try:
        shards = check_count(_whole(e.eval_shards))
        if prompts and shards > prompts:
            c.fail("eval_shards", shards, f"at most the {prompts} prompts of the eval sets (a shard holds every n-th prompt)")
    except ValueError as err:
        c.errors.append(str(err))
    seed = _whole(e.seed)
    if not _is_int(seed) or seed < 0:
        c.fail("seed", e.seed, "a whole number >= 0")
    cache = e.generation_cache
    allowed = '"" (the store\'s cache), "off" (exactly) or a root URI (a local path or s3://bucket/prefix)'
    if not isinstance(cache, str) or cache != "off" and cache.strip().lower() in _OFF_LOOKALIKES:
        c.fail("generation_cache", cache, allowed)
    elif cache not in ("", "off"):
        try:
            parse_store_uri(cache, "generation_cache")
        except StoreError as err:
            c.errors.append(str(err))
