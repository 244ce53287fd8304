"""bf16 vs fp32 refusal SFT on a GPU (the train stage's `precision`): speed, peak memory and loss agreement.

Runs the real stages (prepare -> train) on a random Qwen2 of ~100M parameters with the demo tokenizer, with
precision=fp32 and precision=auto (bf16 where the GPU supports it), for LoRA and full fine-tuning: 3 interleaved
fp32/bf16 repeats per method (min and median), 1 CPU thread. Needs a CUDA GPU; on a CPU it prints SKIP.

Targets (each can fail): every epoch loss of bf16 within 0.05 of fp32's; full fine-tuning in bf16 >= 1.2x faster
and <= 0.9x the peak memory (measured on one H100, 2026-11-22: 1.44x, 0.80x); LoRA in bf16 <= 0.9x the peak
memory (measured: 0.59x; its speed is printed, not judged: autocast overhead dominates at this small size).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _harness import pin_threads, verdict  # noqa: E402


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


def main(repeats: int = 3) -> bool | None:
    pin_threads(1)
    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU (precision=auto trains in fp32 on a CPU: nothing to compare)")
        return None
    from safetax.stages import prepare, train

    passed = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = _model(root / "model")
        rows = [{"prompt": f"Explain restricted task {i} in detail. " * 4, "refusal": "I'm sorry, but I can't help with that."} for i in range(256)]
        (root / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        prepare.run(prepare.PrepareConfig(str(root / "r.jsonl"), str(model), max_length=512), root / "sft")
        for method in ("lora", "full"):
            runs: dict[str, list[tuple[float, list[float], float]]] = {"fp32": [], "auto": []}
            for rep in range(repeats):  # interleaved: fp32, bf16, fp32, bf16, ...
                for precision in runs:
                    cfg = train.TrainConfig(method=method, precision=precision, epochs=2, batch_size=16, learning_rate=1e-4)
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                    r = train.run(cfg, str(model), root / "sft", root / f"{method}-{precision}-{rep}")
                    torch.cuda.synchronize()
                    runs[precision].append((time.perf_counter() - t0, r.losses, torch.cuda.max_memory_allocated() / 2**30))
            t = {p: [x[0] for x in v] for p, v in runs.items()}
            mem = {p: max(x[2] for x in v) for p, v in runs.items()}
            losses = {p: v[0][1] for p, v in runs.items()}
            speed = statistics.median(t["fp32"]) / statistics.median(t["auto"])
            gap = max(abs(a - b) for a, b in zip(losses["fp32"], losses["auto"], strict=True))
            for p in runs:
                print(f"  {method} {p:>4}: min {min(t[p]):6.1f}s median {statistics.median(t[p]):6.1f}s, peak {mem[p]:.2f} GiB, "
                      f"epoch losses {[round(x, 3) for x in losses[p]]}")
            ok = gap <= 0.05 and mem["auto"] <= 0.9 * mem["fp32"] and (method == "lora" or speed >= 1.2)
            print(f"  {method}: bf16 {speed:.2f}x the speed (median), {mem['auto'] / mem['fp32']:.2f}x the memory, "
                  f"loss gap {gap:.3f}: {'ok' if ok else 'MISSED'}")
            passed &= ok
    return verdict("bf16 training matches fp32 losses with less memory (full FT: faster)", passed)


if __name__ == "__main__":
    result = main()
    raise SystemExit(0 if result is not False else 1)
