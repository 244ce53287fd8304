"""Serving LoRA checkpoints on vLLM: as LoRA requests on the base model, or merged into the base first.

vLLM reports up to ~50 % lower throughput for requests that carry a LoRA adapter; merging costs disk traffic
and a second engine start instead. The platform's ``lora_serving`` chooses: ``adapter``, ``merge``, or ``auto``,
which decides per target with :func:`choose_serving`'s cost model:

    adapter seconds = T / (R * (1 - s))          merged seconds = T / R + 2 * B / D + S

with T the target's expected generated tokens (:func:`expected_tokens`: prompts x samples x budget x the
estimate's budget share), R the platform's tokens/s, s ``adapter_slowdown``, B the model's weight bytes, D
``merge_bytes_per_second`` (read the base, write the merged copy: 2 passes) and S ``engine_start_seconds`` (an
engine start that adapter serving would not pay: 0 when each checkpoint runs in its own pod, as the per-checkpoint
fan-out does, since either way the pod starts one engine). Merge when the adapter's extra time exceeds the merge's
cost. The constants are stated defaults, to be measured on the platform's GPU with ``bench/bench_lora_serving.py``.

:class:`TargetServer` keeps one engine in memory at a time and merges into a scratch directory (the merge is
:func:`safetax.weights.io.iter_lora_deltas`'s ``W + scale * B @ A``, the merge stage's ``plain`` mode). The
transformers backend always applies adapters as they are (PEFT, no slowdown to speak of).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safetax.generation.backends import EngineSettings, make_backend
from safetax.generation.base import Completion, GenerationBackend, SamplingConfig
from safetax.timing import timed

log = logging.getLogger(__name__)
MERGE_PASSES = 2  # bytes moved per weight byte by merge-first: read the base, write the merged copy
SERVINGS = ("base", "adapter", "merge")


def expected_tokens(samplings: Sequence[SamplingConfig], budget_fraction: float | None = None) -> float:
    """Generated tokens a target's requests are expected to take: samples x budget x the mean share of the budget
    a response uses (:data:`safetax.estimate.BUDGET_FRACTION` unless given).

    >>> expected_tokens([SamplingConfig(temperature=0.6, n=8, max_new_tokens=1000)] * 10, budget_fraction=0.5)
    40000.0
    """
    if budget_fraction is None:
        from safetax.estimate import BUDGET_FRACTION as budget_fraction
    return float(sum(s.n * s.max_new_tokens for s in samplings) * budget_fraction)


def serving_seconds(tokens: float, model_bytes: int, e: EngineSettings) -> tuple[float, float]:
    """``(adapter seconds, merged seconds)`` of generating ``tokens`` (the cost model above).

    >>> e = EngineSettings(adapter_slowdown=0.5, merge_bytes_per_second=1e9, engine_start_seconds=60, tokens_per_second=5000)
    >>> serving_seconds(1e6, 15 * 10**9, e)  # 1M tokens of a 7B bf16 model: 400 s vs 200 s + 30 s + 60 s
    (400.0, 290.0)
    """
    adapter = tokens / (e.tokens_per_second * (1 - e.adapter_slowdown))
    merged = tokens / e.tokens_per_second + MERGE_PASSES * model_bytes / e.merge_bytes_per_second + e.engine_start_seconds
    return adapter, merged


def choose_serving(adapter: str | None, tokens: float, model_bytes: int, e: EngineSettings) -> str:
    """``base`` (no adapter), ``adapter`` or ``merge`` for one target, by the platform's ``lora_serving``.

    >>> e = EngineSettings()
    >>> choose_serving("a", 1e6, 15 * 10**9, e), choose_serving("a", 1e4, 15 * 10**9, e), choose_serving(None, 1e9, 1, e)
    ('merge', 'adapter', 'base')
    """
    if adapter is None:
        return "base"
    if e.lora_serving != "auto":
        return e.lora_serving
    adapter_s, merged_s = serving_seconds(tokens, model_bytes, e)
    return "merge" if merged_s < adapter_s else "adapter"


def weight_bytes(model_dir: str | Path) -> int:
    """Bytes of a model directory's safetensors weights (what a merge reads and writes)."""
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``base + adapter`` as a model directory that vLLM and transformers load as it is.

    Every base shard is rewritten with its LoRA-adapted matrices set to ``W + scale * B @ A`` (computed in float32,
    stored in W's dtype, as the merge stage does); every other file (config, tokenizer, shard index) is copied.
    Holds the base's tensors in memory, like the merge stage. Embedding adapters (``lora_embedding_*``) are refused:
    their update is not a matrix product over a Linear weight; serve those as adapters.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from safetax.weights.io import ADAPTER_FILE, iter_lora_deltas, tensor_index

    base, adapter, out = Path(base_dir), Path(adapter_dir), Path(out_dir)
    with safe_open(adapter / ADAPTER_FILE, framework="pt") as f:
        if any("lora_embedding" in k for k in f.keys()):  # noqa: SIM118 - safe_open is not a Mapping
            raise ValueError(f"adapter {adapter} adapts embeddings: merge-first cannot apply it; use lora_serving: adapter")
    index = tensor_index(base)
    shards = {path: load_file(path) for path in sorted({p for p, _ in index.values()})}
    n = 0
    for name, w, dw in iter_lora_deltas(base, adapter, include_embeddings=True):
        shards[index[name][0]][name] = (w.float() + dw.float()).to(w.dtype)
        n += 1
    if n == 0:
        raise ValueError(f"adapter {adapter} changes no weight of {base}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in base.iterdir():
        if path.is_file() and path not in shards:
            shutil.copy2(path, tmp / path.name)
    for path, tensors in shards.items():
        save_file(tensors, tmp / path.name, metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a merge cut short never looks finished
    log.info("merged %d matrices of %s into %s", n, adapter.name, out)
    return out


Factory = Callable[..., GenerationBackend]


class TargetServer:
    """Generates for (model, adapter) targets, one engine in memory at a time.

    On the vLLM backend an adapter target is served as LoRA requests on its base or merged first into
    ``scratch`` (:func:`choose_serving`, decided once per target); a merged target gets an engine without LoRA.
    The transformers backend serves adapters as they are. ``adapters``: whether adapter targets may follow a base
    target in this server (then the base's vLLM engine is started with LoRA on and shared with them; else without
    LoRA, which costs nothing). ``factory`` builds a backend (``make_backend``'s signature; tests pass their own).
    """

    def __init__(self, backend: str, engine: EngineSettings | None = None, *, batch_size: int = 32,
                 tensor_parallel_size: int = 1, scratch: str | Path = "/tmp/safetax-merged", factory: Factory = make_backend,
                 adapters: bool = True) -> None:
        self.backend_name, self.engine, self.adapters = backend, engine or EngineSettings(), adapters
        self.batch_size, self.tensor_parallel_size = batch_size, tensor_parallel_size
        self.scratch, self.factory = Path(scratch), factory
        self.decisions: dict[tuple[str, str | None], str] = {}
        self._loaded: tuple[str, bool] | None = None  # (model directory, serves LoRA)
        self._backend: GenerationBackend | None = None

    def serving(self, model: str, adapter: str | None, tokens: float) -> str:
        """How a target is served (decided on its first call and kept): ``base``, ``adapter`` or ``merge``."""
        key = (model, adapter)
        if key not in self.decisions:
            if adapter is None or self.backend_name != "vllm":
                how = "base" if adapter is None else "adapter"
            else:
                size = weight_bytes(_local(model))
                how = choose_serving(adapter, tokens, size, self.engine)
                a, m = serving_seconds(tokens, size, self.engine)
                log.info("lora_serving=%s for %s: %s (expected %.0f tokens; adapter ~%.0f s, merged ~%.0f s)",
                         self.engine.lora_serving, Path(adapter).name, how, tokens, a, m)
            self.decisions[key] = how
        return self.decisions[key]

    def backend(self, model: str, lora: bool) -> GenerationBackend:
        """The engine for ``model`` (the previous one released first)."""
        if self._backend is None or self._loaded != (model, lora):
            self._backend = None  # release the previous model before loading the next
            gc.collect()  # vLLM frees its GPU memory (and ends its engine process) when the LLM object is collected
            self._backend = self.factory(self.backend_name, model, self.batch_size, self.tensor_parallel_size,
                                         self.engine, lora=lora)
            self._loaded = (model, lora)
        return self._backend

    def merged_dir(self, model: str, adapter: str) -> Path:
        """The merged copy of ``model + adapter`` in the scratch directory (merged on first use)."""
        digest = hashlib.sha256(f"{Path(model).resolve()}\0{Path(adapter).resolve()}".encode()).hexdigest()[:16]
        out = self.scratch / f"merged-{digest}"
        if not (out / "config.json").is_file():
            with timed(f"merge {Path(adapter).name} into its base for serving"):
                merge_adapter(_local(model), adapter, out)
        return out

    def generate(self, model: str, adapter: str | None, prompts: Sequence[str],
                 sampling: SamplingConfig | Sequence[SamplingConfig], expected: float = 0.0) -> list[list[Completion]]:
        """Completions of ``prompts`` by the target; ``expected``: its expected generated tokens (for ``auto``)."""
        how = self.serving(model, adapter, expected)
        if how == "merge":
            assert adapter is not None
            return self.backend(str(self.merged_dir(model, adapter)), lora=False).generate(prompts, sampling)
        lora = self.backend_name == "vllm" and (how == "adapter" or self.adapters and self.engine.lora_serving != "merge")
        return self.backend(model, lora=lora).generate(prompts, sampling, adapter=adapter if how == "adapter" else None)

    def release(self) -> None:
        """Drop the loaded engine and the merged copies."""
        self._backend, self._loaded = None, None
        shutil.rmtree(self.scratch, ignore_errors=True)


def _local(model: str) -> Path:
    """A model's local directory (a hub id is fetched to the HF cache, where the engine would read it anyway)."""
    if Path(model).is_dir():
        return Path(model)
    from safetax.store import local_model_dir

    return local_model_dir(model, "model_uri")


def describe(decisions: dict[tuple[str, str | None], str]) -> dict[str, Any]:
    """Counts of each serving decision (for the stage's log line and cost record)."""
    return {how: sum(v == how for v in decisions.values()) for how in SERVINGS}
