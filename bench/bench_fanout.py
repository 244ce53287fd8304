"""Per-checkpoint evaluation fan-out: the alignment pipeline with ``max_parallel_evaluations`` 2 vs 1, on KFP's local runner.

What runs: the real alignment pipeline (``build_alignment_pipeline``, compiled here for each platform setting and run by
``safetax.runner.run_local``, as ``safetax run`` does) on the cached demo model: one LoRA method (r=4 on the MLP, no
merge) for 4 epochs, i.e. 4 checkpoints, each evaluated in its own generate -> judge -> code -> score chain; two small
eval sets (``--rows`` each, through the eval sets' ``limit``), greedy, ``generation_cache="off"`` so that every chain
really generates and judges. The two arms differ only in ``PlatformConfig.max_parallel_evaluations`` (1 or 2), which
KFP compiles into the checkpoint loop's ``iteratorPolicy.parallelismLimit`` (checked in the compiled YAML).

How the local runner runs the loop (read in kfp 2.17.0, ``kfp/local/orchestrator/enhanced_dag_orchestrator.py``):
the DAG's tasks run one at a time in topological order, except a ParallelFor, whose iterations go to a thread pool of
``min(parallelismLimit or 2, 2)`` workers; each iteration runs its chain in order, one subprocess per task. So the
runner does honour ``parallelism`` (1 serialises the chains; 2, and "no limit", run two at a time: it caps every loop at
2 workers). Both arms are therefore expressed by the runner itself; nothing is re-implemented here.

What is timed: the evaluation phase only, first per-checkpoint task start to last end. The bench wraps the runner's
task dispatcher (``kfp.local.task_dispatcher.run_single_task_implementation``) to record every task's start and end in
this process; the per-checkpoint tasks are those of the components that the checkpoint loop (the ParallelFor beside the
method's ``analyze`` task in the compiled spec) runs, nested loops included. The top-level DAG, which holds the base
model's own chain, runs one task or loop at a time, so nothing else overlaps that phase. The peak number of concurrent
per-checkpoint tasks is printed and checked (1 and 2): a ratio from an arm that did not run as configured would mean
nothing. Also printed: each stage's mean task time per arm (a task that takes longer with two at once shows CPU
contention). Training, the base model's chain and analytics are outside the phase (the whole runs' times are printed
for reference).

Threads: 1 per measured process (``_harness.pin_threads``; the task subprocesses inherit it), so parallelism 2 can use
both cores of a 2-core machine. Interleaved A/B runs (1 vs 2), ``--repeats`` (default 3, the harness's minimum: about
7 minutes on 2 shared cores, each run a whole pipeline of ~25 tasks); min and median of the evaluation phase; target:
parallelism 2 takes <= 0.6x the wall time of parallelism 1 (median; 0.5x is the ideal on 2 cores). The machine's load
average is printed before and after: on shared cores the second chain competes with other work, which pulls the
ratio towards 1. Run parameters the pipeline gains later keep their defaults (e.g. ``eval_shards`` = 1: one chain per
checkpoint; with more, the shard loop's tasks count as per-checkpoint tasks too).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import interleaved, pin_threads, ratio, summary, verdict  # noqa: E402

TARGET = 0.6  # parallelism-2 wall time over parallelism-1 wall time; 0.5 is perfect scaling on 2 cores
CHECKPOINTS = 4  # one LoRA method, one checkpoint per epoch, no merge candidates
ANALYZE = "comp-analyze"  # the method's analyze task lists the checkpoints; the checkpoint loop is its sibling
METHOD = {"method": "lora", "name": "lora-r4-mlp", "lora_rank": 4, "lora_alpha": 16, "target_modules": "mlp",
          "learning_rate": 1e-3, "epochs": CHECKPOINTS, "merge": "none"}  # the demo's LoRA method, without its merge

Interval = tuple[str, float, float]  # (component name, start, end) in perf_counter seconds


class TaskClock:
    """Records each local-runner task's start and end by wrapping KFP's task dispatcher (thread-safe: the loop's
    iterations dispatch from a thread pool)."""

    def __init__(self) -> None:
        self.intervals: list[Interval] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TaskClock:
        from kfp.local import task_dispatcher

        self._module, self._original = task_dispatcher, task_dispatcher.run_single_task_implementation

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                with self._lock:
                    self.intervals.append((kwargs.get("component_name", "?"), t0, time.perf_counter()))

        task_dispatcher.run_single_task_implementation = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self._module.run_single_task_implementation = self._original


def eval_window(intervals: list[Interval], components: set[str]) -> list[Interval]:
    """The per-checkpoint tasks: those of ``components`` (the checkpoint loop's, from :func:`checkpoint_loop`)."""
    window = [iv for iv in intervals if iv[0] in components]
    if not window:
        raise RuntimeError(f"no task of {sorted(components)} ran (tasks run: {sorted({n for n, _, _ in intervals})})")
    return window


def peak_concurrency(intervals: list[Interval]) -> int:
    """The largest number of tasks running at one instant."""
    events = sorted([(s, 1) for _, s, _ in intervals] + [(e, -1) for _, _, e in intervals], key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def checkpoint_loop(spec: dict[str, Any]) -> tuple[int, set[str]]:
    """The checkpoint loop of a compiled alignment pipeline: its parallelism limit (0 = none) and the components of
    every task it runs (nested loops included): the ParallelFor in the DAG that holds the method's ``analyze`` task."""
    comps = spec["components"]
    dags = [comp["dag"]["tasks"] for comp in comps.values() if "dag" in comp]
    loops = [task for tasks in dags if any(t["componentRef"]["name"] == ANALYZE for t in tasks.values())
             for task in tasks.values() if "parameterIterator" in task or "artifactIterator" in task]
    if len(loops) != 1:
        raise RuntimeError(f"expected one ParallelFor beside the {ANALYZE!r} task, found {len(loops)}")
    leaves: set[str] = set()
    pending = [loops[0]["componentRef"]["name"]]
    while pending:  # a DAG component's tasks, down to the container components that run
        for task in comps[pending.pop()].get("dag", {}).get("tasks", {}).values():
            name = task["componentRef"]["name"]
            if "dag" in comps[name]:
                pending.append(name)
            else:
                leaves.add(name)
    return int(loops[0].get("iteratorPolicy", {}).get("parallelismLimit", 0)), leaves


def compile_for(parallelism: int, path: Path) -> set[str]:
    """Compile the alignment pipeline with ``max_parallel_evaluations=parallelism`` to ``path``; check that KFP wrote the
    limit into the checkpoint loop; return the components of the loop's tasks."""
    import yaml
    from kfp import compiler

    from safetax.platform import PlatformConfig
    from safetax.runner.pipelines.alignment import build_alignment_pipeline

    compiler.Compiler().compile(build_alignment_pipeline(replace(PlatformConfig(), max_parallel_evaluations=parallelism)), str(path))
    limit, components = checkpoint_loop(next(yaml.safe_load_all(path.read_text())))
    if limit != parallelism:
        raise RuntimeError(f"the compiled checkpoint loop's parallelism limit is {limit}, expected {parallelism}")
    return components


def _params(rows: int, max_new_tokens: int) -> dict[str, Any]:
    from safetax.demo import build_demo
    from safetax.presets import demo_params

    assets = build_demo()  # cached after the first build (about 10 minutes on one core)
    params = demo_params(assets, methods=[METHOD], safety_limit=rows, reasoning_limit=rows, max_new_tokens=max_new_tokens)
    return params | {"generation_cache": "off"}  # every chain generates and judges: no reuse across arms or repeats


def run_arm(parallelism: int, params: dict[str, Any], root: Path) -> list[Interval]:
    """One whole pipeline run with ``max_parallel_evaluations=parallelism`` under ``root``; its per-checkpoint tasks."""
    from safetax.runner import run_local

    root.mkdir(parents=True)
    compiled = root / "alignment.yaml"
    components = compile_for(parallelism, compiled)
    # The quiet console's stage lines would bury the figures (the runner's full log is under ``root``, deleted after).
    with TaskClock() as clock, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_local("alignment", params, root / "run", compiled=compiled, verbose=False)
    window = eval_window(clock.intervals, components)
    if len(window) < 4 * CHECKPOINTS:
        raise RuntimeError(f"parallelism {parallelism}: {len(window)} per-checkpoint tasks, expected at least {4 * CHECKPOINTS}")
    return window


def report(whole: dict[str, list[float]], tasks: dict[str, list[list[Interval]]]) -> bool:
    """Print the figures of every arm; the verdict: the ratio by the median, and each arm ran as configured."""
    phase = {name: [max(e for _, _, e in w) - min(s for _, s, _ in w) for w in runs] for name, runs in tasks.items()}
    peaks = {name: {peak_concurrency(w) for w in runs} for name, runs in tasks.items()}
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("whole pipeline run (training, base model and analytics included; for reference):")
    summary(whole)
    print("evaluation phase (first per-checkpoint task start to last end):")
    summary(phase)
    for name, runs in tasks.items():
        ivs = [iv for w in runs for iv in w]
        means = {n.removeprefix("comp-"): statistics.mean(e - s for m, s, e in ivs if m == n) for n in sorted({n for n, _, _ in ivs})}
        print(f"  {name}, mean task seconds: " + ", ".join(f"{n} {t:.1f}" for n, t in means.items()))
    by_min, by_median = ratio(phase, "parallelism 2", "parallelism 1")
    print(f"  parallelism 2 / parallelism 1: {by_min:.2f}x (min), {by_median:.2f}x (median); target <= {TARGET}x")
    honoured = peaks == {"parallelism 1": {1}, "parallelism 2": {2}}
    if not honoured:
        print(f"  the runner did not run the chains as configured: peak concurrency {peaks}")
    return verdict(f"fan-out of {CHECKPOINTS} checkpoints, parallelism 2 vs 1: {statistics.median(phase['parallelism 2']):.1f}s vs "
                   f"{statistics.median(phase['parallelism 1']):.1f}s (median)", by_median <= TARGET and honoured)


def main(repeats: int, rows: int, max_new_tokens: int) -> bool:
    pin_threads(1)
    params = _params(rows, max_new_tokens)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {CHECKPOINTS} checkpoints, {rows} rows per "
          f"eval set, {max_new_tokens} new tokens, generation cache off, 1 thread per process", flush=True)
    tasks: dict[str, list[list[Interval]]] = {"parallelism 1": [], "parallelism 2": []}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:

        def arm(parallelism: int) -> None:
            name = f"parallelism {parallelism}"
            window = run_arm(parallelism, params, Path(tmp) / f"p{parallelism}-{len(tasks[name])}")
            tasks[name].append(window)
            print(f"  {name}: evaluation phase {max(e for _, _, e in window) - min(s for _, s, _ in window):.1f}s, "
                  f"{len(window)} tasks, at most {peak_concurrency(window)} at once (load average {os.getloadavg()[0]:.1f})",
                  flush=True)

        whole = interleaved({"parallelism 1": lambda: arm(1), "parallelism 2": lambda: arm(2)}, repeats)
    return report(whole, tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved 1/2 pairs (>= 3; default 3: about 7 minutes on 2 shared cores)")
    parser.add_argument("--rows", type=int, default=8, help="rows of each of the two eval sets (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="generation budget per response (default 96, the demo's)")
    args = parser.parse_args()
    raise SystemExit(0 if main(args.repeats, args.rows, args.max_new_tokens) else 1)
