"""bf16 vs fp32 refusal SFT on a GPU (the train stage's `precision`): speed ratio and loss agreement.

Runs the real stages (prepare -> train) on a random Qwen2 of ~100M parameters with the
demo tokenizer, once with precision=fp32 and once with precision=auto (bf16 where the GPU
supports it), for LoRA and full fine-tuning. Needs a CUDA GPU; prints a note and exits on CPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def _model(path: Path) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer

    tok = demo_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=1024, intermediate_size=4096, num_hidden_layers=8,
                      num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA GPU: bf16 training is only benchmarked on a GPU (precision=auto uses fp32 on CPU)")
        return
    from safetax.stages import prepare, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = _model(root / "model")
        rows = [{"prompt": f"Explain restricted task {i} in detail. " * 4, "refusal": "I'm sorry, but I can't help with that."} for i in range(256)]
        (root / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        prepare.run(prepare.PrepareConfig(str(root / "r.jsonl"), str(model), max_length=512), root / "sft")
        for method in ("lora", "full"):
            res = {}
            for precision in ("fp32", "auto"):
                cfg = train.TrainConfig(method=method, precision=precision, epochs=2, batch_size=16, learning_rate=1e-4)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                r = train.run(cfg, str(model), root / "sft", root / f"{method}-{precision}")
                torch.cuda.synchronize()
                res[precision] = (time.perf_counter() - t0, r.losses, torch.cuda.max_memory_allocated() / 2**30)
            (t32, l32, m32), (t16, l16, m16) = res["fp32"], res["auto"]
            print(f"{method}: fp32 {t32:.1f}s {m32:.2f} GiB, bf16 {t16:.1f}s {m16:.2f} GiB: speed-up {t32 / t16:.2f}x, memory {m16 / m32:.2f}x")
            print(f"{method}: epoch losses fp32 {[round(x, 3) for x in l32]} bf16 {[round(x, 3) for x in l16]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
