"""Eval-set specs: seeded subsets, per-set samples and token budgets, prompt styles, and their errors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.data.eval_sets import EvalSet, load_eval_set


@pytest.fixture()
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(40)))
    return path


def ids(es: EvalSet) -> list[str]:
    return [it.id for it in load_eval_set(es)[0]]


def test_sample_is_seeded_reproducible_and_independent_of_row_order(plain: Path, tmp_path: Path) -> None:
    es = EvalSet.from_dict({"name": "p", "kind": "reasoning", "uri": str(plain), "sample": 10, "sample_seed": 3})
    first = ids(es)
    assert len(first) == 10 == len(set(first)) and first == ids(es)
    assert first != [f"q{i}" for i in range(10)]  # not the first rows
    assert ids(EvalSet.from_dict({"name": "p", "kind": "reasoning", "uri": str(plain), "sample": 10, "sample_seed": 4})) != first
    shuffled = tmp_path / "reversed.jsonl"
    shuffled.write_text("".join(reversed(plain.read_text().splitlines(keepends=True))))
    again = ids(EvalSet(name="p", kind="reasoning", uri=str(shuffled), sample=10, sample_seed=3))
    assert sorted(again) == sorted(first)
    bigger = ids(EvalSet(name="p", kind="reasoning", uri=str(plain), sample=11, sample_seed=3))
    assert set(first) < set(bigger)  # nested: one more row keeps the others
    assert len(ids(EvalSet(name="p", kind="reasoning", uri=str(plain), sample=100))) == 40  # more than the file: all rows


def test_limit_still_takes_the_first_rows(plain: Path) -> None:
    assert ids(EvalSet(name="p", kind="reasoning", uri=str(plain), limit=3)) == ["q0", "q1", "q2"]


def test_sample_of_a_benchmark(shared_data: Path) -> None:
    uri = str(shared_data / "wildjailbreak" / "wildjailbreak_eval.tsv.gz")
    es = EvalSet.from_dict({"benchmark": "wildjailbreak", "uri": uri, "sample": 250, "sample_seed": 42})
    items, _ = load_eval_set(es)
    assert len(items) == 250 and [it.id for it in items] == [it.id for it in load_eval_set(es)[0]]
    assert all(it.meta["label"] == "unsafe" for it in items)


def test_prompt_style_reaches_the_benchmark(shared_data: Path) -> None:
    uri = str(shared_data / "aime24" / "aime24.jsonl")
    items, _ = load_eval_set(EvalSet.from_dict({"benchmark": "aime24", "uri": uri, "prompt_style": "rpsa-paper", "limit": 2}))
    assert all(it.prompt.startswith("Solve the following math problem.") and it.prompt.endswith("\nAnswer:") for it in items)


def test_floats_from_kfp_and_per_set_overrides() -> None:
    es = EvalSet.from_dict({"benchmark": "aime24", "samples": 16.0, "max_new_tokens": 4096.0, "sample": 5.0, "sample_seed": 1.0})
    assert (es.samples, es.max_new_tokens, es.sample, es.sample_seed) == (16, 4096, 5, 1)
    default = EvalSet.from_dict({"benchmark": "aime24"})
    assert (default.samples, default.max_new_tokens, default.prompt_style, default.sample) == (None, None, "deepseek", 0)
    assert EvalSet.from_dict({"benchmark": "aime24", "samples": None}).samples is None


def test_round_trips_through_asdict() -> None:
    es = EvalSet.from_dict({"benchmark": "gpqa", "prompt_style": "lora-paper", "samples": 4, "max_new_tokens": 100, "sample": 9,
                            "sample_seed": 2})
    assert EvalSet(**json.loads(json.dumps(asdict(es)))) == es
    old = {k: v for k, v in asdict(es).items() if k in ("name", "kind", "uri", "benchmark", "limit", "prompt_template")}
    assert EvalSet(**old).samples is None  # an eval_sets.json written before these fields still reads


@pytest.mark.parametrize("spec,messages", [
    ({"benchmark": "gpqa", "prompt_style": "qwen"}, ["`prompt_style` must be one of 'deepseek', 'lora-paper', 'rpsa-paper', got 'qwen'"]),
    ({"name": "p", "kind": "reasoning", "uri": "x.jsonl", "prompt_style": "rpsa-paper"},
     ["`prompt_style` must be 'deepseek' for a plain file (its prompt_template shapes the prompt), got 'rpsa-paper'"]),
    ({"benchmark": "wildjailbreak", "limit": 10, "sample": 250},
     ["`sample` must be 0 when `limit` is set (limit=10 takes the first rows; choose one), got 250"]),
    ({"benchmark": "aime24", "samples": 0, "max_new_tokens": -5},
     ["`samples` must be an integer >= 1, or None for the run's setting, got 0",
      "`max_new_tokens` must be an integer >= 1, or None for the run's setting, got -5"]),
    ({"benchmark": "aime24", "sample": -1}, ["`sample` must be an integer >= 0, got -1"]),
    ({"benchmark": "aime24", "samples": 2.5}, ["`samples` must be an integer, got 2.5"]),
])
def test_errors_name_key_value_and_allowed(spec: dict, messages: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        EvalSet.from_dict(spec)
    assert e.value.errors == messages
