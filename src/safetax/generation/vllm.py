"""vLLM generation backend for GPU clusters (vLLM is imported lazily: it is not installable on CPU).

All prompts of a stage go into one ``LLM.generate`` call, so vLLM's scheduler
fills the GPU (the seeds' reference code sent batches of 4). LoRA checkpoints
are served with ``LoRARequest`` on the base model, so evaluating N epochs does
not merge and write N models. Prefix caching shares the prompt of the ``n``
samples of a question.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from safetax.generation.base import Completion, SamplingConfig

log = logging.getLogger(__name__)


def sampling_kwargs(s: SamplingConfig) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for a sampling config (temperature 0 is greedy in vLLM too).

    >>> sampling_kwargs(SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=100, seed=1))
    {'n': 8, 'temperature': 0.6, 'top_p': 0.95, 'max_tokens': 100, 'seed': 1}
    """
    return {"n": s.n, "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens, "seed": s.seed}


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
        self._lora_ids: dict[str, int] = {}

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)  # vLLM ids start at 1
        return LoRARequest(f"adapter-{lora_id}", lora_id, adapter)

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig, adapter: str | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        outs = self.llm.generate(list(prompts), SamplingParams(**sampling_kwargs(sampling)), lora_request=self._lora(adapter), use_tqdm=True)
        return completions(outs)
