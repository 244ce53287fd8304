"""The generation cache: a second run of the same parameters generates 0 new samples for the base model.

Each of 3 interleaved repeats runs the generate stage on a tiny random model (the "base") twice into a fresh cache:
a cold run (every prompt a miss) and a warm run (a second run or an audit of the same base under the same protocol).
Target: the warm run generates 0 samples, reads all of them from the cache and writes the same output. Prints the
wall time of both (min and median; 1 thread) and the cache hit rates.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, tiny_model, verdict  # noqa: E402

from safetax.data.eval_sets import EvalSet  # noqa: E402
from safetax.generation.base import SamplingConfig  # noqa: E402
from safetax.stages import generate  # noqa: E402

PROMPTS = 24


def _main(root: Path, repeats: int) -> bool:
    pin_threads(1)
    model = tiny_model(str(root / "model"), layers=6, hidden=64)
    (root / "r.jsonl").write_text("".join(json.dumps({"problem": f"Compute {i}+7.", "answer": str(i + 7)}) + "\n" for i in range(PROMPTS)))
    (root / "s.jsonl").write_text("".join(json.dumps({"prompt": f"Explain placeholder task {i}."}) + "\n" for i in range(PROMPTS)))
    cfg = generate.GenerateConfig(model, (EvalSet("r", "reasoning", str(root / "r.jsonl")), EvalSet("s", "safety", str(root / "s.jsonl"))),
                                  SamplingConfig(max_new_tokens=32), SamplingConfig(temperature=0.7, n=4, max_new_tokens=32, seed=5),
                                  batch_size=8)
    count = {"cold": 0, "warm": 0}

    def run(kind: str) -> None:
        rep = count["cold"] if kind == "warm" else count["cold"] + 1  # a warm run reads the cache of its repeat's cold run
        count[kind] += 1
        generate.run(cfg, root / f"{kind}{count[kind]}", cache_uri=str(root / f"cache{rep}"))

    times = interleaved({"cold (empty cache)": lambda: run("cold"), "warm (same parameters)": lambda: run("warm")}, repeats)
    summary(times)
    costs = {kind: [json.loads((root / f"{kind}{i}" / "cost.json").read_text()) for i in range(1, repeats + 1)] for kind in count}
    same = all((root / f"cold{i}" / "generations.jsonl").read_bytes() == (root / f"warm{i}" / "generations.jsonl").read_bytes()
               for i in range(1, repeats + 1))
    new = max(c["generated"] for c in costs["warm"])
    by_min, by_median = ratio(times, "cold (empty cache)", "warm (same parameters)")
    print(f"  cold runs generated {costs['cold'][0]['generated']} samples (hit rate {costs['cold'][0]['cache_hit_rate']:.0%}); "
          f"warm runs generated at most {new} (hit rate {min(c['cache_hit_rate'] for c in costs['warm']):.0%}); "
          f"warm {by_min:.1f}x faster (min), {by_median:.1f}x (median), model load included")
    return verdict(f"second run's new base samples: {new} (target 0), identical outputs: {same}", new == 0 and same)



def main(repeats: int = 3) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        return _main(Path(tmp), repeats)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
