"""Batched vs one-at-a-time greedy generation on the demo model (target: >= 5x, identical outputs)."""

from __future__ import annotations

import time

from safetax.data.chat import render_prompt
from safetax.data.eval_sets import EvalSet, load_eval_set
from safetax.demo import build_demo
from safetax.generation.base import SamplingConfig
from safetax.generation.hf import HFBackend


def main(n_prompts: int = 64, max_new_tokens: int = 64) -> None:
    assets = build_demo()
    items, _ = load_eval_set(EvalSet("demo-arith", "reasoning", str(assets.reasoning_eval_path), limit=n_prompts))
    greedy = SamplingConfig(max_new_tokens=max_new_tokens)
    batched = HFBackend(str(assets.model_dir), batch_size=n_prompts)
    single = HFBackend(str(assets.model_dir), batch_size=1)
    prompts = [render_prompt(batched.tokenizer, it.prompt) for it in items]
    batched.generate(prompts[:2], greedy)  # warm-up

    t0 = time.perf_counter()
    out_b = batched.generate(prompts, greedy)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    out_s = single.generate(prompts, greedy)
    t_single = time.perf_counter() - t0

    same = sum(a[0].text == b[0].text for a, b in zip(out_b, out_s, strict=True))
    ratio = t_single / t_batched
    print(f"prompts: {len(prompts)}, max_new_tokens: {max_new_tokens}")
    print(f"one at a time: {t_single:.2f}s   batched: {t_batched:.2f}s   speed-up: {ratio:.1f}x (target >= 5x)")
    print(f"identical greedy outputs: {same}/{len(prompts)}")
    print("PASS" if ratio >= 5 and same == len(prompts) else "FAIL")


if __name__ == "__main__":
    main()
