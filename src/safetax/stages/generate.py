"""Stage `generate`: responses of the base model or of every checkpoint of a training run."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetax.checkpoints import CheckpointRef
from safetax.config import Checks
from safetax.data.chat import render_prompt
from safetax.benchmarks.registry import Item
from safetax.data.eval_sets import EvalSet, load_eval_set
from safetax.generation.base import GenerationBackend, SamplingConfig
from safetax.records import BASE, Generation, write_jsonl
from safetax.stages.train import MANIFEST, checkpoint_files
from safetax.store import atomic_dir, read_json, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
GENERATIONS = "generations.jsonl"
CHECKPOINTS = "checkpoints.json"
EVAL_SETS = "eval_sets.json"
BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class GenerateConfig:
    model_uri: str  # the base model
    eval_sets: tuple[EvalSet, ...]
    # Seeds: safety greedy; reasoning n=8 samples at temperature 0.6, top_p 0.95 (pass@1 over them).
    safety_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=1024))
    reasoning_sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=32768)
    )
    backend: str = "hf"  # hf (transformers, any device) | vllm (GPU clusters)
    batch_size: int = 32  # prompts per forward pass (hf backend; vLLM schedules all prompts itself)
    tensor_parallel_size: int = 1  # GPUs per model (vllm backend)

    def __post_init__(self) -> None:
        c = Checks("GenerateConfig")
        c.one_of("backend", self.backend, BACKENDS)
        c.positive("batch_size", self.batch_size)
        c.positive("tensor_parallel_size", self.tensor_parallel_size)
        if not self.eval_sets:
            c.fail("eval_sets", self.eval_sets, "at least one eval set")
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            c.fail("eval_sets", names, "sets with distinct names")
        c.raise_if_any()


@dataclass(frozen=True)
class Target:
    """One model to evaluate: the base, or a checkpoint (adapter or full weights)."""

    checkpoint: str
    method: str
    epoch: int
    model: str
    adapter: str | None


def targets_of(model_ref: str, train_dir: Path | None, name: str = BASE, fetch: bool = False) -> list[Target]:
    """The models to evaluate: the base model (labelled ``name``: an audit labels each checkpoint), or
    every checkpoint of a training (or merge) output directory.

    With a run store only ``checkpoints.json`` is read, unless ``fetch``: then every checkpoint's files
    are downloaded and the targets' paths exist (without a store they always do)."""
    if train_dir is None:
        return [Target(name, name, 0, model_ref, None)]
    train_dir = checkpoint_files(train_dir, None if fetch else [])
    manifest = read_json(train_dir / MANIFEST)
    out = []
    for e in manifest["checkpoints"]:
        path = str(train_dir / e["name"])
        method = e.get("method", manifest["label"])  # merge candidates carry their own method name
        name = str(CheckpointRef.of(method, int(e["epoch"])))
        if manifest["kind"] == "adapter":
            out.append(Target(name, method, int(e["epoch"]), model_ref, path))
        else:
            out.append(Target(name, method, int(e["epoch"]), path, None))
    return out


def make_backend(backend: str, model: str, batch_size: int = 32, tensor_parallel_size: int = 1) -> GenerationBackend:
    """A generation backend by name (vLLM is imported only when asked for)."""
    if backend == "vllm":
        from safetax.generation.vllm import VLLMBackend

        return VLLMBackend(model, tensor_parallel_size=tensor_parallel_size)
    from safetax.generation.hf import HFBackend

    return HFBackend(model, batch_size=batch_size)


def run(cfg: GenerateConfig, out_dir: Path, train_dir: Path | None = None, merged_dir: Path | None = None, name: str = BASE) -> int:
    """Write ``generations.jsonl`` (one record per sample) and ``checkpoints.json``; return the record count.

    Evaluates the base model (labelled ``name``), or every checkpoint of ``train_dir`` and every merge
    candidate of ``merged_dir``.
    """
    model_ref = resolve_model(cfg.model_uri, "model_uri")
    loaded = {es.name: load_eval_set(es) for es in cfg.eval_sets}  # validates every file first
    # Every checkpoint of the method is evaluated in this pod, so all of their files are fetched.
    targets = targets_of(model_ref, train_dir, name, fetch=True) + (targets_of(model_ref, merged_dir, fetch=True) if merged_dir is not None else [])
    records: list[dict[str, Any]] = []
    with timed(f"generate for {len(targets)} model(s)"), atomic_dir(out_dir) as tmp:
        current, backend = "", None  # one model in memory at a time; adapters share their base
        for t in targets:
            if backend is None or t.model != current:
                backend = None  # release the previous model before loading the next
                current, backend = t.model, make_backend(cfg.backend, t.model, cfg.batch_size, cfg.tensor_parallel_size)
            with timed(f"generate {t.checkpoint}"):
                for es in cfg.eval_sets:
                    items, bench = loaded[es.name]
                    records += _generate_set(backend, t, es, items, bench.VERSION if bench else "file", cfg)
        write_jsonl(tmp / GENERATIONS, records)
        write_json(tmp / CHECKPOINTS, [asdict(t) for t in targets])
        write_json(tmp / EVAL_SETS, [asdict(es) for es in cfg.eval_sets])  # how score re-reads the benchmarks
    log.info("wrote %d generations", len(records))
    return len(records)


def _generate_set(
    backend: GenerationBackend, t: Target, es: EvalSet, items: list[Item], version: str, cfg: GenerateConfig
) -> list[dict[str, Any]]:
    prompts = [render_prompt(backend.tokenizer, it.prompt) for it in items]
    sampling = cfg.reasoning_sampling if es.kind == "reasoning" else cfg.safety_sampling
    outs = backend.generate(prompts, sampling, adapter=t.adapter)
    rows = []
    for it, comps in zip(items, outs, strict=True):
        for k, comp in enumerate(comps):
            g = Generation(t.checkpoint, es.name, es.kind, it.id, k, comp.text, comp.n_tokens, comp.finished)  # type: ignore[arg-type]
            # Judges need the prompt of safety and over-refusal items; reasoning rows leave it out, so
            # GPQA's questions (never to be stored in plain text) do not land in the artifact store.
            prompt = it.prompt if es.kind != "reasoning" else ""
            rows.append({**asdict(g), "prompt": prompt, "reference": it.reference, "meta": it.meta, "version": version})
    return rows
