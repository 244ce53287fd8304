"""The train stage's throughput against a plain transformers `Trainer` and TRL's `SFTTrainer` (+ PEFT).

Same random Qwen2 (demo tokenizer), same tokenized refusal data (prompt tokens masked), same LoRA
(r=4 on the MLP, alpha 16, dropout 0.05), batch 8, 64 optimiser steps, AdamW with cosine decay, grad
clip 1.0, fp32 on the CPU, one thread per child (`_harness.pin_threads`). Four runners, each in a fresh child
process, interleaved over `--repeats` rounds (at least 3); the min and the median time of each are printed:

- `loop`: safetax's training loop alone (`safetax.training.sft.train_loop`);
- `stage`: the whole train stage (`safetax.stages.train.run`: load, checks, the epoch's checkpoint and
  resumable state, the manifest);
- `hf`: `transformers.Trainer` on the same PEFT model and collator;
- `trl`: `trl.SFTTrainer` with `peft_config` on the pre-tokenized data (completion-only loss), if trl is installed.

Prints tokens/s (by the min and the median time), the mean loss and the peak RSS of each, and the ratios. Target:
the stage >= 1.0x the HF Trainer's tokens/s by the median time: PASS or FAIL (exit status 1 on FAIL, or when a runner
failed). Usage: `.venv/bin/python bench/bench_train_vs_hf.py [--repeats 3] [--steps 64]` (`--steps 8` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import pin_threads, verdict  # noqa: E402

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


def _child(runner: str, root: Path, env: dict[str, str]) -> dict[str, float] | None:
    proc = subprocess.run([sys.executable, __file__, "--child", runner, str(root)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{runner}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(root: Path, runners: tuple[str, ...], repeats: int) -> dict[str, list[dict[str, float]]]:
    """Every runner ``repeats`` times, interleaved (a slow moment of the machine hits every runner alike)."""
    env = os.environ | pin_threads(1) | {"SAFETAX_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict[str, float]]] = {runner: [] for runner in runners}
    for _ in range(repeats):
        for runner in runners:
            r = _child(runner, root, env)
            if r is not None:
                runs[runner].append(r)
    return runs


def _report(runs: dict[str, list[dict[str, float]]]) -> tuple[float, float]:
    """Print each runner's figures and the ratios (tokens/s by the median time); the stage over the HF Trainer by the
    min and by the median time."""
    tps: dict[str, float] = {}
    fastest: dict[str, float] = {}
    for runner, rs in runs.items():
        if not rs:
            continue
        secs = [r["seconds"] for r in rs]
        tps[runner], fastest[runner] = rs[0]["tokens"] / statistics.median(secs), rs[0]["tokens"] / min(secs)
        print(f"{runner:>5}: {rs[0]['tokens'] / min(secs):9.0f} tokens/s (min time {min(secs):6.2f}s), {tps[runner]:9.0f} "
              f"tokens/s (median {statistics.median(secs):6.2f}s, {len(rs)} runs)  loss {rs[0]['loss']:.4f}  "
              f"peak +{statistics.median(r['peak_mib'] for r in rs):.0f} MiB (median)")
    peak = {k: statistics.median(r["peak_mib"] for r in rs) for k, rs in runs.items() if rs}
    for other in ("hf", "trl"):
        if other in tps and "loop" in tps and "stage" in tps:
            print(f"loop / {other}: {tps['loop'] / tps[other]:.2f}x  stage / {other}: {tps['stage'] / tps[other]:.2f}x  "
                  f"peak memory loop / {other}: {peak['loop'] / max(1e-9, peak[other]):.2f}x (medians)")
    if "stage" in tps and "loop" in tps:
        print(f"stage / loop: {tps['stage'] / tps['loop']:.2f}x (median)")
    if "hf" not in tps:
        return math.nan, math.nan
    return fastest.get("stage", 0.0) / fastest["hf"], tps.get("stage", 0.0) / tps["hf"]


def main() -> bool:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every runner (>= 3)")
    ap.add_argument("--steps", type=int, default=64, help="optimiser steps of batch 8 (default 64; 8 for a quick run)")
    ap.add_argument("--child", nargs=2, metavar=("RUNNER", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_run(args.child[0], Path(args.child[1]))))
        return True
    if args.repeats < 3:
        ap.error(f"--repeats must be >= 3 (min and median of interleaved runs), got {args.repeats}")
    try:
        import trl  # noqa: F401

        runners = RUNNERS
    except ImportError:
        runners = RUNNERS[:3]
        print("trl not installed (the `bench` extra): comparing with the HF Trainer only")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _prepare(root, args.steps)
        runs = _measure(root, runners, args.repeats)
    by_min, ratio = _report(runs)
    complete = all(len(rs) == args.repeats for rs in runs.values())
    if not complete:
        print("a runner failed in some rounds (its error is above): no verdict can rest on it")
    return verdict(f"the stage at {by_min:.2f}x (min), {ratio:.2f}x (median) the HF Trainer's tokens/s (target >= {TARGET:.1f}x "
                   "by the median)",
                   complete and ratio >= TARGET)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
