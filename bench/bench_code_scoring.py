"""HumanEval+ scoring in the sandbox: canonical, wrong and timing-out programs; time against the 120 s budget.

The first ``--tasks`` HumanEval+ tasks (default 64; 164 for all) are scored three ways at once: the canonical
solution (must pass), the prompt with ``return None`` as its body (must fail: a wrong answer, fast) and, for every
8th task, an endless loop (must fail as a timeout, within its per-input limits). A cold pass (canonical reference
outputs computed and cached) is timed against the budget of 120 s for all 164 canonical solutions on 2 cores,
scaled to the tasks scored (120 s x tasks / 164, for the canonical part); then 3 interleaved repeats of the warm
mixed set with the strongest isolation this machine allows vs none (trusted code only: what the namespaces,
Landlock and seccomp cost), min and median.

PASS: every canonical program passes, every wrong one fails, every loop fails with a timeout, and the cold canonical
scoring is within its budget.

Usage: ``python bench/bench_code_scoring.py [--tasks N] [--data path/to/HumanEvalPlus-v0.1.10.jsonl.gz]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, verdict  # noqa: E402

from safetax.benchmarks.registry import get_benchmark  # noqa: E402
from safetax.scoring.code import score_code  # noqa: E402
from safetax.scoring.sandbox import Isolation, isolation  # noqa: E402

BUDGET_S, ALL_TASKS = 120.0, 164
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanevalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"


def _response(code: str) -> str:
    return f"r\n</think>\n\n```python\n{code}\n```"


def main(tasks: int, data: str, repeats: int = 3) -> bool:
    pin_threads(1)
    b = get_benchmark("humanevalplus")
    items = b.load(data)[:tasks]
    prompt = {i.id: b.tasks[i.id]["prompt"] for i in items}
    canonical = [_response(prompt[i.id] + b.tasks[i.id]["canonical_solution"]) for i in items]
    wrong = [_response(prompt[i.id] + "    return None\n") for i in items]
    loops = [_response(prompt[i.id] + "    while True:\n        pass\n") for i in items[::8]]
    mixed, mixed_items = canonical + wrong + loops, items + items + items[::8]
    strongest = isolation()
    print(f"{len(items)} tasks: {len(canonical)} canonical, {len(wrong)} wrong, {len(loops)} endless loops; "
          f"isolation: {strongest.describe()}")
    out: dict[str, list] = {}  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        score_code(canonical, items, b.tasks, "humaneval", cache_dir=Path(cache), iso=strongest)
        cold = time.perf_counter() - t0
        times = interleaved({
            "warm, isolated": lambda: out.__setitem__("iso", score_code(mixed, mixed_items, b.tasks, "humaneval", cache_dir=Path(cache), iso=strongest)),
            "warm, no isolation": lambda: out.__setitem__("none", score_code(mixed, mixed_items, b.tasks, "humaneval", cache_dir=Path(cache), iso=Isolation())),
        }, repeats)
    summary(times)
    scores = out["iso"]
    n, w = len(canonical), len(wrong)
    good = sum(s.value == 1.0 for s in scores[:n])
    bad = sum(s.value == 0.0 for s in scores[n : n + w])
    timeouts = sum(s.value == 0.0 and "timeout" in s.reason for s in scores[n + w :])
    agree = sum(a.value == c.value for a, c in zip(out["iso"], out["none"], strict=True))
    budget = BUDGET_S * len(items) / ALL_TASKS
    by_min, by_median = ratio(times, "warm, isolated", "warm, no isolation")
    print(f"  cold canonical scoring: {cold:.1f}s = {cold / budget:.2f}x its budget ({budget:.0f}s = 120s x {len(items)}/164)")
    print(f"  canonical pass {good}/{n}; wrong fail {bad}/{w}; loops time out {timeouts}/{len(loops)}; "
          f"isolated and bare verdicts agree {agree}/{len(mixed)}; isolation costs {by_min:.2f}x (min), {by_median:.2f}x (median)")
    return verdict("code scoring verdicts and time", good == n and bad == w and timeouts == len(loops) and cold <= budget)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=64, help="HumanEval+ tasks scored (164: all)")
    parser.add_argument("--data", default=str(DEFAULT), help="the HumanEval+ file")
    args = parser.parse_args()
    raise SystemExit(0 if main(args.tasks, args.data) else 1)
