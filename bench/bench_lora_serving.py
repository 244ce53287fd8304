"""LoRA on vLLM: adapter requests vs merged-first, and Llama-Guard logit mode on vLLM vs transformers (GPU only).

Measures the constants of the platform's `lora_serving: auto` rule (safetax.generation.serving) on this GPU with a
random ~1B Qwen2 (bf16) and a random rank-16 adapter on every linear layer:

* `adapter_slowdown`: 1 - (output tokens/s with a LoRA request) / (tokens/s of the merged model), `--prompts`
  prompts x `--tokens` tokens each (EOS ignored: long outputs), 3 interleaved repeats, both engines alive;
* `merge_bytes_per_second`: 2 x the weight bytes / the merge's wall time (safetax's merge_adapter: read + write);
* `engine_start_seconds`: the merged engine's start minus the LoRA engine's (what a second start costs is the
  merged engine's whole start; printed too).

Target (can fail): with the measured constants the rule picks the serving that was faster for this run's tokens
(adapter time vs merge + merged time), and the measured slowdown is within vLLM's reported worst case (<= 0.5).

Then the judge: Llama-Guard-shaped random Llama (~1B) in logit mode, `LlamaGuardJudge(backend="hf")` vs
`backend="vllm"` on `--judge-prompts` guard prompts, 3 interleaved repeats. Target: P(unsafe) of the two backends
within 0.02 (bf16 kernels differ) and vLLM at least as fast as transformers; else keep `judge_backend: hf`.

Needs a CUDA GPU and vllm (the safetax-vllm image); elsewhere it prints SKIP. Put the printed constants under
`defaults.vllm` of the platform file (adapter_slowdown, merge_bytes_per_second, engine_start_seconds) and the
tokens/s of a real model's run under `defaults.tokens_per_second`.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, verdict  # noqa: E402

RANK = 16
GPU_SHARE = 0.35  # each of the two engines: both stay alive for interleaved repeats


def _model(path: Path, hidden: int = 2048, layers: int = 16, llama: bool = False) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer

    tok = demo_tokenizer()
    torch.manual_seed(0)
    cls, cfg_cls = (LlamaForCausalLM, LlamaConfig) if llama else (Qwen2ForCausalLM, Qwen2Config)
    cfg = cfg_cls(vocab_size=len(tok), hidden_size=hidden, intermediate_size=int(2.75 * hidden), num_hidden_layers=layers,
                  num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cls(cfg).to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16),
                           LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets, init_lora_weights=False))
    model.save_pretrained(out)
    return out


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def lora_serving(tmp: Path, prompts: int, tokens: int, repeats: int) -> bool:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from safetax.generation.backends import EngineSettings
    from safetax.generation.serving import choose_serving, merge_adapter, weight_bytes

    base = _model(tmp / "base")
    adapter = _adapter(base, tmp / "adapter")
    _, merge_s = _timed(lambda: merge_adapter(base, adapter, tmp / "merged"))
    size = weight_bytes(base)
    lora_llm, lora_start = _timed(lambda: LLM(model=str(base), enable_lora=True, max_lora_rank=RANK, seed=0,
                                             gpu_memory_utilization=GPU_SHARE, enable_prefix_caching=True))
    merged_llm, merged_start = _timed(lambda: LLM(model=str(tmp / "merged"), seed=0, gpu_memory_utilization=GPU_SHARE,
                                                 enable_prefix_caching=True))
    requests = [{"prompt_token_ids": [5 + (i * 7 + j) % 50 for j in range(64)]} for i in range(prompts)]  # distinct
    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    lora = LoRARequest("bench", 1, str(adapter))
    times = interleaved({
        "merged": lambda: merged_llm.generate(requests, params, use_tqdm=False),
        "adapter": lambda: lora_llm.generate(requests, params, lora_request=lora, use_tqdm=False),
    }, repeats)
    summary(times)
    by_min, by_median = ratio(times, "adapter", "merged")
    generated = prompts * tokens
    tps = generated / statistics.median(times["merged"])
    measured = EngineSettings(adapter_slowdown=max(0.0, min(0.99, 1 - 1 / by_median)), merge_bytes_per_second=2 * size / merge_s,
                              engine_start_seconds=max(0.0, merged_start - lora_start), tokens_per_second=tps)
    print(f"  merged model: {tps:,.0f} output tokens/s; adapter {by_median:.2f}x slower (median; min {by_min:.2f}x)")
    print(f"  merge of {size / 1e9:.2f} GB: {merge_s:.1f} s; engine starts: LoRA {lora_start:.1f} s, merged {merged_start:.1f} s")
    print("  measured constants (platform defaults.vllm):")
    for key in ("adapter_slowdown", "merge_bytes_per_second", "engine_start_seconds"):
        print(f"    {key}: {getattr(measured, key):.4g}")
    adapter_total = statistics.median(times["adapter"])
    merged_total = merge_s + measured.engine_start_seconds + statistics.median(times["merged"])
    faster = "merge" if merged_total < adapter_total else "adapter"
    chosen = choose_serving(str(adapter), generated, size, measured)
    print(f"  this run ({generated:,} tokens): adapter {adapter_total:.1f} s, merge-first {merged_total:.1f} s; rule: {chosen}")
    lora_llm = merged_llm = None  # release both engines (the timing lambdas hold the names, not the objects)
    gc.collect()
    tie = abs(adapter_total - merged_total) <= 0.05 * min(adapter_total, merged_total)
    ok = verdict("lora_serving rule picks the faster serving", chosen == faster or tie)
    return verdict("adapter slowdown within vLLM's reported worst case (<= 0.5)", measured.adapter_slowdown <= 0.5) and ok


def judge_backends(tmp: Path, n: int, repeats: int) -> bool:
    from safetax.judging.llama_guard import LlamaGuardJudge, render_guard_prompt

    guard = _model(tmp / "guard", llama=True)
    prompts = [f"Explain restricted task {i}." for i in range(n)]
    responses = [f"thinking {i}\n</think>\n\nHere is a long answer about task {i}. " * 8 for i in range(n)]
    hf = LlamaGuardJudge(str(guard), mode="logit", batch_size=32)
    vl = LlamaGuardJudge(str(guard), mode="logit", backend="vllm", gpu_memory_utilization=GPU_SHARE)
    times = interleaved({"hf": lambda: hf.judge(prompts, responses), "vllm": lambda: vl.judge(prompts, responses)}, repeats)
    summary(times)
    by_min, by_median = ratio(times, "hf", "vllm")
    rendered = [render_guard_prompt(p, r.split("</think>")[1]) for p, r in zip(prompts, responses, strict=True)]
    hf_p = [x for i in range(0, n, 32) for x in hf.unsafe_probabilities(rendered[i:i + 32])]  # one forward per 32
    pairs = [(a, b) for a, b in zip(hf_p, vl.unsafe_probabilities(rendered), strict=True) if a is not None and b is not None]
    diff = max(abs(a[0] - b[0]) for a, b in pairs)
    print(f"  vLLM logit mode {by_median:.2f}x the speed of transformers (median; min {by_min:.2f}x); max |dP(unsafe)| {diff:.4f}")
    ok = verdict("judge backends agree on P(unsafe) (<= 0.02)", diff <= 0.02)
    return verdict("judge on vLLM at least as fast as transformers (else keep judge_backend: hf)", by_median >= 1.0) and ok


def main(argv: list[str] | None = None) -> bool | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--judge-prompts", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pin_threads(1)
    import torch

    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU (vLLM serving and its LoRA kernels need one)")
        return None
    if importlib.util.find_spec("vllm") is None:
        print("SKIP: vllm is not installed (run in the safetax-vllm image)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        serving = lora_serving(Path(tmp), args.prompts, args.tokens, args.repeats)
        judging = judge_backends(Path(tmp), args.judge_prompts, args.repeats)
    return serving and judging


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result is False else 0)
