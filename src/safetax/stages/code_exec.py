"""Stage `code`: the model-written programs of HumanEval+ / MBPP+ run in a task of their own.

The trust boundary between the run store and model code. Three steps, in three places:

1. :func:`prepare` (in the judge task, which reads the run store): the extracted program of every code response,
   and the tasks (inputs, entry point, canonical solution) they answer, into a plain KFP artifact
   (``code_jobs/``): no store pointer, so the next task needs no store credential to read it.
2. :func:`execute` (the ``code`` task: no store credential or token in its environment, its egress denied by the
   chart's NetworkPolicy, label ``safetax.io/code-execution``): the trusted parent computes the expected
   outputs, runs every program in :mod:`safetax.scoring.sandbox` and compares the outputs itself
   (:func:`safetax.scoring.code.score_programs`) -> ``code_results.jsonl``.
3. The score stage reads the results (``code_results`` of :func:`safetax.stages.score.run`) and runs no code.

A program is the last fenced Python block of the final answer (:func:`safetax.scoring.code.extract_code`); a
response without one is unscored, as before.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetax.artifacts import GenerationRow, read_eval_sets, read_generations
from safetax.data.eval_sets import load_eval_set
from safetax.records import Score, read_jsonl, write_jsonl
from safetax.scoring.code import extract_code, score_programs
from safetax.store import atomic_dir, read_json, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
JOBS = "code_jobs.jsonl"  # one program per line: the response's keys, its eval set, task id and code (or null)
TASKS = "code_tasks.json"  # eval set -> {"dataset": "humaneval" | "mbpp", "tasks": {task id: EvalPlus row}}
RESULTS = "code_results.jsonl"  # one verdict per program: the response's keys + value / answer / reason
KEYS = ("checkpoint", "benchmark", "item_id", "sample")  # one response across stages (as the judge's)


def prepare(generations_dir: Path, out_dir: Path) -> int:
    """Write the programs of every code response in ``generations_dir`` and their tasks to ``out_dir``.

    Returns the number of programs (0: the run has no code benchmark, and ``out_dir`` holds empty files)."""
    jobs: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}
    rows: list[GenerationRow] | None = None
    for es in read_eval_sets(generations_dir):
        if es.kind != "reasoning" or not es.benchmark:
            continue
        items, bench = load_eval_set(es)
        dataset = str(getattr(bench, "dataset", ""))
        if not dataset:  # not an EvalPlus benchmark
            continue
        rows = rows if rows is not None else read_generations(generations_dir)
        by_id = {it.id: it for it in items}
        used: dict[str, Any] = {}
        for g in (r.generation for r in rows if r.generation.benchmark == es.name):
            item = by_id.get(g.item_id)
            if item is None:
                raise ValueError(f"eval set {es.name!r}: generated item id {g.item_id!r} is not in its data")
            tid = str(item.meta["task_id"])
            used[tid] = bench.tasks[tid]  # type: ignore[union-attr]
            jobs.append({"checkpoint": g.checkpoint, "benchmark": g.benchmark, "item_id": g.item_id, "sample": g.sample,
                         "task_id": tid, "code": extract_code(g.text)})
        tasks[es.name] = {"dataset": dataset, "tasks": used}
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / JOBS, jobs)
        write_json(tmp / TASKS, tasks)
    log.info("code jobs: %d program(s) of %d eval set(s)", sum(j["code"] is not None for j in jobs), len(tasks))
    return len(jobs)


def execute(jobs_dir: Path, out_dir: Path, workers: int = 2) -> dict[str, int]:
    """Run every program of ``jobs_dir`` (written by :func:`prepare`) in the sandbox; write their verdicts.

    Returns counts: ``passed``, ``failed``, ``unscored`` (no code block)."""
    jobs = read_jsonl(jobs_dir / JOBS)
    sets: Mapping[str, dict[str, Any]] = read_json(jobs_dir / TASKS)
    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        if j["benchmark"] not in sets:
            raise ValueError(f"{jobs_dir / JOBS}: program for eval set {j['benchmark']!r}, which {TASKS} does not hold")
        by_set[j["benchmark"]].append(j)
    rows: list[dict[str, Any]] = []
    with timed(f"run {len(jobs)} model-written program(s) in the sandbox"), atomic_dir(out_dir) as tmp:
        for name, mine in by_set.items():
            spec = sets[name]
            scores = score_programs([j["code"] for j in mine], [j["task_id"] for j in mine], spec["tasks"], spec["dataset"],
                                    workers=workers)
            rows += [{**{k: j[k] for k in KEYS}, "value": s.value, "answer": s.answer, "reason": s.reason}
                     for j, s in zip(mine, scores, strict=True)]
        write_jsonl(tmp / RESULTS, rows)
    counts = Counter("unscored" if r["value"] is None else "passed" if r["value"] == 1.0 else "failed" for r in rows)
    log.info("code results: %s", dict(counts))
    return {k: counts.get(k, 0) for k in ("passed", "failed", "unscored")}


def read_results(results_dir: Path) -> dict[tuple[Any, ...], Score]:
    """The verdicts of :func:`execute`, by response key (checkpoint, eval set, item id, sample)."""
    return {tuple(r[k] for k in KEYS): Score(r["value"], r["answer"], r["reason"])
            for r in read_jsonl(results_dir / RESULTS)}
