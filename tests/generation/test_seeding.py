"""Per-prompt seeded sampling: a prompt's samples do not depend on its batch, and follow the tempered nucleus law."""

from __future__ import annotations

from pathlib import Path

import torch

from safetax.data.chat import render_prompt
from safetax.generation.base import SamplingConfig
from safetax.generation.hf import HFBackend
from safetax.generation.seeding import SeededSampler, top_p_filter

PROBLEMS = ["Compute 1+2.", "Compute 12+30-7.", "Compute 5.", "Compute 40-13+2-8.", "Say hi."]


def test_samples_of_a_prompt_do_not_depend_on_its_batch_or_order(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), batch_size=8)
    prompts = [render_prompt(backend.tokenizer, p) for p in PROBLEMS]
    s = SamplingConfig(temperature=1.0, top_p=0.9, n=3, max_new_tokens=10, seed=7)
    together = backend.generate(prompts, s)
    alone = [backend.generate([p], s)[0] for p in prompts]
    reversed_ = backend.generate(prompts[::-1], s)[::-1]
    texts = [[c.text for c in x] for x in together]
    assert texts == [[c.text for c in x] for x in alone] == [[c.text for c in x] for x in reversed_]
    assert len({t for x in texts for t in x}) > len(prompts)  # samples differ within a prompt
    other_seed = backend.generate(prompts, SamplingConfig(temperature=1.0, top_p=0.9, n=3, max_new_tokens=10, seed=8))
    assert [[c.text for c in x] for x in other_seed] != texts


def test_mixed_sampling_configs_in_one_call_equal_separate_calls(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), batch_size=2)
    prompts = [render_prompt(backend.tokenizer, p) for p in PROBLEMS[:4]]
    greedy, sampled = SamplingConfig(max_new_tokens=6), SamplingConfig(temperature=0.8, n=2, max_new_tokens=9, seed=1)
    configs = [greedy, sampled, greedy, sampled]
    mixed = backend.generate(prompts, configs)
    assert [len(x) for x in mixed] == [1, 2, 1, 2]
    assert [c.text for c in mixed[0]] == [c.text for c in backend.generate([prompts[0]], greedy)[0]]
    assert [c.text for c in mixed[3]] == [c.text for c in backend.generate([prompts[3]], sampled)[0]]


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.1)).tolist() == [[True, False, False, False]]  # the top token stays


def test_seeded_sampler_draws_from_the_tempered_distribution() -> None:
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = torch.log(probs).repeat(4000, 1)
    sampler = SeededSampler(list(range(4000)), temperature=1.0, top_p=1.0, device=torch.device("cpu"))
    picked = sampler(torch.zeros(4000, 1, dtype=torch.long), logits).argmax(dim=-1)
    freq = torch.bincount(picked, minlength=3).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03)
