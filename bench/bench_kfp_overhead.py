"""What a real stage task pays besides its work: interpreter start, imports, the KFP launcher (1 thread, 3 repeats).

Arms, interleaved: a bare interpreter (``python -c pass``); a fresh process that imports a stage module (generate,
judge, score: torch, transformers and peft come with them); a fresh process that runs the judge stage on 200
generated responses as the judge component does (GPU check, refusal judge: no model to load, so the rest is
overhead); the same ``judge.run`` call in this
warm process (the stage's work alone); and a KFP local-runner task of a one-line component against a direct call
of its function (the launcher's own cost).

Measured 2026-12-02 (2 shared cores): stage imports 2.5 s -> 0.3 s after the generate and score modules stopped
importing torch at import time (train's helpers, now read through ``safetax.artifacts``) and ``check_gpus`` stopped
importing torch for a stage that asked for no GPU.

Overhead of a real task = fresh judge task - warm judge call. Target: < 2.0 s per task (median), i.e. a real
stage's fixed cost, not a no-op's; also printed: the share of a task's wall time that is stage work.
"""

# No `from __future__ import annotations`: KFP reads the component's annotations as types.
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, summary, verdict  # noqa: E402

TARGET_S = 2.0
# What the judge component runs (less KFP's launcher, measured apart): the GPU check, then the stage.
JUDGE = ("from pathlib import Path; from safetax.stages import judge; from safetax.stages.runtime import check_gpus; "
         "check_gpus('judge', 0); judge.run(judge.JudgeConfig(), Path({gen!r}), Path({out!r}))")


def _gen_dir(root: Path) -> Path:
    """A finished generate output: 200 placeholder responses (100 safety, 100 over-refusal)."""
    from safetax.store import atomic_dir

    rows = [{"checkpoint": "base", "benchmark": kind, "kind": kind, "item_id": str(i), "sample": 0, "n_tokens": 9,
             "finished": True, "prompt": f"Explain placeholder task {i}.", "text": f"t\n</think>\n\nI'm sorry {i}."}
            for kind in ("safety", "overrefusal") for i in range(100)]
    with atomic_dir(root / "gen") as d:
        (d / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "gen"


def _kfp_launcher_overhead(repeats: int) -> tuple[float, float]:
    """Seconds per KFP local task of a one-line component, and per direct call of its function."""
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def add_one(x: int) -> int:
        return x + 1

    with tempfile.TemporaryDirectory() as root:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
        add_one(x=0)  # warm-up
        times = interleaved({"kfp task": lambda: add_one(x=1), "direct": lambda: add_one.python_func(x=1)}, repeats)
    return statistics.median(times["kfp task"]), statistics.median(times["direct"])


def _main(root: Path, repeats: int) -> bool:
    env = {**os.environ, **pin_threads(1)}
    gen = _gen_dir(root)

    def fresh(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    from safetax.stages import judge

    counter = {"n": 0}

    def warm() -> None:
        counter["n"] += 1
        judge.run(judge.JudgeConfig(), gen, root / f"warm{counter['n']}")

    warm()  # imports and first-call costs out of the way
    arms = {"python -c pass": lambda: fresh("pass")}
    arms |= {f"import stages.{s}": (lambda s=s: fresh(f"import safetax.stages.{s}")) for s in ("generate", "judge", "score")}
    arms |= {"fresh judge task": lambda: fresh(JUDGE.format(gen=str(gen), out=str(root / "fresh"))), "warm judge.run": warm}
    times = interleaved(arms, repeats)
    summary(times)
    kfp, direct = _kfp_launcher_overhead(repeats)
    task, work = statistics.median(times["fresh judge task"]), statistics.median(times["warm judge.run"])
    overhead = task - work
    print(f"  KFP local launcher: {kfp:.2f}s per one-line task vs {direct * 1e6:.0f}us direct (median)")
    print(f"  a real task (judge, 200 responses): {task:.2f}s, of which stage work {work:.2f}s ({work / task:.0%}); "
          f"overhead {overhead:.2f}s = {overhead / TARGET_S:.2f}x the {TARGET_S:.1f}s budget")
    return verdict(f"real stage overhead per task < {TARGET_S:.1f}s", overhead < TARGET_S)



def main(repeats: int = 3) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        return _main(Path(tmp), repeats)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
