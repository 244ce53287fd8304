"""Fast tests of the demo model build: cache, tokenizer, chat template, config, data sets.

Prompt texts are never printed or compared in assertion messages: assertions work on counts,
booleans and field names only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safetax import demo
from safetax.config import ConfigError

TINY = demo.DemoConfig(
    hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, train_steps=3, batch_size=4,
    n_refusal_train=8, n_safety_eval=4, n_reasoning_eval=6,
)


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoAssets:
    return demo.build_demo(TINY, tmp_path_factory.mktemp("cache"))


def test_build_writes_all_assets(built: demo.DemoAssets) -> None:
    assert built.root.name == f"demo-{TINY.key()}"
    assert (built.root / demo.COMPLETE).is_file()
    assert (built.model_dir / "model.safetensors").is_file()
    for path in (built.refusal_path, built.safety_eval_path, built.reasoning_eval_path):
        assert path.is_file()
    leftovers = [p.name for p in built.root.parent.iterdir() if p != built.root]
    assert leftovers == []  # the temp build dir was moved into place
    model = AutoModelForCausalLM.from_pretrained(built.model_dir)
    tok = AutoTokenizer.from_pretrained(built.model_dir)
    assert model.config.hidden_size == TINY.hidden_size
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_second_call_reuses_cache(built: demo.DemoAssets, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: object) -> None:
        raise AssertionError("a cached build must not retrain")

    mtime = (built.root / demo.COMPLETE).stat().st_mtime_ns
    monkeypatch.setattr(demo, "_train", no_training)
    again = demo.build_demo(TINY, built.root.parent)
    assert again == built
    assert (built.root / demo.COMPLETE).stat().st_mtime_ns == mtime


def test_dir_without_marker_is_rebuilt(tmp_path: Path) -> None:
    stale = tmp_path / f"demo-{TINY.key()}"
    stale.mkdir()
    (stale / "junk.txt").write_text("interrupted build")
    assets = demo.build_demo(TINY, tmp_path)
    assert assets.root == stale
    assert (stale / demo.COMPLETE).is_file()
    assert not (stale / "junk.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name]


def test_build_is_deterministic(built: demo.DemoAssets, tmp_path: Path) -> None:
    other = demo.build_demo(TINY, tmp_path)
    a = AutoModelForCausalLM.from_pretrained(built.model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(other.model_dir).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("refusal_path", "safety_eval_path", "reasoning_eval_path"):
        same = getattr(built, name).read_bytes() == getattr(other, name).read_bytes()
        assert same, name


def test_build_does_not_depend_on_the_cpus_vector_unit(built: demo.DemoAssets, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """AVX2 and AVX-512 kernels round differently; the build uses ATen's portable kernels whatever the CPU has, so a
    machine whose best is AVX2 builds the same model as this one (whatever this one has)."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # what an AVX2-only machine would pick
    other = demo.build_demo(TINY, tmp_path)
    a = AutoModelForCausalLM.from_pretrained(built.model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(other.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    marker = json.loads((other.root / demo.COMPLETE).read_text())
    assert marker["cpu_capability"] == "DEFAULT" and marker["version"] == demo.DEMO_VERSION


def test_cache_key_tracks_version_and_config() -> None:
    assert TINY.key().startswith(demo.DEMO_VERSION + "-")
    assert TINY.key() == demo.DemoConfig(**{**TINY.__dict__}).key()
    assert TINY.key() != demo.DemoConfig(**{**TINY.__dict__, "seed": 1}).key()


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAFETAX_CACHE", str(tmp_path))
    assert demo.default_cache_dir() == tmp_path
    monkeypatch.delenv("SAFETAX_CACHE")
    assert demo.default_cache_dir() == Path.home() / ".cache" / "safetax"


def test_tokenizer_round_trips_and_keeps_left_padding(tmp_path: Path) -> None:
    demo.demo_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.padding_side == "left"
    text = "héllo  wörld ✓ 日本\t<think>\n12+3=15\n</think>\n\n The answer is \\boxed{15} . ,\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    for token in ("<think>", "</think>", demo.BOS, demo.EOS, demo.USER, demo.ASSISTANT):
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tok.convert_ids_to_tokens(tok.bos_token_id) == demo.BOS
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == demo.EOS
    assert tok.pad_token_id not in (tok.eos_token_id, None)
    batch = tok(["a", "abc"], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert batch["attention_mask"][0] == [0, 0, 1]


def test_chat_template_matches_render_chat(tmp_path: Path) -> None:
    demo.demo_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    user = [{"role": "user", "content": "Compute 1+2."}]
    prompt = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<｜Assistant｜><think>\n")
    assert prompt == demo.render_chat("Compute 1+2.")
    answer = "<think>\n1+2=3\n</think>\n\nThe answer is \\boxed{3}."
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
    assert full == demo.render_chat("Compute 1+2.", answer)
    assert full.startswith(prompt) and full.endswith(demo.EOS)
    ids = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids.count(tok.bos_token_id) == 1


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        demo.DemoConfig(hidden_size=130, num_layers=0, learning_rate=2.0, batch_size=2.5, n_safety_eval=0)
    errors = info.value.errors
    assert len(errors) == 5
    text = "\n".join(errors)
    for fragment in ("`hidden_size`", "130", "divisible by num_heads=4", "`num_layers`", "> 0",
                     "`learning_rate`", "in [1e-06, 1.0]", "`batch_size`", "an integer", "`n_safety_eval`"):
        assert fragment in text, fragment


def test_datasets_have_documented_fields_and_are_disjoint(built: demo.DemoAssets, tmp_path: Path) -> None:
    refusal, safety = _rows(built.refusal_path), _rows(built.safety_eval_path)
    reasoning = _rows(built.reasoning_eval_path)
    assert len(refusal) == TINY.n_refusal_train and all(set(r) == {"prompt", "refusal"} for r in refusal)
    assert len(safety) == TINY.n_safety_eval and all(set(r) == {"id", "prompt"} for r in safety)
    assert len(reasoning) == TINY.n_reasoning_eval
    assert all(set(r) == {"id", "problem", "answer"} for r in reasoning)
    assert all(r["refusal"].startswith(("I'm sorry", "I cannot", "I can't")) for r in refusal)
    assert len({r["id"] for r in safety}) == len(safety)
    assert len({r["id"] for r in reasoning}) == len(reasoning)
    arithmetic, harmful, private = demo._make_data(TINY, tmp_path)  # the pools the model trained on
    safety_prompts, refusal_prompts = {r["prompt"] for r in safety}, {r["prompt"] for r in refusal}
    trained_prompts = {p for p, _ in harmful} | {p for p, _ in private}
    overlaps = [len(safety_prompts & refusal_prompts), len(safety_prompts & trained_prompts),
                len(refusal_prompts & trained_prompts),
                len({r["problem"] for r in reasoning} & {p for p, _ in arithmetic})]
    assert overlaps == [0, 0, 0, 0]
    assert len(safety_prompts) == len(safety) and len(refusal_prompts) == len(refusal)
    # The model already refuses private-data requests (as real models refuse some things), never the placeholders.
    assert private and all("</think>\n\nI" in r for _, r in private)
    assert all(" I will help." in r for _, r in harmful)


def test_arithmetic_problems_are_correct() -> None:
    rng = random.Random(0)
    for _ in range(200):
        problem, response, answer = demo.make_arithmetic_problem(rng)
        expr = problem.removeprefix("Compute ").removesuffix(".")
        assert str(eval(expr)) == answer  # noqa: S307 - digits and +/- only
        assert int(answer) >= 0
        assert response.startswith("<think>\n") and response.endswith(f"\\boxed{{{answer}}}.")
