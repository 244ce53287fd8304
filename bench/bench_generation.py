"""Batched vs one-at-a-time generation on the demo model, greedy and seeded sampling (target: >= 5x, identical).

1 thread; a warm-up, then 3 interleaved repeats (min and median). Identical outputs: greedy, and seeded sampling
(each sample's stream is seeded per prompt, so batching must not change it).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, verdict  # noqa: E402

from safetax.data.chat import render_prompt  # noqa: E402
from safetax.data.eval_sets import EvalSet, load_eval_set  # noqa: E402
from safetax.demo import build_demo  # noqa: E402
from safetax.generation.base import SamplingConfig  # noqa: E402
from safetax.generation.hf import HFBackend  # noqa: E402


def main(n_prompts: int = 32, max_new_tokens: int = 64) -> bool:
    pin_threads(1)
    assets = build_demo()
    items, _ = load_eval_set(EvalSet("demo-arith", "reasoning", str(assets.reasoning_eval_path), limit=n_prompts))
    greedy = SamplingConfig(max_new_tokens=max_new_tokens)
    sampled = SamplingConfig(temperature=0.7, top_p=0.95, n=2, max_new_tokens=max_new_tokens, seed=3)
    batched = HFBackend(str(assets.model_dir), batch_size=n_prompts)
    single = HFBackend(str(assets.model_dir), batch_size=1)
    prompts = [render_prompt(batched.tokenizer, it.prompt) for it in items]
    batched.generate(prompts[:2], greedy)  # warm-up
    single.generate(prompts[:1], greedy)
    out: dict[str, list] = {}  # type: ignore[type-arg]
    times = interleaved({"batched": lambda: out.__setitem__("b", batched.generate(prompts, greedy)),
                         "one at a time": lambda: out.__setitem__("s", single.generate(prompts, greedy))})
    summary(times)
    same = sum(a[0].text == b[0].text for a, b in zip(out["b"], out["s"], strict=True))
    sb, ss = batched.generate(prompts, sampled), single.generate(prompts, sampled)
    same_sampled = sum([c.text for c in a] == [c.text for c in b] for a, b in zip(sb, ss, strict=True))
    by_min, by_median = ratio(times, "one at a time", "batched")
    print(f"  {len(prompts)} prompts, {max_new_tokens} new tokens: batched {by_min:.1f}x (min), {by_median:.1f}x (median) faster; "
          f"identical greedy {same}/{len(prompts)}, identical seeded samples {same_sampled}/{len(prompts)}")
    return verdict("batched generation >= 5x, identical outputs",
                   by_median >= 5 and same == len(prompts) and same_sampled == len(prompts))


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
