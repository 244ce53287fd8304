"""Stage `generate`: responses of the base model or of every checkpoint of a training run.

Every prompt's samples are looked up in the generation cache first (:mod:`safetax.gencache`: a hit is reused, a
miss is generated and stored), and the stage writes what it has finished in chunks (:mod:`safetax.resume`): a
rerun into the same chunk area (a KFP retry after a preemption) makes only the chunks that are missing. Its
``cost.json`` counts generated, resumed and cached samples, tokens, tokens/s and GPU-seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from safetax.artifacts import CHECKPOINTS as MANIFEST
from safetax.artifacts import (
    EVAL_SETS, GENERATIONS, TARGETS, GenerationRow, StageCost, Target, pod_gpus, write_cost,
    read_checkpoints, write_eval_sets, write_generations, write_targets,
)
from safetax.benchmarks.registry import Item
from safetax.config import Checks, ConfigError
from safetax.data.chat import render_prompt
from safetax.data.eval_sets import EvalSet, load_eval_set
from safetax.gencache import Cache, completions_from_json, completions_to_json, generation_key, model_identity
from safetax.generation.backends import BACKENDS, EngineSettings, engine_version, make_backend  # noqa: F401 - re-exported
from safetax.generation.base import Completion, SamplingConfig
from safetax.generation.serving import TargetServer, describe, expected_tokens
from safetax.records import BASE, Generation
from safetax.resume import ChunkArea, chunk_size, chunks, fingerprint
from safetax.shards import Shard
from safetax.store import atomic_dir, input_dir, local_model_dir, resolve_model
from safetax.timing import timed

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["BACKENDS", "EVAL_SETS", "GENERATIONS", "TARGETS", "GenerateConfig", "Target", "make_backend", "run", "targets_of"]
CHECKPOINTS = TARGETS  # the targets file's former name, still used by tests/stages/test_llm_equivalence.py


CHUNK_PROMPTS_ENV = "SAFETAX_CHUNK_PROMPTS"


def chunk_prompts_setting(env: dict[str, str] | None = None) -> int:
    """Prompts per chunk from ``$SAFETAX_CHUNK_PROMPTS`` (a platform file's ``env``), else 256.

    >>> chunk_prompts_setting({}), chunk_prompts_setting({"SAFETAX_CHUNK_PROMPTS": "32"})
    (256, 32)
    """
    raw = (os.environ if env is None else env).get(CHUNK_PROMPTS_ENV, "").strip()
    if not raw:
        return 256
    if not raw.isdigit():
        raise ValueError(f"{CHUNK_PROMPTS_ENV}: {raw!r} is not allowed; a whole number of prompts per chunk (0 = one chunk per model)")
    return int(raw)


@dataclass(frozen=True)
class GenerateConfig:
    model_uri: str  # the base model
    eval_sets: tuple[EvalSet, ...]
    # Seeds: safety greedy (rpsa-paper samples it at 0.6 / 0.95); reasoning n=8 samples at temperature 0.6, top_p 0.95
    # (pass@1 over them). An eval set's own `samples` / `max_new_tokens` (when set) replace n / max_new_tokens for that
    # set; `samples` > 1 needs its kind's sampling to be sampled (temperature > 0).
    safety_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=1024))
    reasoning_sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=32768)
    )
    backend: str = "hf"  # hf (transformers, any device) | vllm (GPU clusters)
    batch_size: int = 32  # prompts per forward pass (hf backend; vLLM schedules all prompts itself)
    tensor_parallel_size: int = 1  # GPUs per model (vllm backend)
    # Prompts per chunk: the unit of sample-level resume (a kill loses at most one chunk per pod) and, on vLLM,
    # the prompts of one LLM.generate call (larger fills the GPU better at the end of a call). 0 = one chunk per
    # checkpoint (no resume inside a checkpoint). The pipelines take it from $SAFETAX_CHUNK_PROMPTS (platform env).
    chunk_prompts: int = 256
    # The platform's engine settings (vLLM max_model_len, gpu_memory_utilization, max_lora_rank, lora_serving, ...).
    engine: EngineSettings = field(default_factory=EngineSettings)

    def __post_init__(self) -> None:
        c = Checks("GenerateConfig")
        c.one_of("backend", self.backend, BACKENDS)
        c.positive("batch_size", self.batch_size)
        c.positive("tensor_parallel_size", self.tensor_parallel_size)
        c.non_negative("chunk_prompts", self.chunk_prompts)
        if not self.eval_sets:
            c.fail("eval_sets", self.eval_sets, "at least one eval set")
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            c.fail("eval_sets", names, "sets with distinct names")
        for es in self.eval_sets:
            try:
                self.sampling_for(es)
            except ConfigError as e:
                c.fail(f"eval_sets[{es.name}]", {"samples": es.samples, "max_new_tokens": es.max_new_tokens},
                       f"settings valid for its sampling ({e})")
        c.raise_if_any()

    def sampling_for(self, es: EvalSet) -> SamplingConfig:
        """The set's sampling: its kind's, with the set's own ``samples`` and ``max_new_tokens`` where given."""
        base = self.reasoning_sampling if es.kind == "reasoning" else self.safety_sampling
        return dataclasses.replace(base, n=es.samples or base.n, max_new_tokens=es.max_new_tokens or base.max_new_tokens)


def targets_of(model_ref: str, train_dir: Path | None, name: str = BASE, fetch: bool = False, only: str = "") -> list[Target]:
    """The models to evaluate: the base model (labelled ``name``: an audit labels each checkpoint), or
    every checkpoint of a training (or merge) output directory (only the one named ``only``, when given).

    With a run store only ``checkpoints.json`` is read, unless ``fetch``: then the targets' files are
    downloaded and their paths exist (without a store they always do)."""
    if train_dir is None:
        return [Target(name, name, 0, model_ref, None)]
    manifest = read_checkpoints(train_dir)
    entries = [e for e in manifest.entries if not only or str(e.ref) == only]
    if fetch:
        train_dir = input_dir(train_dir, "checkpoints", only=[MANIFEST, *(e.name for e in entries)])
    out = []
    for e in entries:
        path, method = str(train_dir / e.name), e.ref.variant if e.ref.merge else manifest.label
        if manifest.kind == "adapter":
            out.append(Target(str(e.ref), method, e.ref.epoch, model_ref, path))
        else:
            out.append(Target(str(e.ref), method, e.ref.epoch, path, None))
    return out


@dataclass(frozen=True)
class Request:
    """One prompt of one eval set, with the sampling it gets."""

    es: EvalSet
    item: Item
    version: str  # the benchmark's VERSION ("file" for a plain eval file)
    sampling: SamplingConfig


def run(cfg: GenerateConfig, out_dir: Path, train_dir: Path | None = None, merged_dir: Path | None = None,
        name: str = BASE, *, cache_uri: str = "", partial_uri: str = "", only: str = "", shard: Shard | None = None) -> int:
    """Write ``generations.jsonl`` (one record per sample), ``targets.json``, ``eval_sets.json`` and ``cost.json``;
    return the record count.

    Evaluates the base model (labelled ``name``), or every checkpoint of ``train_dir`` and every merge candidate
    of ``merged_dir`` (``only``: just the one of that name, e.g. ``lora-r4/epoch-2``). ``cache_uri``: the generation cache's root ("" = no cache; see
    :func:`safetax.gencache.default_root`). ``partial_uri``: where finished chunks go ("" = ``<out_dir>/partial``;
    give a run-store URI for a retry in another pod to find them). ``shard``: generate only that evaluation shard's
    prompts (every n-th of all eval sets' prompts: :mod:`safetax.shards`).
    """
    start = time.perf_counter()
    # With the cache on, a hub id is loaded from its snapshot directory: the commit the cache keys name (gencache).
    model_ref = str(local_model_dir(cfg.model_uri, "model_uri")) if cache_uri else resolve_model(cfg.model_uri, "model_uri")
    loaded = {es.name: load_eval_set(es) for es in cfg.eval_sets}  # validates every file first
    # The files of every checkpoint evaluated in this pod (all of the method's, or the one named) are fetched.
    targets = targets_of(model_ref, train_dir, name, fetch=True, only=only)
    targets += targets_of(model_ref, merged_dir, fetch=True, only=only) if merged_dir is not None else []
    if only and len(targets) != 1:
        raise ValueError(f"target {only!r}: {'not among' if not targets else 'more than once in'} the checkpoints and merge candidates")
    requests = spread([[Request(es, it, bench.VERSION if bench else "file", cfg.sampling_for(es)) for it in loaded[es.name][0]]
                       for es in cfg.eval_sets for bench in [loaded[es.name][1]]])
    if shard is not None:
        total, requests = len(requests), shard.take(requests)
        if not requests:
            raise ValueError(f"eval_shards: shard {shard} has no prompts (the eval sets hold {total}); use at most {total} shards")
    area = ChunkArea(partial_uri or str(out_dir / "partial"), _fingerprint(cfg, targets, requests))
    gen = _Generator(cfg, Cache(cache_uri, "generations"), area, adapters=any(t.adapter is not None for t in targets))
    try:
        with timed(f"generate for {len(targets)} model(s)"):
            rows = [row for i, t in enumerate(targets) for row in gen.target(i, t, requests)]
    finally:
        gen.server.release()  # the engine and any merged copies
    cost = StageCost("generate", len(rows), gen.counts["generated"], gen.counts["resumed"], gen.counts["cached"],
                     gen.counts["tokens"], time.perf_counter() - start, pod_gpus(), area.earlier_seconds())
    with atomic_dir(out_dir) as tmp:
        write_generations(tmp, rows)
        write_targets(tmp, targets)
        write_eval_sets(tmp, cfg.eval_sets)  # how score re-reads the benchmarks
        write_cost(tmp, cost)
    area.clear()
    served = {k: v for k, v in describe(gen.server.decisions).items() if v}
    log.info("wrote %d generations; %s%s", len(rows), cost.summary(), f"; served: {served}" if served else "")
    return len(rows)


def spread(groups: list[list[T]]) -> list[T]:
    """The items of every group, each group spread evenly over the whole order (item i of a group of n at (i + 0.5) / n):
    every chunk of a checkpoint's requests then holds its share of every eval set (long and short outputs mixed in
    each engine call, and a chunk's cost about the same as any other's).

    >>> spread([["a1", "a2", "a3", "a4"], ["b1", "b2"]])
    ['a1', 'b1', 'a2', 'a3', 'b2', 'a4']
    """
    keyed = [((i + 0.5) / len(g), k, x) for k, g in enumerate(groups) for i, x in enumerate(g)]
    return [x for *_, x in sorted(keyed, key=lambda t: (t[0], t[1]))]


class _Generator:
    """Makes one target's rows chunk by chunk: from the chunk area (resume), the cache, or the backend."""

    def __init__(self, cfg: GenerateConfig, cache: Cache, area: ChunkArea, adapters: bool = True) -> None:
        self.cfg, self.cache, self.area = cfg, cache, area
        self.counts: Counter[str] = Counter()
        self.version = engine_version(cfg.backend) if cache.enabled else ""
        # One engine in memory at a time; adapters share their base, or are merged first (lora_serving).
        scratch = Path("/scratch") if Path("/scratch").is_dir() else Path(tempfile.gettempdir())  # the pod's scratch volume
        self.server = TargetServer(cfg.backend, cfg.engine, batch_size=cfg.batch_size, tensor_parallel_size=cfg.tensor_parallel_size,
                                   scratch=Path(tempfile.mkdtemp(prefix="safetax-merged-", dir=scratch)),
                                   factory=lambda *a, **kw: make_backend(*a, **kw),  # this module's, looked up per call
                                   adapters=adapters)
        self._expected = 0.0
        self._tokenizers: dict[str, Any] = {}

    def render(self, model: str, texts: list[str]) -> list[str]:
        """Chat-template prompts with the model's tokenizer (loaded alone: a resumed or cached chunk loads no weights)."""
        if model not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[model] = AutoTokenizer.from_pretrained(model)
        return [render_prompt(self._tokenizers[model], t) for t in texts]

    def target(self, index: int, t: Target, requests: list[Request]) -> Iterator[GenerationRow]:
        identity = model_identity(t.model, t.adapter) if self.cache.enabled else ""
        self._expected = expected_tokens([r.sampling for r in requests])  # lora_serving auto's expected tokens
        # A LoRA target merged first for serving (bf16 weights) generates other text than its adapter form: other keys.
        merged = self.cache.enabled and self.server.serving(t.model, t.adapter, self._expected) == "merge"
        version = f"{self.version}/merged" if merged else self.version
        with timed(f"generate {t.checkpoint}"):
            for c, chunk in enumerate(chunks(requests, chunk_size(len(requests), self.cfg.chunk_prompts))):
                chunk_name = f"{index:03d}-{c:05d}"
                if self.area.has(chunk_name):
                    rows = [GenerationRow.from_dict(d) for d in self.area.read(chunk_name)]
                    self.counts["resumed"] += len(rows)
                else:
                    rows = self._chunk(t, chunk, identity, version)
                    self.area.write(chunk_name, [r.to_dict() for r in rows])
                yield from rows

    def _chunk(self, t: Target, chunk: list[Request], identity: str, version: str) -> list[GenerationRow]:
        prompts = self.render(t.model, [r.item.prompt for r in chunk])
        keys = [generation_key(identity, p, r.sampling, self.cfg.backend, version) for p, r in zip(prompts, chunk)]
        found = self.cache.get_many(keys) if self.cache.enabled else [None] * len(chunk)
        outs: list[list[Completion]] = [completions_from_json(v) if v is not None else [] for v in found]
        todo = [i for i, v in enumerate(found) if v is None]
        self.counts["cached"] += sum(len(o) for o in outs)
        if todo:
            made = self.server.generate(t.model, t.adapter, [prompts[i] for i in todo], [chunk[i].sampling for i in todo],
                                        expected=self._expected)
            for i, comps in zip(todo, made, strict=True):
                outs[i] = comps
                self.cache.put(keys[i], completions_to_json(comps))
                self.counts["generated"] += len(comps)
                self.counts["tokens"] += sum(c.n_tokens for c in comps)
        return [row for r, comps in zip(chunk, outs, strict=True) for row in _rows(t, r, comps)]


def _rows(t: Target, r: Request, comps: list[Completion]) -> list[GenerationRow]:
    # Judges need the prompt of safety and over-refusal items; reasoning rows leave it out, so
    # GPQA's questions (never to be stored in plain text) do not land in the artifact store.
    prompt = r.item.prompt if r.es.kind != "reasoning" else ""
    return [GenerationRow(Generation(t.checkpoint, r.es.name, r.es.kind, r.item.id, k, c.text, c.n_tokens, c.finished),  # type: ignore[arg-type]
                          prompt, r.item.reference, r.item.meta, r.version) for k, c in enumerate(comps)]


def _fingerprint(cfg: GenerateConfig, targets: list[Target], requests: list[Request]) -> str:
    """What every chunk's content depends on; the prompts enter as a digest (never written out). Targets enter by
    name and the base model by its URI, not by local paths (a retried pod may fetch them elsewhere)."""
    prompts = hashlib.sha256("\0".join(f"{r.es.name}\0{r.item.id}\0{r.item.prompt}" for r in requests).encode()).hexdigest()
    return fingerprint({"model_uri": cfg.model_uri, "eval_sets": [dataclasses.asdict(es) for es in cfg.eval_sets],
                        "targets": [(x.checkpoint, x.method, x.epoch, x.adapter is not None) for x in targets],
                        "sampling": [dataclasses.asdict(cfg.sampling_for(es)) for es in cfg.eval_sets], "prompts": prompts,
                        "backend": cfg.backend, "batch_size": cfg.batch_size, "chunk_prompts": cfg.chunk_prompts})

