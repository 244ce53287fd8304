"""Wall time of scoring all 164 HumanEval+ canonical solutions against the 120 s target, and the sandbox's cost.

Cold cache (canonical runs + candidates), warm cache (candidates only), both with the strongest isolation this
machine allows (logged), then warm with no isolation layer (trusted canonical code only): the last ratio is
what the namespaces, Landlock and seccomp cost.

Usage: ``python bench/bench_code_scoring.py [path/to/HumanEvalPlus-v0.1.10.jsonl.gz]``
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from safetax.benchmarks.registry import get_benchmark
from safetax.scoring.code import score_code
from safetax.scoring.sandbox import Isolation, isolation
from safetax.timing import setup_logging

TARGET_S = 120.0
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanevalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
log = logging.getLogger("bench_code_scoring")


def main() -> None:
    setup_logging()
    b = get_benchmark("humanevalplus")
    items = b.load(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT))
    responses = [f"r\n</think>\n\n```python\n{b.tasks[i.id]['prompt']}{b.tasks[i.id]['canonical_solution']}\n```"
                 for i in items]
    strongest = isolation()
    walls = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, iso in (("cold cache", strongest), ("warm cache", strongest), ("warm, no isolation", Isolation())):
            start = time.perf_counter()
            scores = score_code(responses, items, b.tasks, "humaneval", cache_dir=Path(cache), iso=iso)
            walls[label] = wall = time.perf_counter() - start
            passed = sum(s.value == 1.0 for s in scores)
            failing = [i.id for i, s in zip(items, scores) if s.value != 1.0]
            log.info("%s: %d/%d pass in %.1fs (target %.0fs, ratio %.2f); failing: %s",
                     label, passed, len(items), wall, TARGET_S, wall / TARGET_S, failing or "none")
    log.info("isolation (%s) costs x%.2f over none (warm cache)", strongest.describe(),
             walls["warm cache"] / walls["warm, no isolation"])


if __name__ == "__main__":
    main()
