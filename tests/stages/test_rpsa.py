"""RPSA end to end on a tiny model: corpus -> fisher -> Fisher-masked training (full and LoRA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safetax.config import ConfigError
from safetax.data.eval_sets import EvalSet
from safetax.generation.base import SamplingConfig
from safetax.stages import corpus, fisher, train

FAST = {"batch_size": 4, "learning_rate": 1e-2, "epochs": 2, "lora_dropout": 0.0, "seed": 5, "weight_decay": 0.1}


@pytest.fixture()
def corpus_dir(tiny_model: Path, tmp_path: Path) -> Path:
    problems = tmp_path / "arith.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(12)))
    cfg = corpus.CorpusConfig(eval_set=EvalSet(name="arith", kind="reasoning", uri=str(problems)), n=6, seed=1,
                              sampling=SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=24, seed=1))
    assert corpus.run(cfg, str(tiny_model), tmp_path / "corpus") == 6
    return tmp_path / "corpus"


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def test_corpus_rows_keep_prompt_response_and_score(corpus_dir: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    rows = [json.loads(line) for line in (corpus_dir / "corpus.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"id", "prompt", "response", "correct", "finished"} <= rows[0].keys()
    assert len({r["id"] for r in rows}) == 6  # six distinct problems drawn with the seed
    examples = corpus.corpus_examples(AutoTokenizer.from_pretrained(tiny_model), corpus_dir)
    assert len(examples) == 6 and all(-100 in e["labels"] and e["labels"][-1] != -100 for e in examples)
    correct = corpus.corpus_examples(AutoTokenizer.from_pretrained(tiny_model), corpus_dir, keep="correct")
    assert len(correct) == sum(r["correct"] for r in rows)


class _WordTokenizer:
    """One token per whitespace-separated word: lengths are easy to count."""

    eos_token = "<eos>"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [len(w) for w in text.replace("<eos>", " <eos>").split()]}


def test_long_responses_lose_their_end_never_the_prompt(tmp_path: Path) -> None:
    """Issue 16: a 5000-token response once pushed all 50 prompt tokens out of a 4096 window."""
    rows = [{"id": "long", "prompt": " ".join(["p"] * 50), "response": " ".join(["rr"] * 5000), "correct": True,
             "finished": True},
            {"id": "huge-prompt", "prompt": " ".join(["p"] * 5000), "response": "rr", "correct": True, "finished": True}]
    from safetax.store import atomic_dir

    with atomic_dir(tmp_path / "corpus") as tmp:
        (tmp / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = corpus.corpus_examples(_WordTokenizer(), tmp_path / "corpus", max_length=4096)
    assert len(examples) == 1  # the prompt that fills the window leaves no response: skipped
    ids, labels = examples[0]["input_ids"], examples[0]["labels"]
    assert len(ids) == 4096 and ids[:50] == [1] * 50 and labels[:50] == [-100] * 50  # every prompt token kept
    assert labels[50:] == [2] * 4046  # the first 4046 response tokens, the end (and eos) cut


def test_full_rpsa_freezes_the_top_fisher_parameters_bit_exactly(tiny_model: Path, sft: Path, corpus_dir: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="rpsa", rpsa_base="full", frozen_ratio=0.3, dynamic_ratio=False, **FAST)
    info = fisher.run(fisher.FisherConfig(max_length=64), cfg, str(tiny_model), corpus_dir, tmp_path / "fisher")
    assert info["samples"] == 6 and 0 < info["nonzero_share"] <= 1
    scores = load_file(tmp_path / "fisher" / "fisher.safetensors")
    train.run(cfg, str(tiny_model), sft, tmp_path / "out", fisher_dir=tmp_path / "fisher", corpus_dir=corpus_dir)
    base, tuned = _state(tiny_model), _state(tmp_path / "out" / "epoch-2")
    from safetax.rpsa.masking import fisher_masks, fisher_threshold

    masks = fisher_masks(scores, fisher_threshold(scores, 0.3))
    frozen = changed = 0
    for name, m in masks.items():
        if name not in base:  # tied lm_head
            continue
        assert torch.equal(tuned[name][m], base[name][m]), name  # frozen entries did not move, weight decay on
        frozen += int(m.sum())
        changed += int((tuned[name][~m] != base[name][~m]).sum())
    assert frozen > 0 and changed > 0
    assert (tmp_path / "fisher" / "fisher_by_layer.png").is_file() and (tmp_path / "fisher" / "summary.csv").is_file()


def test_fisher_stage_token_estimator(tiny_model: Path, corpus_dir: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="rpsa", rpsa_base="full", **FAST)
    info = fisher.run(fisher.FisherConfig(max_length=64, estimator="token", tokens_per_sequence=2), cfg,
                      str(tiny_model), corpus_dir, tmp_path / "fisher")
    assert (info["estimator"], info["tokens_per_sequence"], info["samples"]) == ("token", 2, 6)
    assert 0 < info["nonzero_share"] <= 1
    with pytest.raises(ConfigError) as err:
        fisher.FisherConfig(estimator="tokens", tokens_per_sequence=-1)
    assert "fisher_estimator" in str(err.value) and "fisher_tokens_per_sequence" in str(err.value)


def test_lora_rpsa_with_dynamic_ratio_records_conflicts(tiny_model: Path, sft: Path, corpus_dir: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="rpsa", rpsa_base="lora", target_modules="mlp", update_every=1, conflict_window=3, **FAST)
    fisher.run(fisher.FisherConfig(max_length=64), cfg, str(tiny_model), corpus_dir, tmp_path / "fisher")
    scores = load_file(tmp_path / "fisher" / "fisher.safetensors")
    assert all("lora_" in k for k in scores)  # only the trainable LoRA parameters are scored
    assert all(float(v.abs().sum()) == 0 for k, v in scores.items() if "lora_A" in k)  # B = 0 at init: zero Fisher for A
    train.run(cfg, str(tiny_model), sft, tmp_path / "out", fisher_dir=tmp_path / "fisher", corpus_dir=corpus_dir)
    history = json.loads((tmp_path / "out" / "rpsa.json").read_text())["history"]
    assert len(history) == 10  # 20 rows / batch 4 = 5 steps per epoch, 2 epochs, a conflict every step
    assert [h["k"] for h in history[:3]] == [0.5, 0.5, 0.5]  # warm-up: until 3 past values exist (RPSA Eq. 7)
    assert all(0 <= h["conflict"] <= 1 and 0 <= h["k"] <= 1 for h in history)
    assert (tmp_path / "out" / "rpsa_ratio.png").is_file()
    assert (tmp_path / "out" / "epoch-2" / "adapter_model.safetensors").is_file()


def test_rpsa_needs_its_inputs_and_valid_settings(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the fisher stage's output"):
        train.run(train.TrainConfig(method="rpsa", **FAST), str(tiny_model), sft, tmp_path / "x")
    with pytest.raises(ConfigError) as err:
        train.TrainConfig(method="rpsa", rpsa_base="qlora", frozen_ratio=1.5, update_every=0)
    assert "rpsa_base" in str(err.value) and "frozen_ratio" in str(err.value) and "update_every" in str(err.value)
    assert train.TrainConfig(method="rpsa", rpsa_base="full").num_epochs == 3
    assert train.TrainConfig(method="rpsa").num_epochs == 6 and train.TrainConfig(method="rpsa").label == "rpsa-lora-r4"
    assert (train.TrainConfig(method="rpsa").lr, train.TrainConfig(method="rpsa", rpsa_base="full").lr) == (1e-4, 1e-5)
    assert train.TrainConfig(method="lora").lr == 5e-5 and train.TrainConfig(method="full", learning_rate=3e-4).lr == 3e-4


def test_fisher_validation_scales_top_and_random_parameters(tiny_model: Path, corpus_dir: Path, tmp_path: Path) -> None:
    """RPSA's Figure 3 check: accuracies of the base and of the two perturbed models on the corpus problems."""
    cfg = train.TrainConfig(method="rpsa", rpsa_base="full", **FAST)
    info = fisher.run(fisher.FisherConfig(max_length=64, validate=True, validate_share=0.05, validate_scale=0.0), cfg,
                      str(tiny_model), corpus_dir, tmp_path / "fisher")
    v = json.loads((tmp_path / "fisher" / "validation.json").read_text())
    assert v == info["validation"] and v["share"] == 0.05 and v["scale"] == 0.0
    for key in ("accuracy_base", "accuracy_top", "accuracy_random"):
        assert 0.0 <= v[key] <= 1.0
    assert v["drop_top"] == pytest.approx(v["accuracy_base"] - v["accuracy_top"])
