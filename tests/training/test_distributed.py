"""Data-parallel training in one pod, run on the CPU: 2 torchrun workers (gloo) against 1 process.

Full fine-tuning (FSDP2; a Qwen2, and a Llama with tied embeddings and gradient checkpointing) and LoRA
with the orthogonality regulariser (DDP) with 2 processes give the losses and weights of 1 process with
the same global batch: 17 examples in batches of 4 leave a last batch of 1 example, so one rank trains
on a dummy example weighted 0 there. Tolerances: epoch and
batch losses within 1e-6 relative (measured ~1e-7), weights within 1e-5 absolute (measured ~6e-7):
only the order of float sums differs (each rank pads its own share, gradients are summed across ranks).
RPSA on 2 processes (Fisher masks on FSDP shards for full fine-tuning, DDP for LoRA, with the dynamic
ratio) freezes the same entries and measures the same conflicts and k as 1 process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safetax.artifacts import CHECKPOINTS
from safetax.config import ConfigError
from safetax.records import read_jsonl, write_jsonl
from safetax.stages import prepare, train
from safetax.stages.prepare import SFT_FILE
from safetax.store import atomic_dir, is_complete
from safetax.training.distributed import WorkerError

N_EXAMPLES = 17  # batches of 4: the last has 1 example for 2 ranks
FAST = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 3}


@pytest.fixture(scope="module")
def sft17(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sft17")
    rows = [{"prompt": f"Explain restricted task {i}.", "refusal": "I'm sorry, but I can't help with that."} for i in range(N_EXAMPLES)]
    (root / "refusals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare.run(prepare.PrepareConfig(str(root / "refusals.jsonl"), str(tiny_model), max_length=128), root / "sft")
    return root / "sft"


def _train(cfg: train.TrainConfig, model: Path, sft: Path, out: Path, processes: int) -> tuple[train.TrainResult, list[tuple[float, ...]]]:
    steps: list[tuple[float, ...]] = []
    res = train.run(cfg, str(model), sft, out, on_step=lambda *a: steps.append(a), processes=processes)
    return res, steps


def _assert_same_training(one: tuple[train.TrainResult, list[tuple[float, ...]]],
                          two: tuple[train.TrainResult, list[tuple[float, ...]]], weights_file: str) -> None:
    (r1, s1), (r2, s2) = one, two
    assert r2.checkpoints == r1.checkpoints == ["epoch-1", "epoch-2", "epoch-3"]
    assert r2.losses == pytest.approx(r1.losses, rel=1e-6)
    # The progress bridge: rank 0's lines became the parent's on_step calls, one per global batch.
    assert len(s2) == len(s1) == 3 * 5
    assert [s[0] for s in s2] == pytest.approx([s[0] for s in s1], rel=1e-6)
    assert [s[2] for s in s2] == pytest.approx([s[2] for s in s1]) and s2[-1][2] == pytest.approx(3.0)
    assert all(s[1] > 0 for s in s2)
    for epoch in r1.checkpoints:
        w1, w2 = load_file(r1.out_dir / epoch / weights_file), load_file(r2.out_dir / epoch / weights_file)
        assert w1.keys() == w2.keys()
        for k in w1:
            torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5, msg=k)
    m1, m2 = (json.loads((r.out_dir / CHECKPOINTS).read_text()) for r in (r1, r2))
    assert [e["name"] for e in m2["checkpoints"]] == [e["name"] for e in m1["checkpoints"]]
    assert m2["trainable_parameters"] == m1["trainable_parameters"] and is_complete(r2.out_dir)


def test_full_finetuning_on_two_processes_equals_one(tiny_model: Path, sft17: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cfg = train.TrainConfig(method="full", grad_accum=2, **FAST)  # 5 batches: 2 full accumulations and a short one
    one = _train(cfg, tiny_model, sft17, tmp_path / "one", processes=1)
    two = _train(cfg, tiny_model, sft17, tmp_path / "two", processes=2)
    _assert_same_training(one, two, "model.safetensors")
    assert two[0].losses[-1] < two[0].losses[0]
    last = tmp_path / "two" / "epoch-3"
    assert sorted(p.name for p in last.iterdir()) == sorted(p.name for p in (tmp_path / "one" / "epoch-3").iterdir())
    model = AutoModelForCausalLM.from_pretrained(last)  # the gathered checkpoint is a plain HF model
    saved = load_file(last / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if k in saved)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size


def test_full_finetuning_of_a_tied_llama_with_gradient_checkpointing(sft17: Path, tmp_path: Path) -> None:
    # Tied embeddings: the gathered lm_head.weight is a copy of the embedding, left out as one process leaves it out.
    from transformers import LlamaConfig, LlamaForCausalLM

    from safetax.demo import demo_tokenizer

    tok = demo_tokenizer()
    torch.manual_seed(1)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    cfg = train.TrainConfig(method="full", gradient_checkpointing=True, **FAST)
    one = _train(cfg, tmp_path / "llama", sft17, tmp_path / "one", processes=1)
    two = _train(cfg, tmp_path / "llama", sft17, tmp_path / "two", processes=2)
    _assert_same_training(one, two, "model.safetensors")
    assert "lm_head.weight" not in load_file(tmp_path / "two" / "epoch-3" / "model.safetensors")
    model = LlamaForCausalLM.from_pretrained(tmp_path / "two" / "epoch-3")
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_lora_with_orthogonality_regulariser_on_two_processes_equals_one(tiny_model: Path, sft17: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = train.TrainConfig(method="lora", lora_dropout=0.0, ortho_reg="both", ortho_k=4, **FAST)
    one = _train(cfg, tiny_model, sft17, tmp_path / "one", processes=1)
    two = _train(cfg, tiny_model, sft17, tmp_path / "two", processes=2)
    _assert_same_training(one, two, "adapter_model.safetensors")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "two" / "epoch-3")


def test_a_failed_worker_names_its_rank_and_leaves_no_output(tiny_model: Path, sft17: Path, tmp_path: Path) -> None:
    # A token id outside the vocabulary in the one example rank 1 trains on first: its embedding raises.
    rows = read_jsonl(sft17 / SFT_FILE)
    first_batch = torch.randperm(len(rows), generator=torch.Generator().manual_seed(42)).tolist()[:4]
    rows[first_batch[1]]["input_ids"][0] = 10**6  # global batch position 1 -> rank 1 (ranks take every 2nd)
    with atomic_dir(tmp_path / "bad-sft") as tmp:
        write_jsonl(tmp / SFT_FILE, rows)
    out = tmp_path / "out"
    cause = r"train worker rank 1 of 2 failed with exit code 1 \(IndexError: index out of range in self\)"
    with pytest.raises(WorkerError, match=cause) as e:
        train.run(train.TrainConfig(method="full", seed=42, **FAST), str(tiny_model), tmp_path / "bad-sft", out, processes=2)
    assert "F.embedding(" in str(e.value).split("Last output lines:")[1]  # the log tail: the worker's traceback
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_zero_gpus_are_rejected_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`train_gpus` must be an integer >= 1, got 0"):
        train.run(train.TrainConfig(method="full"), "/nonexistent/model", tmp_path / "no-sft", tmp_path / "out", gpus=0)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def rpsa_corpus(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetax.data.eval_sets import EvalSet
    from safetax.generation.base import SamplingConfig
    from safetax.stages import corpus

    root = tmp_path_factory.mktemp("rpsa-corpus")
    problems = root / "arith.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(12)))
    cfg = corpus.CorpusConfig(eval_set=EvalSet(name="arith", kind="reasoning", uri=str(problems)), n=6, seed=1,
                              sampling=SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=24, seed=1))
    corpus.run(cfg, str(tiny_model), root / "corpus")
    return root / "corpus"


def _rpsa(cfg: train.TrainConfig, model: Path, sft: Path, corpus_dir: Path, root: Path,
          processes: int) -> tuple[train.TrainResult, list[tuple[float, ...]]]:
    from safetax.stages import fisher

    if not (root / "fisher").exists():
        fisher.run(fisher.FisherConfig(max_length=64), cfg, str(model), corpus_dir, root / "fisher")
    steps: list[tuple[float, ...]] = []
    res = train.run(cfg, str(model), sft, root / f"out-{processes}", on_step=lambda *a: steps.append(a),
                    fisher_dir=root / "fisher", corpus_dir=corpus_dir, processes=processes)
    return res, steps


def _frozen(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: tuned[k] == base[k] for k in tuned}


def test_rpsa_on_full_finetuning_with_fsdp_on_two_processes_equals_one(tiny_model: Path, sft17: Path, rpsa_corpus: Path,
                                                                        tmp_path: Path) -> None:
    # Fisher masks on FSDP shards: the threshold across ranks, the conflict's counts summed over shards.
    cfg = train.TrainConfig(method="rpsa", rpsa_base="full", frozen_ratio=0.3, update_every=2, conflict_window=2,
                            warmup_steps=0, weight_decay=0.1, **FAST)
    one = _rpsa(cfg, tiny_model, sft17, rpsa_corpus, tmp_path, processes=1)
    two = _rpsa(cfg, tiny_model, sft17, rpsa_corpus, tmp_path, processes=2)
    _assert_same_training(one, two, "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    f1 = _frozen(base, load_file(tmp_path / "out-1" / "epoch-3" / "model.safetensors"))
    f2 = _frozen(base, load_file(tmp_path / "out-2" / "epoch-3" / "model.safetensors"))
    assert all(torch.equal(f1[k], f2[k]) for k in f1)  # the same entries never moved
    assert 0 < sum(int(m.sum()) for m in f2.values()) < sum(m.numel() for m in f2.values())
    _assert_same_rpsa_history(tmp_path, 8)  # steps 0, 2, .., 14


def test_rpsa_on_lora_with_dynamic_ratio_on_two_processes_equals_one(tiny_model: Path, sft17: Path, rpsa_corpus: Path,
                                                                      tmp_path: Path) -> None:
    # DDP: the conflict c of every step, hence k and the masks, agree with one process.
    cfg = train.TrainConfig(method="rpsa", rpsa_base="lora", lora_dropout=0.0, update_every=1, conflict_window=3,
                            warmup_steps=0, **FAST)
    one = _rpsa(cfg, tiny_model, sft17, rpsa_corpus, tmp_path, processes=1)
    two = _rpsa(cfg, tiny_model, sft17, rpsa_corpus, tmp_path, processes=2)
    _assert_same_training(one, two, "adapter_model.safetensors")
    _assert_same_rpsa_history(tmp_path, 15)


def _assert_same_rpsa_history(root: Path, measurements: int) -> None:
    h1, h2 = (json.loads((root / f"out-{n}" / "rpsa.json").read_text())["history"] for n in (1, 2))
    assert len(h2) == len(h1) == measurements and len({h["k"] for h in h2}) > 1  # k moved after the warm-up
    for a, b in zip(h1, h2, strict=True):
        assert (b["step"], b["k"], b["frozen_share"]) == pytest.approx((a["step"], a["k"], a["frozen_share"]), abs=1e-6)
        assert b["conflict"] == pytest.approx(a["conflict"], abs=1e-6)
