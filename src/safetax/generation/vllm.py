"""vLLM generation backend for GPU clusters (vLLM is imported lazily: it is not installable on CPU).

Every prompt the generate stage hands over for one checkpoint (all of its eval sets, each with its own
sampling settings: one ``SamplingParams`` per request) goes into one ``LLM.generate`` call, so vLLM's
scheduler fills the GPU (the seeds' reference code sent batches of 4). With sample-level resume on, the
stage hands them over one chunk at a time (``chunk_prompts``, a setting): then it is one call per chunk.
LoRA checkpoints are served with ``LoRARequest`` on the base model, so evaluating N epochs does not merge
and write N models. Prefix caching shares the prompt of the ``n`` samples of a question. Each request's
seed is derived from the run seed and its prompt (:func:`safetax.generation.seeding.prompt_seed`), so a
prompt's samples do not depend on what else is in the call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from safetax.generation.base import Completion, SamplingConfig, per_prompt
from safetax.generation.seeding import prompt_seed

log = logging.getLogger(__name__)


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
        raise ImportError("backend 'vllm' needs the vllm package (the safetax-vllm image has it); use backend 'hf' here") from e


def completions(request_outputs: Sequence[Any]) -> list[list[Completion]]:
    """vLLM ``RequestOutput``s (in prompt order) -> our completions; ``finish_reason == "stop"`` is EOS."""
    return [
        [Completion(text=o.text, n_tokens=len(o.token_ids), finished=o.finish_reason == "stop") for o in r.outputs]
        for r in request_outputs
    ]


class VLLMBackend:
    """``GenerationBackend`` over ``vllm.LLM``.

    Args:
        model: base model directory or hub id.
        tensor_parallel_size: GPUs to shard the model over (one pod).
        max_lora_rank: largest adapter rank to serve; 0 disables LoRA serving.
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
            raise ImportError("backend 'vllm' needs the vllm package (the safetax-vllm image has it); use backend 'hf' here") from e
        self.llm = LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            enable_lora=max_lora_rank > 0,
            max_lora_rank=max(max_lora_rank, 1),
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=seed,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.version = engine_version()
        self._lora_ids: dict[str, int] = {}

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)  # vLLM ids start at 1
        return LoRARequest(f"adapter-{lora_id}", lora_id, adapter)

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig],
                 adapter: str | None = None) -> list[list[Completion]]:
        """All ``prompts`` in one ``LLM.generate`` call, one ``SamplingParams`` per request."""
        from vllm import SamplingParams

        params = [SamplingParams(**sampling_kwargs(s, p)) for p, s in zip(prompts, per_prompt(prompts, sampling), strict=True)]
        outs = self.llm.generate(list(prompts), params, lora_request=self._lora(adapter), use_tqdm=True)
        return completions(outs)
