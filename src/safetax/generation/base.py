"""The generation backend protocol: transformers here, vLLM on GPU clusters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from safetax.config import Checks


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy (the seeds' setting for safety evaluation)
    top_p: float = 1.0
    max_new_tokens: int = 256
    n: int = 1  # samples per prompt (pass@1 averages over them)
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks("SamplingConfig")
        c.non_negative("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            c.fail("top_p", self.top_p, "in (0, 1]")
        c.positive("max_new_tokens", self.max_new_tokens)
        c.positive("n", self.n)
        if self.temperature == 0 and self.n > 1:
            c.fail("n", self.n, "1 when temperature is 0 (greedy samples are identical)")
        c.raise_if_any()


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    finished: bool  # EOS reached before max_new_tokens


class GenerationBackend(Protocol):
    """Generates completions for chat-formatted prompt strings.

    ``adapter`` names a LoRA adapter directory to apply on top of the base model,
    without merging it to disk; None means the base model itself. ``tokenizer``
    renders chat prompts in the model's own template. ``name`` and ``version``
    (the engine's and its libraries' versions) are part of the generation cache's key.
    Sampled responses are seeded per prompt (:func:`safetax.generation.seeding.prompt_seed`).
    """

    tokenizer: Any
    name: str
    version: str

    def generate(
        self, prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig], adapter: str | None = None
    ) -> list[list[Completion]]:
        """One list of ``n`` completions per prompt, in prompt order; ``sampling`` is one config for all
        prompts or one per prompt."""
        ...


def per_prompt(prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig]) -> list[SamplingConfig]:
    """One sampling config per prompt.

    >>> [s.n for s in per_prompt(["a", "b"], SamplingConfig(temperature=1.0, n=2))]
    [2, 2]
    """
    if isinstance(sampling, SamplingConfig):
        return [sampling] * len(prompts)
    if len(sampling) != len(prompts):
        raise ValueError(f"sampling: one config per prompt expected, got {len(sampling)} for {len(prompts)} prompts")
    return list(sampling)
