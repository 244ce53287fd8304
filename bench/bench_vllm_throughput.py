"""vLLM output tokens/s at long outputs against the GPU's memory-bandwidth bound (GPU only).

A random-weight Qwen2 of ~1.5B parameters (bf16; the weights do not change the work of a decode step) generates
``--prompts`` sequences of ``--tokens`` tokens each (EOS ignored) in one ``LLM.generate`` call, as the generate stage
hands a checkpoint's prompts to vLLM. Decoding is memory-bound: every step reads all weights once and each running
sequence's KV cache, so with ``N`` sequences running

    tokens/s <= N * bandwidth / (weight bytes + N * mean context * KV bytes per token)

The bandwidth is measured here (the best of 5 device-to-device copies of 2 GiB: read + write), the KV cache's bytes
per token come from the model's config, and the mean context is the prompt plus half the output. The bench prints
the measured tokens/s (median of ``--repeats`` runs after a warm-up) as a fraction of that bound; target: >= 50 %
(an engine that keeps the GPU's memory busy). Needs a CUDA GPU and vllm (the safetax-vllm image); elsewhere SKIP.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import pin_threads, verdict  # noqa: E402

PROMPT_TOKENS = 64
TARGET = 0.5


def _model(path: Path, hidden: int = 2048, layers: int = 24) -> tuple[Path, int, int]:
    """A random ~1.5B Qwen2 (demo tokenizer); returns (path, weight bytes, KV-cache bytes per token)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safetax.demo import demo_tokenizer
    from safetax.generation.serving import weight_bytes

    tok = demo_tokenizer()
    torch.manual_seed(0)
    heads, kv_heads = 16, 4
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=int(5.5 * hidden), num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=8192,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    kv_per_token = 2 * layers * kv_heads * (hidden // heads) * 2  # K and V, bf16
    return path, weight_bytes(path), kv_per_token


def bandwidth() -> float:
    """Device memory bandwidth in bytes/s: the best of 5 copies of a 2 GiB tensor (each reads and writes it)."""
    import torch

    src = torch.empty(2**30, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        dst.copy_(src)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    moved = 2 * src.numel() * src.element_size()
    del src, dst
    torch.cuda.empty_cache()
    return moved / best


def bound(n: int, tokens: int, weights: int, kv_per_token: int, bw: float) -> float:
    """The memory-bandwidth bound on output tokens/s of ``n`` sequences decoding ``tokens`` tokens each.

    >>> round(bound(64, 4096, 3 * 10**9, 49152, 4.0e12))
    26546
    """
    context = PROMPT_TOKENS + tokens / 2
    return n * bw / (weights + n * context * kv_per_token)


def main(argv: list[str] | None = None) -> bool | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="sequences decoded at once (one LLM.generate call)")
    ap.add_argument("--tokens", type=int, default=4096, help="output tokens per sequence (EOS ignored)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    args = ap.parse_args(argv)
    pin_threads(1)
    import torch

    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU")
        return None
    if importlib.util.find_spec("vllm") is None:
        print("SKIP: vllm is not installed (run in the safetax-vllm image)")
        return None
    from vllm import LLM, SamplingParams

    bw = bandwidth()
    with tempfile.TemporaryDirectory() as tmp:
        path, weights, kv = _model(Path(tmp) / "model")
        llm = LLM(model=str(path), seed=0, gpu_memory_utilization=0.85, max_num_seqs=max(args.prompts, 1),
                  max_model_len=PROMPT_TOKENS + args.tokens + 8, enable_prefix_caching=True)
        requests = [{"prompt_token_ids": [5 + (i * 7 + j) % 50 for j in range(PROMPT_TOKENS)]} for i in range(args.prompts)]
        params = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=args.tokens, ignore_eos=True, seed=1)
        llm.generate(requests, SamplingParams(max_tokens=32, ignore_eos=True), use_tqdm=False)  # warm-up: graphs, caches
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outs = llm.generate(requests, params, use_tqdm=False)
            elapsed = time.perf_counter() - t0
            rates.append(sum(len(o.outputs[0].token_ids) for o in outs) / elapsed)
    limit = bound(args.prompts, args.tokens, weights, kv, bw)
    measured = statistics.median(rates)
    print(f"  {torch.cuda.get_device_name()}: bandwidth {bw / 1e12:.2f} TB/s (copy); model {weights / 1e9:.2f} GB, "
          f"KV {kv} B/token")
    print(f"  {args.prompts} sequences x {args.tokens} tokens: {measured:,.0f} tokens/s (median; min {min(rates):,.0f}, "
          f"max {max(rates):,.0f}); bandwidth bound {limit:,.0f} tokens/s: {measured / limit:.0%}")
    return verdict(f"vLLM reaches >= {TARGET:.0%} of the memory-bandwidth bound", measured / limit >= TARGET)


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result is False else 0)
