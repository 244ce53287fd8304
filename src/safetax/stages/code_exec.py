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

Resume. :func:`execute` runs the programs in chunks of ``chunk_jobs`` (fixed by count over the job order) and keeps
each finished chunk's verdicts; a rerun (a KFP retry after a preemption, in a new pod) reads them back and runs only the
other chunks. The code task holds no store credential, so :func:`prepare` (holding it) writes ``code_chunks.json``: for
each chunk object of the task's chunk area in the run store a pre-signed GET, PUT and DELETE URL, valid for that object
only and for ``url_ttl_s`` seconds. The trusted parent uses them, and only while the sandbox keeps programs from
reading that file (:func:`hidden_from_code`); the programs have no network either. A chunk read back is used only when
each of its rows is the verdict of that chunk's program (:func:`chunk_problem`); anything else is run again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetax.artifacts import GenerationRow, read_eval_sets, read_generations
from safetax.data.eval_sets import load_eval_set
from safetax.records import Score, read_jsonl, write_jsonl
from safetax.resume import ChunkArea, Chunks, ChunkUrls, UrlChunks, chunk_size, chunks, fingerprint
from safetax.scoring.code import REFERENCE_FAILED, extract_code, score_programs
from safetax.scoring.sandbox import Isolation, isolation, read_paths
from safetax.store import atomic_dir, read_json, write_json
from safetax.store.manifest import sha256_file
from safetax.store.uri import parse_store_uri
from safetax.timing import timed

log = logging.getLogger(__name__)
JOBS = "code_jobs.jsonl"  # one program per line: the response's keys, its eval set, task id and code (or null)
TASKS = "code_tasks.json"  # eval set -> {"dataset": "humaneval" | "mbpp", "tasks": {task id: EvalPlus row}}
RESULTS = "code_results.jsonl"  # one verdict per program: the response's keys + value / answer / reason
KEYS = ("checkpoint", "benchmark", "item_id", "sample")  # one response across stages (as the judge's)
CHUNKS = "code_chunks.json"  # how the code task resumes: chunk size, the jobs' fingerprint, the chunks' URLs or directory
FIELDS = frozenset(KEYS) | {"value", "answer", "reason"}  # a verdict row (code_results.jsonl and each chunk)
# Programs per chunk, the unit of resume: ~36 chunks for HumanEval+ and MBPP+ x 8 samples. Each chunk waits for its
# slowest program (<= 60 s) before the next starts, so larger chunks lose less to that tail, smaller ones less to a kill.
CHUNK_JOBS = 128
# How long the chunk URLs live (s): the code task's queueing, run and retries after the judge task (SigV4: <= 7 days).
URL_TTL_S = 3 * 86400


def prepare(generations_dir: Path, out_dir: Path, partial_uri: str = "", *, chunk_jobs: int = CHUNK_JOBS,
            url_ttl_s: int = URL_TTL_S) -> int:
    """Write the programs of every code response in ``generations_dir``, their tasks and the code task's chunk plan
    (:func:`plan_chunks`, with ``partial_uri``) to ``out_dir``.

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
        plan_chunks(tmp, partial_uri, chunk_jobs=chunk_jobs, url_ttl_s=url_ttl_s)
    log.info("code jobs: %d program(s) of %d eval set(s)", sum(j["code"] is not None for j in jobs), len(tasks))
    return len(jobs)


def plan_chunks(jobs_dir: Path, partial_uri: str = "", *, chunk_jobs: int = CHUNK_JOBS, url_ttl_s: int = URL_TTL_S) -> None:
    """Write ``code_chunks.json`` beside the jobs: how :func:`execute` cuts them into chunks, and where it keeps them.

    ``partial_uri``, the code task's chunk area (``<store>/<run>/partial/code/<target>``): ``s3://`` -> a pre-signed
    GET, PUT and DELETE URL per chunk object, valid ``url_ttl_s`` seconds (this task holds the store credential, the
    code task none); a local path -> that directory (a local run has no pod boundary); "" -> neither: the code task
    keeps its chunks in its own output directory (a retry in a new pod starts over). Chunks that an earlier attempt
    left for other jobs are removed."""
    if isinstance(chunk_jobs, bool) or not isinstance(chunk_jobs, int) or chunk_jobs < 1:
        raise ValueError(f"chunk_jobs should be an integer >= 1 (programs per chunk), got {chunk_jobs!r}")
    n_jobs = len(read_jsonl(jobs_dir / JOBS))
    size = chunk_size(n_jobs, chunk_jobs)  # at most a tenth of the programs: a kill reruns <= 10 %
    fp = jobs_fingerprint(jobs_dir, size)
    plan: dict[str, Any] = {"fingerprint": fp, "chunk_jobs": size}
    if partial_uri:
        area = ChunkArea(partial_uri, fp)
        names = chunk_names(n_jobs, size)
        if parse_store_uri(partial_uri, "partial_uri").is_s3:
            from safetax.store.s3 import PRESIGN_METHODS, S3Store, parse_uri

            store = S3Store()
            store.ensure_bucket(parse_uri(partial_uri)[0])
            plan["verify_tls"] = store.settings.cert_check  # a self-signed store (SAFETAX_S3_INSECURE): not a secret
            plan["chunks"] = {n: {m.lower(): store.presign(m, area.uri_of(n), url_ttl_s) for m in PRESIGN_METHODS} for n in names}
            plan["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + url_ttl_s))
        else:
            plan["dir"] = partial_uri
    write_json(jobs_dir / CHUNKS, plan)


def jobs_fingerprint(jobs_dir: Path, chunk_jobs: int) -> str:
    """What the chunks of ``jobs_dir``'s programs depend on: the job and task files, byte for byte, and the chunk size."""
    return fingerprint({"jobs": sha256_file(jobs_dir / JOBS), "tasks": sha256_file(jobs_dir / TASKS), "chunk_jobs": chunk_jobs})


def chunk_names(n_jobs: int, chunk_jobs: int) -> list[str]:
    """The chunks of ``n_jobs`` programs in chunks of ``chunk_jobs``, in job order.

    >>> chunk_names(5, 2)
    ['00000', '00001', '00002']
    """
    return [f"{c:05d}" for c in range(-(-n_jobs // chunk_jobs))]


def execute(jobs_dir: Path, out_dir: Path, workers: int = 2, *, iso: Isolation | None = None) -> dict[str, int]:
    """Run every program of ``jobs_dir`` (written by :func:`prepare`) in the sandbox; write their verdicts.

    Chunk by chunk: a chunk an earlier attempt finished is read back instead (see the module docstring).

    Returns counts: ``passed``, ``failed``, ``unscored`` (no code block, or the task's reference solution failed on
    some input); ``executed`` (programs run in the sandbox now) and ``resumed`` (responses whose verdict was read
    back from a chunk)."""
    jobs = read_jsonl(jobs_dir / JOBS)
    sets: Mapping[str, dict[str, Any]] = read_json(jobs_dir / TASKS)
    for j in jobs:
        if j["benchmark"] not in sets:
            raise ValueError(f"{jobs_dir / JOBS}: program for eval set {j['benchmark']!r}, which {TASKS} does not hold")
    iso = iso if iso is not None else isolation()
    size, area = _chunk_store(jobs_dir, out_dir, iso)
    rows: list[dict[str, Any]] = []
    done = Counter[str]()
    with timed(f"run {len(jobs)} model-written program(s) in the sandbox"):
        for name, mine in zip(chunk_names(len(jobs), size), chunks(jobs, size), strict=True):
            got = area.get(name)
            why = "missing" if got is None else chunk_problem(got, mine)
            if why is None and got is not None:
                rows += got
                done["resumed"] += len(mine)
                continue
            if got is not None:
                log.warning("code chunk %s: %s; its programs run again", name, why)
            made = _run_chunk(mine, sets, workers, iso)
            area.write(name, made)
            rows += made
            done["executed"] += sum(j["code"] is not None for j in mine)
        with atomic_dir(out_dir) as tmp:
            write_jsonl(tmp / RESULTS, rows)
    area.clear()
    counts = Counter("unscored" if r["value"] is None else "passed" if r["value"] == 1.0 else "failed" for r in rows)
    log.info("code results: %s; %d program(s) run, %d verdict(s) resumed", dict(counts), done["executed"], done["resumed"])
    return {k: counts.get(k, 0) for k in ("passed", "failed", "unscored")} | {k: done[k] for k in ("executed", "resumed")}


def _run_chunk(mine: Sequence[dict[str, Any]], sets: Mapping[str, dict[str, Any]], workers: int, iso: Isolation) -> list[dict[str, Any]]:
    """The verdict rows of one chunk's programs, in its order (its programs may answer tasks of several eval sets)."""
    by_set: dict[str, list[int]] = defaultdict(list)
    for k, j in enumerate(mine):
        by_set[j["benchmark"]].append(k)
    verdicts: dict[int, Score] = {}
    for name, ks in by_set.items():
        spec = sets[name]
        scores = score_programs([mine[k]["code"] for k in ks], [mine[k]["task_id"] for k in ks], spec["tasks"],
                                spec["dataset"], workers=workers, iso=iso)
        verdicts.update(zip(ks, scores, strict=True))
    return [{**{key: j[key] for key in KEYS}, "value": verdicts[k].value, "answer": verdicts[k].answer,
             "reason": verdicts[k].reason} for k, j in enumerate(mine)]


def chunk_problem(rows: Any, mine: Sequence[dict[str, Any]]) -> str | None:
    """Why ``rows`` (a chunk read back) are not the verdicts of the programs ``mine``; None when they are.

    Each row must name its program's response, carry that program as its answer and a value in {1.0, 0.0, None}
    that agrees with the program (None: no code) and with the reason. A program left unscored because its task's
    reference solution failed is run again, so that the reference is retried. It cannot tell a forged pass from a
    real one: that the sandboxed programs never get the chunks' URLs (:func:`hidden_from_code`) is what does."""
    if not isinstance(rows, list) or len(rows) != len(mine):
        return f"{len(rows) if isinstance(rows, list) else type(rows).__name__} row(s) for {len(mine)} program(s)"
    for k, (r, j) in enumerate(zip(rows, mine, strict=True)):
        if not isinstance(r, dict) or set(r) != FIELDS:
            return f"row {k}: fields {sorted(r) if isinstance(r, dict) else type(r).__name__}, expected {sorted(FIELDS)}"
        value = r["value"]
        if any(r[key] != j[key] for key in KEYS) or r["answer"] != j["code"]:
            return f"row {k}: not the verdict of program {k} of the chunk"
        if value is None and j["code"] is not None and str(r["reason"]).startswith(REFERENCE_FAILED):
            return f"row {k}: unscored as its reference solution failed: run again to retry the reference"
        if not (value is None or (type(value) is float and value in (0.0, 1.0))) or (value is None) != (j["code"] is None):
            return f"row {k}: value {value!r}, expected 1.0 or 0.0 for a program, None for no code"
        if not isinstance(r["reason"], str) or (value == 1.0) != r["reason"].startswith("base:pass plus:pass"):
            return f"row {k}: its reason does not agree with its value {value!r}"
    return None


def hidden_from_code(path: Path, iso: Isolation) -> bool:
    """Whether the sandboxed programs cannot read ``path`` (a file of capabilities): the namespaces or Landlock hide
    every file outside the interpreter's directories; else, for uid 65534, a file of the scorer's with mode 0600."""
    real = os.path.realpath(path)
    readable = [os.path.realpath(p) for p in read_paths()]
    if iso.hides_host_files and not any(real == p or real.startswith(p.rstrip("/") + "/") for p in readable):
        return True
    if iso.uid is None:
        return False
    try:
        os.chmod(path, 0o600)
    except OSError:
        return False
    st = os.stat(path)
    return st.st_uid != iso.uid and not st.st_mode & 0o077


def _chunk_store(jobs_dir: Path, out_dir: Path, iso: Isolation) -> tuple[int, Chunks]:
    """(chunk size, where the chunks are) for ``execute``: the plan's URLs or directory when usable, else the task's
    own output directory (resume within one pod only)."""
    path = jobs_dir / CHUNKS
    plan: dict[str, Any] = read_json(path) if path.is_file() else {}  # none: jobs of an earlier version's judge
    size = int(plan.get("chunk_jobs", CHUNK_JOBS))
    fp = jobs_fingerprint(jobs_dir, size)
    own = ChunkArea(str(out_dir / "partial"), fp)
    if plan and plan.get("fingerprint") != fp:
        log.warning("code chunks: %s was written for other jobs; resuming within this pod only", CHUNKS)
        return size, own
    if "chunks" in plan:
        if not hidden_from_code(path, iso):
            log.warning("code chunks: this sandbox (%s) cannot keep programs from reading %s, which holds the chunks' "
                        "URLs: they are not used (resuming within this pod only)", iso.describe(), CHUNKS)
            return size, own
        if time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) >= plan["expires_at"]:
            log.warning("code chunks: their URLs expired at %s; resuming within this pod only", plan["expires_at"])
            return size, own
        log.info("code chunks: in the run store (%d chunk URL(s), valid until %s)", len(plan["chunks"]), plan["expires_at"])
        return size, UrlChunks({n: ChunkUrls(**u) for n, u in plan["chunks"].items()}, verify_tls=plan.get("verify_tls", True))
    if "dir" in plan and parse_store_uri(plan["dir"], CHUNKS).path is not None:
        return size, ChunkArea(plan["dir"], fp)
    return size, own


def read_results(results_dir: Path) -> dict[tuple[Any, ...], Score]:
    """The verdicts of :func:`execute`, by response key (checkpoint, eval set, item id, sample)."""
    return {tuple(r[k] for k in KEYS): Score(r["value"], r["answer"], r["reason"])
            for r in read_jsonl(results_dir / RESULTS)}
