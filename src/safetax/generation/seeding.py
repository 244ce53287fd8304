"""Per-prompt sampling seeds, and sampling that reads them: a sample depends on its prompt, never on its batch.

A sampled response is drawn with a random stream of its own, seeded by (run seed, prompt text, sample index), so the
samples of a prompt are the same whether it runs alone, in another batch, after a restart (sample-level resume)
or in another run (the generation cache's key holds the prompt and the seed, and that is all the stream depends on).
"""

from __future__ import annotations

import hashlib

import torch


def prompt_seed(seed: int, prompt: str, sample: int = 0) -> int:
    """A 63-bit seed for one sample of one prompt (fits vLLM's and torch's seed arguments).

    >>> prompt_seed(0, "a") == prompt_seed(0, "a"), prompt_seed(0, "a") != prompt_seed(1, "a"), prompt_seed(0, "a", 1) != prompt_seed(0, "a")
    (True, True, True)
    """
    digest = hashlib.sha256(f"{seed}\0{sample}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the smallest set of tokens whose probability reaches ``top_p`` set to -inf (nucleus sampling;
    the most likely token always stays)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token already reaches top_p
    drop[..., 0] = False
    return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))


class SeededSampler:
    """A transformers logits processor that samples each row with its own generator (Gumbel-max), under greedy decoding.

    Each step, row ``r``'s logits are divided by the temperature, nucleus-filtered, and perturbed with Gumbel noise
    drawn from the row's generator; only the perturbed argmax keeps a finite score, so greedy search picks it. The
    result is a draw from the tempered nucleus distribution that depends on the row's seed and logits alone."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: torch.device) -> None:
        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = top_p_filter(scores.float() / self.temperature, self.top_p)
        noise = torch.stack([torch.rand(logits.shape[-1], generator=g, device=logits.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
        choice = (logits + gumbel).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, float("-inf")).scatter(-1, choice, 0.0)
