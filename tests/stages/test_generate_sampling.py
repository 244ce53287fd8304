"""Per-eval-set sampling (`samples`, `max_new_tokens`), one backend call per checkpoint and chunk, and cost.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from safetax.artifacts import read_cost, read_generations, read_targets
from safetax.config import ConfigError
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import Completion, SamplingConfig, per_prompt
from safetax.stages import generate


class Recorder:
    """A backend that answers every sample with its own settings and records each call."""

    name, version = "hf", "test"

    def __init__(self, model: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls: list[list[SamplingConfig]] = []

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig | Sequence[SamplingConfig],
                 adapter: str | None = None) -> list[list[Completion]]:
        configs = per_prompt(prompts, sampling)
        self.calls.append(configs)
        return [[Completion(f"n={s.n} budget={s.max_new_tokens}", s.max_new_tokens, True) for _ in range(s.n)] for s in configs]


def _sets(root: Path) -> tuple[EvalSet, ...]:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"problem": f"Compute {i}.", "answer": str(i)}) + "\n" for i in range(3)))
    (root / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(2)))
    return (EvalSet("a", "reasoning", str(root / "a.jsonl")),  # the run's: n=4, 100 tokens
            EvalSet("b", "reasoning", str(root / "b.jsonl"), samples=2, max_new_tokens=30),
            EvalSet("s", "safety", str(root / "s.jsonl"), max_new_tokens=20))


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[Recorder]:
    made: list[Recorder] = []

    def make(backend: str, model: str, *args: object, **kwargs: object) -> Recorder:
        made.append(Recorder(model))
        return made[-1]

    monkeypatch.setattr(generate, "make_backend", make)
    return made


def test_each_set_gets_its_own_samples_and_budget_in_one_call(tiny_model: Path, tmp_path: Path, recorder: list[Recorder]) -> None:
    cfg = generate.GenerateConfig(str(tiny_model), _sets(tmp_path / "data"), SamplingConfig(max_new_tokens=50),
                                  SamplingConfig(temperature=0.6, n=4, max_new_tokens=100), backend="vllm", chunk_prompts=0)
    assert generate.run(cfg, tmp_path / "gen") == 3 * 4 + 3 * 2 + 2 * 1
    [backend] = recorder
    assert len(backend.calls) == 1  # one call for the checkpoint over all its eval sets
    # The sets spread evenly over the call (a's and b's 3 prompts at 1/6, 3/6, 5/6; s's 2 at 1/4, 3/4).
    assert [(s.n, s.max_new_tokens) for s in backend.calls[0]] == [(4, 100), (2, 30), (1, 20)] * 2 + [(4, 100), (2, 30)]
    rows = read_generations(tmp_path / "gen")
    assert {(r.generation.benchmark, r.generation.text) for r in rows} == {("a", "n=4 budget=100"), ("b", "n=2 budget=30"), ("s", "n=1 budget=20")}
    assert [t.checkpoint for t in read_targets(tmp_path / "gen")] == ["base"]
    cost = read_cost(tmp_path / "gen")
    assert (cost.samples, cost.generated, cost.tokens, cost.gpus) == (20, 20, 12 * 100 + 6 * 30 + 2 * 20, 0)


def test_chunks_split_the_calls(tiny_model: Path, tmp_path: Path, recorder: list[Recorder]) -> None:
    cfg = generate.GenerateConfig(str(tiny_model), _sets(tmp_path / "data"), chunk_prompts=3)
    generate.run(cfg, tmp_path / "gen")
    assert [len(c) for c in recorder[0].calls] == [1] * 8  # at most a tenth of the 8 prompts per chunk, below chunk_prompts


def test_samples_on_a_greedy_set_are_refused_before_any_work(tmp_path: Path) -> None:
    sets = (EvalSet("s", "safety", str(tmp_path / "s.jsonl"), samples=4),)
    with pytest.raises(ConfigError, match=r"eval_sets\[s\]"):
        generate.GenerateConfig("m", sets)
