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
    renders chat prompts in the model's own template.
    """

    tokenizer: Any

    def generate(
        self, prompts: Sequence[str], sampling: SamplingConfig, adapter: str | None = None
    ) -> list[list[Completion]]:
        """One list of ``sampling.n`` completions per prompt, in prompt order."""
        ...
