"""Sampled safety answers (rpsa-paper: temperature 0.6, top-p 0.95) with the transformers backend: each safety prompt
gets its samples, the same ones on a rerun with the same seed, and a run of another seed draws others."""

from __future__ import annotations

import json
from pathlib import Path

from safetax.artifacts import read_generations
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.stages import generate


def _texts(tiny_model: Path, sets: tuple[EvalSet, ...], out: Path, seed: int) -> list[tuple[str, int, str]]:
    safety = SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=12, seed=seed)
    cfg = generate.GenerateConfig(str(tiny_model), sets, safety_sampling=safety,
                                  reasoning_sampling=SamplingConfig(max_new_tokens=4, seed=seed), batch_size=4)
    generate.run(cfg, out)  # no cache: every answer is generated
    return [(r.generation.item_id, r.generation.sample, r.generation.text) for r in read_generations(out)]


def test_sampled_safety_answers_are_reproducible_by_seed(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(3)))
    sets = (EvalSet("s", "safety", str(tmp_path / "s.jsonl"), samples=2),)  # valid only because safety is sampled
    first = _texts(tiny_model, sets, tmp_path / "a", seed=42)
    assert len(first) == 3 * 2
    assert _texts(tiny_model, sets, tmp_path / "b", seed=42) == first
    assert _texts(tiny_model, sets, tmp_path / "c", seed=43) != first
