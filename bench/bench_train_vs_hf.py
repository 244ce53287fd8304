"""The train stage's throughput against a plain transformers `Trainer` and TRL's `SFTTrainer` (+ PEFT).

Same random Qwen2 (demo tokenizer), same tokenized refusal data (prompt tokens masked), same LoRA
(r=4 on the MLP, alpha 16, dropout 0.05), batch 8, 64 optimiser steps, AdamW with cosine decay, grad
clip 1.0, fp32 on the CPU, one thread. Four runners, each in a fresh child process, interleaved over
`--repeats` rounds; the best time of each counts:

- `loop`: safetax's training loop alone (`safetax.training.sft.train_loop`);
- `stage`: the whole train stage (`safetax.stages.train.run`: load, checks, the epoch's checkpoint and
  resumable state, the manifest);
- `hf`: `transformers.Trainer` on the same PEFT model and collator;
- `trl`: `trl.SFTTrainer` with `peft_config` on the pre-tokenized data (completion-only loss), if trl is installed.

Prints tokens/s, the mean loss and the peak RSS of each, and the ratios. Target: the stage >= 1.0x the
HF Trainer (PASS/FAIL). Usage: `.venv/bin/python bench/bench_train_vs_hf.py [--repeats 3] [--steps 64]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH, LR, SEED = 8, 5e-5, 42
LORA = {"r": 4, "lora_alpha": 16.0, "lora_dropout": 0.05, "target_modules": ["gate_proj", "up_proj", "down_proj"]}
RUNNERS = ("loop", "stage", "hf", "trl")
TARGET = 1.0  # the stage's tokens/s over the HF Trainer's


def _prepare(root: Path, steps: int) -> None:
    """A random Qwen2 (hidden 256, 4 layers) and steps x BATCH tokenized refusal examples."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer
    from safetax.stages import prepare

    tok = demo_tokenizer()
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                 num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    rows = [{"prompt": f"Explain restricted task {i} step by step, with all the details. " * (1 + i % 3),
             "refusal": "I'm sorry, but I can't help with that. " * (1 + i % 2)} for i in range(steps * BATCH)]
    (root / "refusals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare.run(prepare.PrepareConfig(str(root / "refusals.jsonl"), str(root / "model"), max_length=256), root / "sft")


def _peft_model(root: Path) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(root / "model")
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))  # type: ignore[arg-type]


def _run(runner: str, root: Path) -> dict[str, float]:
    """One measurement in this (fresh) process: seconds of training, its token count, mean loss, peak RSS."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from _rss import peak_increase, reset_peak

    from safetax.records import read_jsonl
    from safetax.stages.prepare import SFT_FILE

    torch.set_num_threads(1)
    examples = read_jsonl(root / "sft" / SFT_FILE)
    tokens = sum(len(e["input_ids"]) for e in examples)
    baseline = reset_peak()
    start = time.perf_counter()
    loss = {"loop": _loop, "stage": _stage, "hf": _hf, "trl": _trl}[runner](root, examples)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens, "loss": loss, "peak_mib": peak_increase(baseline) / 2**20}


def _loop(root: Path, examples: list[dict[str, Any]]) -> float:
    from safetax.training.sft import LoopConfig, train_loop

    model = _peft_model(root)
    cfg = LoopConfig(epochs=1, learning_rate=LR, weight_decay=1e-4, batch_size=BATCH, grad_accum=1, warmup_ratio=0.0,
                     grad_clip=1.0, seed=SEED, bf16=False)
    return train_loop(model, examples, model.config.pad_token_id, cfg, lambda e, l: None)[0]


def _stage(root: Path, examples: list[dict[str, Any]]) -> float:
    from safetax.stages import train

    cfg = train.TrainConfig(method="lora", epochs=1, batch_size=BATCH, learning_rate=LR, seed=SEED, lora_rank=LORA["r"],
                            lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"], target_modules="mlp")
    out = Path(tempfile.mkdtemp(dir=root))
    return train.run(cfg, str(root / "model"), root / "sft", out / "train").losses[0]


def _hf_args(cls: Any, out: Path, **extra: Any) -> Any:
    return cls(output_dir=str(out), per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=LR, weight_decay=1e-4,
               lr_scheduler_type="cosine", warmup_steps=0, max_grad_norm=1.0, logging_steps=10**6, save_strategy="no",
               report_to=[], use_cpu=True, dataloader_num_workers=0, seed=SEED, disable_tqdm=True, **extra)


def _hf(root: Path, examples: list[dict[str, Any]]) -> float:
    from transformers import Trainer, TrainingArguments

    from safetax.training.sft import collate

    model = _peft_model(root)
    pad = model.config.pad_token_id
    args = _hf_args(TrainingArguments, Path(tempfile.mkdtemp(dir=root)), remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=lambda b: collate(b, pad))  # type: ignore[arg-type]
    return float(trainer.train().training_loss)


def _trl(root: Path, examples: list[dict[str, Any]]) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = [{"input_ids": e["input_ids"], "completion_mask": [int(t != -100) for t in e["labels"]]} for e in examples]
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(root / "model")
    args = _hf_args(SFTConfig, Path(tempfile.mkdtemp(dir=root)), max_length=None, packing=False, completion_only_loss=True,
                    dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))  # type: ignore[arg-type]
    return float(trainer.train().training_loss)


def _child(runner: str, root: Path) -> dict[str, float] | None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SAFETAX_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, __file__, "--child", runner, str(root)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{runner}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--child", nargs=2, metavar=("RUNNER", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_run(args.child[0], Path(args.child[1]))))
        return
    try:
        import trl  # noqa: F401

        runners = RUNNERS
    except ImportError:
        runners = RUNNERS[:3]
        print("trl not installed (the `bench` extra): comparing with the HF Trainer only")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _prepare(root, args.steps)
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every runner alike
            for runner in runners:
                r = _child(runner, root)
                if r is not None and (runner not in best or r["seconds"] < best[runner]["seconds"]):
                    best[runner] = r
    for runner, r in best.items():
        print(f"{runner:>5}: {r['tokens'] / r['seconds']:9.0f} tokens/s  {r['seconds']:6.2f}s  loss {r['loss']:.4f}  "
              f"peak +{r['peak_mib']:.0f} MiB")
    tps = {k: v["tokens"] / v["seconds"] for k, v in best.items()}
    for other in ("hf", "trl"):
        if other in tps and "loop" in tps:
            print(f"loop / {other}: {tps['loop'] / tps[other]:.2f}x  stage / {other}: {tps['stage'] / tps[other]:.2f}x  "
                  f"peak memory loop / {other}: {best['loop']['peak_mib'] / max(1e-9, best[other]['peak_mib']):.2f}x")
    if "stage" in tps and "loop" in tps:
        print(f"stage / loop: {tps['stage'] / tps['loop']:.2f}x")
    ratio = tps.get("stage", 0.0) / tps["hf"] if "hf" in tps else math.nan
    print(f"{'PASS' if ratio >= TARGET else 'FAIL'}: the stage at {ratio:.2f}x the HF Trainer (target >= {TARGET:.1f}x)")


if __name__ == "__main__":
    main()
