"""vLLM generation backend for GPU clusters (vLLM is imported lazily: it is not installable on CPU).

The generate stage hands a checkpoint's prompts over one chunk at a time (the unit of sample-level resume:
at most ``chunk_prompts`` and at most a tenth of the checkpoint's prompts, see :func:`safetax.resume.chunk_size`),
and each chunk is one ``LLM.generate`` call holding a share of every eval set of the checkpoint (the stage spreads
the sets evenly over its order), each request with its own sampling settings (one ``SamplingParams`` per
request), so vLLM's scheduler fills the GPU with long and short outputs mixed (the seeds' reference code sent
batches of 4). ``chunk_prompts: 0`` makes it one call per checkpoint (no resume inside a checkpoint).
LoRA checkpoints are served with ``LoRARequest`` on the base model, or merged first
(:mod:`safetax.generation.serving` decides, by the platform's ``lora_serving``). Prefix caching shares the
prompt of the ``n`` samples of a question. Each request's seed is derived from the run seed and its prompt
(:func:`safetax.generation.seeding.prompt_seed`), so a prompt's samples do not depend on what else is in the call.

Prompts go to vLLM as token ids, tokenized without special tokens as the transformers backend does: a rendered
chat prompt already starts with its BOS text, and vLLM's own tokenization of a text prompt would add a second.
A request that does not fit ``max_model_len`` (prompt + ``max_new_tokens``) is an error before any GPU work:
vLLM would otherwise cut the response short at the context limit, and a cut reasoning trace is unscored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetax.generation.base import Completion, SamplingConfig, per_prompt
from safetax.generation.seeding import prompt_seed

log = logging.getLogger(__name__)
_MISSING = "backend 'vllm' needs the vllm package (the safetax-vllm image has it); use backend 'hf' here"


def sampling_kwargs(s: SamplingConfig, prompt: str = "") -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one prompt's request (temperature 0 is greedy in vLLM too); the
    seed is the prompt's own (:func:`~safetax.generation.seeding.prompt_seed`).

    >>> kw = sampling_kwargs(SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=100, seed=1), "p")
    >>> {k: v for k, v in kw.items() if k != "seed"}, kw["seed"] == prompt_seed(1, "p")
    ({'n': 8, 'temperature': 0.6, 'top_p': 0.95, 'max_tokens': 100}, True)
    """
    return {"n": s.n, "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens,
            "seed": prompt_seed(s.seed, prompt)}


def engine_version() -> str:
    """The vLLM version (part of the generation cache's key); known before the engine starts."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"vllm-{version('vllm')}"
    except PackageNotFoundError as e:
        raise ImportError(_MISSING) from e


def completions(request_outputs: Sequence[Any]) -> list[list[Completion]]:
    """vLLM ``RequestOutput``s (in prompt order) -> our completions; ``finish_reason == "stop"`` is EOS."""
    return [
        [Completion(text=o.text, n_tokens=len(o.token_ids), finished=o.finish_reason == "stop") for o in r.outputs]
        for r in request_outputs
    ]


def too_long(prompt_lengths: Sequence[int], max_new_tokens: Sequence[int], max_model_len: int) -> list[int]:
    """Indices of the requests whose prompt plus token budget exceed ``max_model_len`` (0 = no limit known).

    >>> too_long([100, 4100], [4096, 4096], 8192)
    [1]
    """
    if max_model_len <= 0:
        return []
    return [i for i, (p, m) in enumerate(zip(prompt_lengths, max_new_tokens, strict=True)) if p + m > max_model_len]


def adapter_rank(adapter_dir: str | Path) -> int:
    """The largest LoRA rank of a PEFT adapter (``r`` and every ``rank_pattern`` value): what vLLM must reserve."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return max([int(config.get("r", 8)), *(int(v) for v in (config.get("rank_pattern") or {}).values())])


def engine_max_model_len(llm: Any, configured: int) -> int:
    """The context length the engine settled on (its model's own when ``configured`` is 0); 0 when unknown."""
    model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    return int(getattr(model_config, "max_model_len", 0) or configured or 0)


class VLLMBackend:
    """``GenerationBackend`` over ``vllm.LLM``.

    Args:
        model: base model directory or hub id.
        tensor_parallel_size: GPUs to shard the model over (one pod).
        max_lora_rank: largest adapter rank to serve; 0 disables LoRA serving (a merged model, the base alone).
        gpu_memory_utilization: share of GPU memory vLLM may take.
        max_model_len: context length (prompt + response); None = the model's.
        seed: engine seed.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(_MISSING) from e
        lora = {"enable_lora": True, "max_lora_rank": max_lora_rank} if max_lora_rank > 0 else {}
        self.llm = LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=seed,
            **lora,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.version = engine_version()
        self.max_lora_rank = max_lora_rank
        self.max_model_len = engine_max_model_len(self.llm, max_model_len or 0)
        self._lora_ids: dict[str, int] = {}

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        rank = adapter_rank(adapter)
        if rank > self.max_lora_rank:
            raise ValueError(f"adapter {adapter} has rank {rank} but the engine serves ranks up to max_lora_rank="
                             f"{self.max_lora_rank}: raise the platform's defaults.vllm.max_lora_rank, or set "
                             "defaults.vllm.lora_serving: merge")
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)  # vLLM ids start at 1
        return LoRARequest(f"adapter-{lora_id}", lora_id, adapter)

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig],
                 adapter: str | None = None) -> list[list[Completion]]:
        """All ``prompts`` in one ``LLM.generate`` call, one ``SamplingParams`` per request."""
        from vllm import SamplingParams

        configs = per_prompt(prompts, sampling)
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        over = too_long([len(x) for x in ids], [s.max_new_tokens for s in configs], self.max_model_len)
        if over:
            worst = max(over, key=lambda i: len(ids[i]) + configs[i].max_new_tokens)
            raise ValueError(f"{len(over)} of {len(prompts)} requests need more than max_model_len={self.max_model_len} "
                             f"tokens (longest: a {len(ids[worst])}-token prompt + max_new_tokens "
                             f"{configs[worst].max_new_tokens}); raise the platform's defaults.vllm.max_model_len or "
                             "lower the eval sets' max_new_tokens")
        params = [SamplingParams(**sampling_kwargs(s, p)) for p, s in zip(prompts, configs, strict=True)]
        requests = [{"prompt_token_ids": x} for x in ids]
        outs = self.llm.generate(requests, params, lora_request=self._lora(adapter), use_tqdm=True)
        return completions(outs)
