"""The generation and verdict cache: a second run generates nothing, and a change of any key part misses."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from safetax import gencache
from safetax.artifacts import read_cost
from safetax.data.eval_sets import EvalSet
from safetax.gencache import Cache, default_root, generation_key, judgement_key, model_identity
from safetax.generation.base import SamplingConfig
from safetax.stages import generate, judge
from safetax.store import StoreError

from tests.conftest import put_in_hf_cache

BASE_KEY = {"model": "m" * 64, "prompt": "<|user|>Compute 1+1.<|assistant|>",
            "sampling": SamplingConfig(temperature=0.6, top_p=0.95, n=8, max_new_tokens=64, seed=0),
            "backend": "hf", "version": "transformers-5/torch-2/fp32"}
CHANGES = {
    "model": {"model": "n" * 64},
    "prompt": {"prompt": "<|user|>Compute 1+2.<|assistant|>"},
    "seed": {"sampling": dataclasses.replace(BASE_KEY["sampling"], seed=1)},  # type: ignore[arg-type]
    "n": {"sampling": dataclasses.replace(BASE_KEY["sampling"], n=4)},  # type: ignore[arg-type]
    "max_new_tokens": {"sampling": dataclasses.replace(BASE_KEY["sampling"], max_new_tokens=65)},  # type: ignore[arg-type]
    "temperature": {"sampling": dataclasses.replace(BASE_KEY["sampling"], temperature=0.7)},  # type: ignore[arg-type]
    "top_p": {"sampling": dataclasses.replace(BASE_KEY["sampling"], top_p=0.9)},  # type: ignore[arg-type]
    "backend": {"backend": "vllm"},
    "backend_version": {"version": "transformers-5/torch-2/bf16"},
}


@pytest.mark.parametrize("part", [*CHANGES, "format"])
def test_a_change_of_any_generation_key_part_misses(part: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = generation_key(**BASE_KEY)  # type: ignore[arg-type]
    if part == "format":
        monkeypatch.setattr(gencache, "FORMAT", gencache.FORMAT + 1)
        after = generation_key(**BASE_KEY)  # type: ignore[arg-type]
    else:
        after = generation_key(**{**BASE_KEY, **CHANGES[part]})  # type: ignore[arg-type]
    assert before != after and generation_key(**BASE_KEY) == (before if part != "format" else after)  # type: ignore[arg-type]


@pytest.mark.parametrize("i", range(5))
def test_a_change_of_any_judgement_key_part_misses(i: int) -> None:
    parts = ["llama-guard-logit", "digest/code", True, "prompt", "response"]
    changed = list(parts)
    changed[i] = {0: "llama-guard-generate", 1: "digest/code2", 2: False, 3: "prompt2", 4: "response2"}[i]
    assert judgement_key(*parts) != judgement_key(*changed)  # type: ignore[arg-type]


def test_model_identity_is_the_content_of_weights_and_adapter(tiny_model: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_model, tmp_path / "copy"))
    assert model_identity(str(copy)) == model_identity(str(tiny_model))  # content, not path
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"a")
    with_adapter = model_identity(str(tiny_model), str(adapter))
    (adapter / "adapter_model.safetensors").write_bytes(b"b")
    assert len({model_identity(str(tiny_model)), with_adapter, model_identity(str(tiny_model), str(adapter))}) == 3
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert model_identity(str(copy)) != model_identity(str(tiny_model))


def test_cache_entries_live_under_their_key_and_count_hits(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path), "generations")
    key = "ab" + "0" * 62
    assert cache.get_many([key]) == [None]
    cache.put(key, [{"text": "t", "n_tokens": 1, "finished": True}])
    assert json.loads((tmp_path / "generations" / "ab" / f"{key}.json").read_text())["key"] == key
    assert cache.get_many([key, "cd" + "0" * 62])[0] == [{"text": "t", "n_tokens": 1, "finished": True}]
    assert (cache.hits, cache.misses, cache.hit_rate) == (1, 2, pytest.approx(1 / 3))
    assert default_root("s3://b/p") == "s3://b/p/cache"


def _sets(root: Path) -> tuple[EvalSet, ...]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "r.jsonl").write_text("".join(json.dumps({"problem": f"Compute {i}+1.", "answer": str(i + 1)}) + "\n" for i in range(4)))
    (root / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(3)))
    return (EvalSet("r", "reasoning", str(root / "r.jsonl")), EvalSet("s", "safety", str(root / "s.jsonl")))


def test_second_run_generates_nothing_and_equals_the_first(tiny_model: Path, tmp_path: Path) -> None:
    cfg = generate.GenerateConfig(str(tiny_model), _sets(tmp_path / "data"), SamplingConfig(max_new_tokens=5),
                                  SamplingConfig(temperature=0.8, n=2, max_new_tokens=5, seed=2), chunk_prompts=3)
    cache = str(tmp_path / "cache")
    assert generate.run(cfg, tmp_path / "a", cache_uri=cache) == 11
    first = read_cost(tmp_path / "a")
    assert (first.generated, first.cached, first.cache_hit_rate) == (11, 0, 0.0) and first.tokens > 0
    generate.run(cfg, tmp_path / "b", cache_uri=cache)
    second = read_cost(tmp_path / "b")
    assert (second.generated, second.cached, second.tokens, second.cache_hit_rate) == (0, 11, 0, 1.0)
    assert (tmp_path / "a" / "generations.jsonl").read_text() == (tmp_path / "b" / "generations.jsonl").read_text()
    # Another seed for the reasoning set misses there and hits the greedy safety set.
    other = dataclasses.replace(cfg, reasoning_sampling=SamplingConfig(temperature=0.8, n=2, max_new_tokens=5, seed=3))
    generate.run(other, tmp_path / "c", cache_uri=cache)
    assert (read_cost(tmp_path / "c").generated, read_cost(tmp_path / "c").cached) == (8, 3)
    # The verdicts are cached too.
    judge.run(judge.JudgeConfig(), tmp_path / "a", tmp_path / "ja", cache_uri=cache)
    judge.run(judge.JudgeConfig(), tmp_path / "b", tmp_path / "jb", cache_uri=cache)
    assert (read_cost(tmp_path / "ja").generated, read_cost(tmp_path / "jb").generated, read_cost(tmp_path / "jb").cached) == (3, 0, 3)
    judge.run(judge.JudgeConfig(require_think=False), tmp_path / "b", tmp_path / "jc", cache_uri=cache)
    assert read_cost(tmp_path / "jc").cached == 0


def test_another_model_misses(tiny_model: Path, tmp_path: Path) -> None:
    from tests.conftest import make_tiny_model

    other = make_tiny_model(tmp_path / "other", seed=1)
    sets = _sets(tmp_path / "data")
    cache = str(tmp_path / "cache")
    for i, model in enumerate((tiny_model, other)):
        cfg = generate.GenerateConfig(str(model), sets, SamplingConfig(max_new_tokens=4),
                                      SamplingConfig(temperature=0.8, n=2, max_new_tokens=4))
        generate.run(cfg, tmp_path / str(i), cache_uri=cache)
    assert read_cost(tmp_path / "1").cached == 0


def test_cache_on_s3(tiny_model: Path, tmp_path: Path, s3_env: object) -> None:
    cfg = generate.GenerateConfig(str(tiny_model), _sets(tmp_path / "data"), SamplingConfig(max_new_tokens=4),
                                  SamplingConfig(temperature=0.8, n=2, max_new_tokens=4))
    generate.run(cfg, tmp_path / "a", cache_uri="s3://gencache/runs/cache", partial_uri="s3://gencache/runs/r1/partial")
    generate.run(cfg, tmp_path / "b", cache_uri="s3://gencache/runs/cache", partial_uri="s3://gencache/runs/r2/partial")
    assert (read_cost(tmp_path / "b").generated, read_cost(tmp_path / "b").cached) == (0, 11)
    from safetax.store.objects import list_keys

    assert not list_keys("s3://gencache/runs/r1/partial")  # the chunks are cleared after the output is written
    assert len(list_keys("s3://gencache/runs/cache/generations")) == 7  # one entry per prompt


def test_verdicts_miss_when_the_judge_weights_or_mode_change_and_hit_a_copy(tiny_model: Path, tmp_path: Path) -> None:
    from tests.judging.test_llama_guard import guard_examples, make_tiny_guard

    cfg = generate.GenerateConfig(str(tiny_model), _sets(tmp_path / "data")[1:], SamplingConfig(max_new_tokens=4))
    generate.run(cfg, tmp_path / "gen")
    guard = make_tiny_guard(tmp_path / "g1", guard_examples(4), steps=2)
    copy = Path(shutil.copytree(guard, tmp_path / "g1-copy"))
    other = make_tiny_guard(tmp_path / "g2", guard_examples(4), steps=3)  # other weights, same files and code
    cache = str(tmp_path / "cache")

    def judged(model: Path, mode: str = "logit") -> tuple[int, int]:
        out = tmp_path / f"j-{model.name}-{mode}"
        jcfg = judge.JudgeConfig(judge="llama-guard", judge_model=str(model), mode=mode, require_think=False)
        judge.run(jcfg, tmp_path / "gen", out, cache_uri=cache)
        return read_cost(out).generated, read_cost(out).cached

    assert judged(guard) == (3, 0)
    assert judged(copy) == (0, 3)  # the same weights under another path: the key is their content
    assert judged(other) == (3, 0)
    assert judged(guard, "generate") == (3, 0)


def test_a_hub_model_is_keyed_by_the_commit_it_loads(tmp_path: Path) -> None:
    from safetax.store.digest import content_digest

    def snapshot(commit: str, weights: bytes) -> Path:
        d = tmp_path / "hf" / "models--org--tiny" / "snapshots" / commit
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(weights)
        return d

    a, b = snapshot("a" * 40, b"one"), snapshot("b" * 40, b"one")
    assert content_digest(str(a)) != content_digest(str(b))  # a new revision misses, even with the same bytes
    assert content_digest(str(a)) == content_digest(str(a / ".." / a.name))
    plain = tmp_path / "plain"
    shutil.copytree(a, plain)
    assert content_digest(str(plain)) != content_digest(str(a))  # outside the HF cache: the files' digest


def test_a_hub_id_is_the_commit_its_main_branch_names(tiny_model: Path, offline_hf_cache: Path) -> None:
    """A hub id and the snapshot directory it loads have one digest; a new revision under the id is another model."""
    from safetax.store.digest import content_digest

    first = put_in_hf_cache(offline_hf_cache, "org/tiny", "a" * 40, tiny_model)
    assert content_digest("org/tiny") == content_digest(str(first))
    second = put_in_hf_cache(offline_hf_cache, "org/tiny", "b" * 40, tiny_model)  # refs/main moves on
    assert content_digest("org/tiny") == content_digest(str(second)) != content_digest(str(first))
    with pytest.raises(StoreError, match=r"judge_model: hub model 'org/absent': the hub is offline"):
        content_digest("org/absent", "judge_model")


def test_a_pinned_hub_id_loads_its_commit_after_a_new_push(tiny_model: Path, offline_hf_cache: Path) -> None:
    from safetax.store import local_model_dir, resolve_model
    from safetax.store.digest import content_digest

    first = put_in_hf_cache(offline_hf_cache, "org/tiny", "a" * 40, tiny_model)
    put_in_hf_cache(offline_hf_cache, "org/tiny", "b" * 40, tiny_model)  # refs/main moves on
    pinned = "org/tiny@" + "a" * 40
    assert resolve_model(pinned) == str(first) and local_model_dir(pinned) == first
    assert content_digest(pinned) == content_digest(str(first)) != content_digest("org/tiny")
    assert resolve_model("org/tiny") == "org/tiny"  # unpinned: from_pretrained resolves it
    with pytest.raises(StoreError, match=r"'org/tiny@main' does not exist .*'org/name@<40 hex digits>'"):
        local_model_dir("org/tiny@main")  # only a commit pins
