from __future__ import annotations

from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.data.chat import render_prompt
from safetax.generation.base import SamplingConfig
from safetax.generation.hf import HFBackend

PROBLEMS = ["Compute 1+2.", "Compute 12+30-7.", "Compute 5.", "Compute 40-13+2-8."]


def test_batched_greedy_equals_one_at_a_time(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), batch_size=8)
    prompts = [render_prompt(backend.tokenizer, p) for p in PROBLEMS]
    greedy = SamplingConfig(max_new_tokens=12)
    batched = backend.generate(prompts, greedy)
    single = [backend.generate([p], greedy)[0] for p in prompts]
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    assert all(c[0].n_tokens <= 12 for c in batched)


def test_sampling_returns_n_per_prompt_reproducibly(tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model), batch_size=2)
    prompts = [render_prompt(backend.tokenizer, p) for p in PROBLEMS[:3]]
    s = SamplingConfig(temperature=1.0, top_p=0.95, n=3, max_new_tokens=8, seed=5)
    a, b = backend.generate(prompts, s), backend.generate(prompts, s)
    assert [len(x) for x in a] == [3, 3, 3]
    assert [[c.text for c in x] for x in a] == [[c.text for c in x] for x in b]
    assert len({c.text for x in a for c in x}) > 1


def test_sampling_config_validation() -> None:
    with pytest.raises(ConfigError) as e:
        SamplingConfig(temperature=-1, top_p=0.0, n=2, max_new_tokens=0)
    msg = str(e.value)
    for part in ("`temperature` must be >= 0, got -1", "`top_p` must be in (0, 1], got 0.0", "`max_new_tokens` must be > 0, got 0"):
        assert part in msg
    with pytest.raises(ConfigError, match="`n` must be 1 when temperature is 0"):
        SamplingConfig(n=2)
