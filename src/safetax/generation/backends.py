"""Generation backends by name, and the engine settings a platform file gives them.

:class:`EngineSettings` is plain data from the platform file (``defaults.vllm`` and ``defaults.judge_backend``,
see :mod:`safetax.platform`): the pipeline compiles it into the generate and judge components as a constant
dict (:meth:`EngineSettings.to_dict` / :meth:`EngineSettings.from_dict`), so a stage never reads the platform
file itself. Nothing here imports torch, transformers or vLLM: the compiler loads this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from safetax.config import Checks, ConfigError

if TYPE_CHECKING:
    from safetax.generation.base import GenerationBackend

BACKENDS = ("hf", "vllm")
LORA_SERVING = ("auto", "adapter", "merge")
# vLLM's LoRAConfig accepts only these max_lora_rank values (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_TOKENS_PER_SECOND = 5000.0  # safetax.estimate.TOKENS_PER_SECOND (a 7-8B model on one H100/H200, long outputs)


@dataclass(frozen=True)
class EngineSettings:
    """How the generate and judge stages run their engines on a platform.

    The lora_serving rule's constants (``adapter_slowdown``, ``merge_bytes_per_second``, ``engine_start_seconds``)
    are stated defaults, not measurements: measure them on the platform's GPU with ``bench/bench_lora_serving.py``
    and set them in the platform file (see :func:`safetax.generation.serving.choose_serving`).
    """

    max_model_len: int = 0  # tokens of prompt + response vLLM reserves per sequence; 0 = the model's own context
    gpu_memory_utilization: float = 0.9  # share of the GPU's memory vLLM may take (weights + KV cache)
    max_lora_rank: int = 64  # largest adapter rank vLLM serves (one of VLLM_LORA_RANKS)
    lora_serving: str = "auto"  # adapter (LoRA requests on the base) | merge (merged first) | auto (the cost rule)
    judge_backend: str = "hf"  # Llama-Guard on transformers (hf) or on vLLM (vllm)
    judge_max_model_len: int = 0  # the judge engine's max_model_len (vllm judge); 0 = the guard model's own
    # vLLM reports up to ~50 % lower throughput when a request carries a LoRA adapter (punica kernels): the share
    # of throughput lost, the rule's adapter cost. Measure it: bench/bench_lora_serving.py prints it.
    adapter_slowdown: float = 0.5
    # Bytes/s of the merge's disk traffic (read the base, write the merged weights): 1 GB/s is a network volume or a
    # local SSD under load.
    merge_bytes_per_second: float = 1e9
    # An engine start (weights to GPU, CUDA graphs) that merging costs and adapter serving does not: 0 with one
    # checkpoint per pod (the per-checkpoint fan-out: either way the pod starts one engine); the measured start
    # time when a pod evaluates several checkpoints of one base.
    engine_start_seconds: float = 0.0
    # Output tokens/s of one replica (the platform's `tokens_per_second`; 0 there = DEFAULT_TOKENS_PER_SECOND).
    tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND

    def __post_init__(self) -> None:
        c = Checks("engine settings (platform defaults.vllm)")
        for key in ("max_model_len", "judge_max_model_len"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                c.fail(key, value, "an integer >= 0 (tokens; 0 = the model's own context length)")
        util = self.gpu_memory_utilization
        if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1:
            c.fail("gpu_memory_utilization", util, "a number in (0, 1]")
        if isinstance(self.max_lora_rank, bool) or self.max_lora_rank not in VLLM_LORA_RANKS:
            c.fail("max_lora_rank", self.max_lora_rank, "one of " + ", ".join(map(str, VLLM_LORA_RANKS)) + " (vLLM's choices)")
        c.one_of("lora_serving", self.lora_serving, LORA_SERVING)
        c.one_of("judge_backend", self.judge_backend, BACKENDS)
        slow = self.adapter_slowdown
        if isinstance(slow, bool) or not isinstance(slow, (int, float)) or not 0 <= slow < 1:
            c.fail("adapter_slowdown", slow, "a number in [0, 1) (the share of throughput an adapter costs)")
        for key in ("merge_bytes_per_second", "tokens_per_second"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                c.fail(key, value, "a number > 0")
        start = self.engine_start_seconds
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not start >= 0:
            c.fail("engine_start_seconds", start, "a number >= 0 (seconds)")
        c.raise_if_any()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EngineSettings:
        """From :meth:`to_dict`'s dict (or a compiled constant); unknown keys are errors naming the known ones.

        >>> EngineSettings.from_dict({"max_model_len": 40960.0}).max_model_len  # a KFP dict parameter's float
        40960
        """
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            c = Checks("engine settings (platform defaults.vllm)")
            for key in unknown:
                c.fail(key, "(unknown key)", "absent; known keys: " + ", ".join(sorted(known)))
            c.raise_if_any()
        for key in ("max_model_len", "judge_max_model_len", "max_lora_rank"):  # integers that crossed KFP as floats
            if isinstance(d.get(key), float) and d[key].is_integer():
                d[key] = int(d[key])
        return cls(**d)


PLATFORM_KEYS = ("judge_backend", "tokens_per_second")  # EngineSettings fields that are platform defaults keys of their own


def check_platform_engine(c: Checks, vllm: Any, judge_backend: str, tokens_per_second: Any) -> None:
    """Record the problems of a platform file's ``defaults.vllm`` mapping in ``c`` (keys named ``defaults.vllm.<key>``);
    ``judge_backend`` and ``tokens_per_second`` are checked by the platform itself and skipped here when invalid."""
    allowed = sorted(f.name for f in fields(EngineSettings) if f.name not in PLATFORM_KEYS)
    if not isinstance(vllm, dict):
        c.fail("defaults.vllm", vllm, "a mapping with the keys " + ", ".join(allowed))
        return
    for key in vllm:
        if key in PLATFORM_KEYS:
            c.fail(f"defaults.vllm.{key}", vllm[key], f"absent here: it is the key defaults.{key}")
        elif key not in allowed:
            c.fail(f"defaults.vllm.{key}", "(unknown key)", "one of " + ", ".join(allowed))
    tps_ok = not isinstance(tokens_per_second, bool) and isinstance(tokens_per_second, (int, float)) and tokens_per_second >= 0
    if any(key not in allowed for key in vllm) or judge_backend not in BACKENDS or not tps_ok:
        return  # reported by their own checks
    try:
        EngineSettings(**vllm, judge_backend=judge_backend, tokens_per_second=tokens_per_second or DEFAULT_TOKENS_PER_SECOND)
    except ConfigError as e:
        c.errors += [m.replace("`", "`defaults.vllm.", 1) for m in e.errors]


def make_backend(backend: str, model: str, batch_size: int = 32, tensor_parallel_size: int = 1,
                 engine: EngineSettings | None = None, lora: bool = True) -> GenerationBackend:
    """A generation backend by name (vLLM is imported only when asked for), with the platform's engine settings.

    ``lora``: whether the engine must serve LoRA adapters (vLLM reserves their memory and kernels only then; a
    merged model needs none). The transformers backend attaches adapters on demand either way."""
    if backend not in BACKENDS:
        raise ValueError(f"generation backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if backend == "vllm":
        from safetax.generation.vllm import VLLMBackend

        e = engine or EngineSettings()
        return VLLMBackend(model, tensor_parallel_size=tensor_parallel_size, max_lora_rank=e.max_lora_rank if lora else 0,
                           gpu_memory_utilization=e.gpu_memory_utilization, max_model_len=e.max_model_len or None)
    from safetax.generation.hf import HFBackend

    return HFBackend(model, batch_size=batch_size)


def engine_version(backend: str) -> str:
    """The backend's version string (the cache key's), without loading a model."""
    if backend == "vllm":
        from safetax.generation.vllm import engine_version as version
    else:
        from safetax.generation.hf import engine_version as version
    return version()
