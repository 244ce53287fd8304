"""HumanEval+ / MBPP+ scoring: code extraction, sandboxed runs, EvalPlus semantics.

The trust boundary. A candidate runs in :mod:`safetax.scoring.sandbox` with its code and the task's
inputs, nothing else: not the canonical solution, not the expected outputs, not the dataset. Only its
outputs come back, as JSON lines of bounded size, and the scorer compares them itself with the expected
outputs (the canonical solution's outputs, computed by the scorer beforehand in the same sandbox and kept
in the scorer's memory, and on disk in an HMAC-verified cache only where the sandbox keeps code away from
it). Whatever else the candidate writes, claims or does decides nothing.

EvalPlus semantics, implemented here without the ``evalplus`` package: a candidate passes "base" when its
output matches on every ``base_input`` and "plus" when it also matches on every ``plus_input`` (exact
``==``, else ``np.allclose(rtol=1e-7, atol)`` with ``atol`` forced to 1e-6 for float outputs; MBPP+'s
special oracles; HumanEval/32 checks the root). Per-input time limit ``max(1 s, 4 x canonical)``, enforced
inside the sandbox (which the code can switch off) and on the scorer's clock: the result of each input must
arrive within the limits of the inputs up to it (base first) + 3 s, counted from the harness's ``LOADED``
line (at most 13 s after the start); a later one is a timeout. The run is killed at their sum + 3 s.

A task whose canonical solution gives no output for some input (it raised, was killed by a limit, could not
import) has no expected output there: its programs are unscored ("reference solution failed on N input(s)")
and not run, never compared with a missing value, and its entry is not written to the cache, so the next
process runs the canonical solution again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from safetax.formats import split_reasoning
from safetax.records import Score
from safetax.scoring import code_cache
from safetax.scoring.code_compare import decode, outputs_match
from safetax.scoring.code_harness import GROUPS, HARNESS, LOADED, SLACK_S, late_inputs
from safetax.scoring.sandbox import ExecResult, Isolation, isolation, run_untrusted
from safetax.store import cache_root
from safetax.timing import progress_bar

log = logging.getLogger(__name__)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PY_LANGS = {"", "python", "py", "python3"}
MIN_TIME_LIMIT, GT_TIME_FACTOR = 1.0, 4.0  # EvalPlus defaults
# v3: HMAC-signed, no entry of a failed canonical run (v2 files may hold None for them; v1, unsigned: never read)
CACHE_FORMAT = "v3"
CANONICAL_OUTPUT = 1 << 30  # bytes a canonical run may print (HumanEval/15's plus outputs: 141 MiB)
OUTPUT_SLACK = 1 << 20  # a candidate may print twice the canonical run's bytes plus this
REFERENCE_FAILED = "reference solution failed on"  # how an unscored verdict of a failed canonical run begins
_memo: dict[str, dict[str, Any]] = {}  # cache file -> expected outputs held by this process
_memo_lock = threading.Lock()


def extract_code(response: str) -> str | None:
    """The last closed Python (or untagged) fenced block of the final answer (after ``</think>``).

    >>> extract_code("x\\n</think>\\n```python\\ndef f():\\n    return 1\\n```")
    'def f():\\n    return 1\\n'
    >>> extract_code("<think>\\n```python\\nx = 1\\n```") is None
    True
    """
    _, answer, _ = split_reasoning(response)
    blocks = [m.group(2) for m in _FENCE.finditer(answer) if m.group(1).lower() in _PY_LANGS]
    return blocks[-1] if blocks and blocks[-1].strip() else None


def _program(code: str, task: Mapping[str, Any], dataset: str, limits: Mapping[str, list[float]]) -> str:
    """The sandbox's program: the task's inputs and limits, the code, the harness (never expected outputs)."""
    spec = {"task_id": task["task_id"], "entry_point": task["entry_point"], "dataset": dataset,
            "inputs": {g: task[f"{g}_input"] for g in GROUPS}, "limits": dict(limits)}
    return f"SPEC = {json.dumps(json.dumps(spec))}\nSOURCE = {json.dumps(code)}\n" + HARNESS


def parse_rows(stdout: str, sizes: Mapping[str, int]) -> tuple[dict[Any, dict[str, Any]], set[Any]]:
    """Harness lines -> ({(group, i): row, "load_error": row}, keys seen more than once).

    Only well-formed rows for existing inputs count; anything else (garbage, other keys, other shapes)
    is ignored. Every row comes from untrusted code: only its ``out`` is ever compared.
    """
    rows, dup, _ = _parse(stdout, sizes)
    return rows, dup


def _parse(stdout: str, sizes: Mapping[str, int]) -> tuple[dict[Any, dict[str, Any]], set[Any], dict[Any, int]]:
    """:func:`parse_rows`, and the index of each row's line (split at ``\\n``, as the scorer timed them)."""
    rows: dict[Any, dict[str, Any]] = {}
    dup: set[Any] = set()
    where: dict[Any, int] = {}
    for n, line in enumerate(stdout.split("\n")):
        if line == LOADED and not rows and "loaded" not in where:
            where["loaded"] = n
            continue
        try:
            row = json.loads(line)
        except Exception:  # noqa: BLE001 - malformed, too deep, too large numbers: ignored
            continue
        if not isinstance(row, dict):
            continue
        g, i = row.get("g"), row.get("i")
        if g in sizes and type(i) is int and 0 <= i < sizes[g] and ("out" in row or "err" in row):
            key: Any = (g, i)
        elif "load_error" in row and len(row) == 1:
            key = "load_error"
        else:
            continue
        if key in rows:
            dup.add(key)
        rows.setdefault(key, row)
        where.setdefault(key, n)
    return rows, dup, where


def time_limits(exp: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per-input time limits from the canonical run's times: ``max(1 s, 4 x canonical)``."""
    return {g: [max(MIN_TIME_LIMIT, GT_TIME_FACTOR * t) for t in exp[f"{g}_t"]] for g in GROUPS}


def _cache_file(tasks: Mapping[str, Mapping[str, Any]], dataset: str, cache_dir: Path | None) -> Path:
    h = hashlib.sha256(dataset.encode())
    for tid in sorted(tasks):
        t = tasks[tid]
        h.update(json.dumps([tid, t["canonical_solution"], t["base_input"], t["plus_input"]]).encode())
    root = cache_dir or cache_root()
    return root / "code-expected" / f"{dataset}-{CACHE_FORMAT}-{h.hexdigest()[:16]}.json"


def _pool_run(jobs: list[tuple[str, float, int, int]], workers: int, desc: str, iso: Isolation) -> list[ExecResult]:
    """Run (program, timeout, memory, output bytes) jobs with ``workers`` concurrent sandboxed subprocesses."""
    def run(program: str, timeout_s: float, memory_mb: int, max_output: int) -> ExecResult:
        return run_untrusted(program, timeout_s, memory_mb, iso=iso, max_output=max_output)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, progress_bar(len(jobs), desc, "task") as bar:
        futures = [pool.submit(run, *j) for j in jobs]
        out = []
        for f in futures:
            out.append(f.result())
            bar.update(1)
        return out


def _canonical_entry(tid: str, task: Mapping[str, Any], res: ExecResult) -> dict[str, Any]:
    """A task's expected outputs and times from its canonical run; ``failed`` names the inputs without an output."""
    rows, _ = parse_rows(res.stdout, {g: len(task[f"{g}_input"]) for g in GROUPS})
    entry: dict[str, Any] = {"bytes": len(res.stdout.encode()), "failed": []}
    for g in GROUPS:
        got = [rows.get((g, i), {}) for i in range(len(task[f"{g}_input"]))]
        failed = [f"{g}[{i}]" for i, r in enumerate(got) if "out" not in r]
        if failed:
            log.warning("%s: reference solution failed on %d %s input(s), its programs are unscored (%s)",
                        tid, len(failed), g, res.stderr[-300:])
        entry["failed"] += failed
        entry[g] = [r.get("out") for r in got]
        entry[f"{g}_t"] = [float(r["t"]) if isinstance(r.get("t"), (int, float)) else 0.0 for r in got]
    return entry


def reference_failures(entry: Mapping[str, Any]) -> list[str]:
    """The inputs (``"base[3]"``) on which the canonical solution gave no output; [] when it gave them all."""
    return [str(f) for f in entry.get("failed") or []]


def expected_outputs(tasks: Mapping[str, Mapping[str, Any]], needed: Sequence[str], dataset: str, *,
                     workers: int = 2, cache_dir: Path | None = None, iso: Isolation | None = None) -> dict[str, Any]:
    """Canonical outputs and per-input times of the ``needed`` tasks (:func:`reference_failures`: where none).

    Held in this process's memory; read from and written to ``<cache>/code-expected/`` (HMAC-verified,
    :mod:`safetax.scoring.code_cache`) only when the sandbox keeps code from reaching that directory,
    else recomputed once per process. An entry with a failed input is never written there: the next
    process runs that canonical solution again.
    """
    iso = iso if iso is not None else isolation()
    path = _cache_file(tasks, dataset, cache_dir)
    with _memo_lock:
        cache = dict(_memo.get(str(path), {}))
    if set(needed) - cache.keys() and iso.protects_cache:
        cache = {**code_cache.load(path), **cache}
    missing = sorted(set(needed) - cache.keys())
    if missing:
        big = {g: [] for g in GROUPS}  # empty limits -> the harness allows 60 s per input
        jobs = []
        for tid in missing:
            t = tasks[tid]
            code = t["canonical_solution"] if dataset == "mbpp" else t["prompt"] + t["canonical_solution"]
            jobs.append((_program(code, t, dataset, big), 300.0, 4096, CANONICAL_OUTPUT))
        for tid, res in zip(missing, _pool_run(jobs, workers, f"{dataset} expected outputs", iso)):
            cache[tid] = _canonical_entry(tid, tasks[tid], res)
        if iso.protects_cache:
            whole = {tid: e for tid, e in {**code_cache.load(path), **cache}.items() if not reference_failures(e)}
            code_cache.save(path, whole)
        else:
            log.warning("expected outputs of %s kept in memory only: this sandbox (%s) cannot keep code from "
                        "a cache on disk", dataset, iso.describe())
    with _memo_lock:
        _memo[str(path)] = {**_memo.get(str(path), {}), **cache}
    return {tid: cache[tid] for tid in needed}


def score_code(responses: Sequence[str], items: Sequence[Any], tasks: Mapping[str, Mapping[str, Any]],
               dataset: str, *, workers: int = 2, task_timeout_s: float = 60.0, memory_mb: int = 4096,
               cache_dir: Path | None = None, iso: Isolation | None = None) -> list[Score]:
    """Score responses to HumanEval+ (``dataset="humaneval"``) or MBPP+ (``"mbpp"``) items.

    Args:
        responses: full model responses (``<think>`` included); the code is :func:`extract_code`'s.
        items: items whose ``meta["task_id"]`` keys ``tasks`` (raw EvalPlus rows).
        tasks: task_id -> EvalPlus row (``prompt``, ``entry_point``, ``canonical_solution``, inputs, ``atol``).
        dataset: "humaneval" or "mbpp" (input types and special oracles).
        workers: parallel sandboxed subprocesses.
        task_timeout_s: wall-clock cap of one candidate over all its inputs.
        memory_mb: address-space limit of each subprocess.
        cache_dir: where canonical outputs are cached (default ``$SAFETAX_CACHE`` or ~/.cache/safetax).
        iso: the sandbox's isolation (default: the strongest this machine allows, probed once).

    Returns:
        One Score per response: 1.0 when base and plus tests pass, 0.0 otherwise, None (unscored)
        when no code block was found or the task's canonical solution failed on some input (its
        program is then not run); ``reason`` reads e.g. ``"base:pass plus:fail"``.
    """
    if len(responses) != len(items):
        raise ValueError(f"{len(responses)} responses for {len(items)} items")
    return score_programs([extract_code(r) for r in responses], [str(it.meta["task_id"]) for it in items], tasks, dataset,
                          workers=workers, task_timeout_s=task_timeout_s, memory_mb=memory_mb, cache_dir=cache_dir, iso=iso)


def score_programs(codes: Sequence[str | None], ids: Sequence[str], tasks: Mapping[str, Mapping[str, Any]], dataset: str, *,
                   workers: int = 2, task_timeout_s: float = 60.0, memory_mb: int = 4096, cache_dir: Path | None = None,
                   iso: Isolation | None = None) -> list[Score]:
    """:func:`score_code` on programs already extracted (None: no code block), each answering task ``ids[k]``."""
    if len(codes) != len(ids):
        raise ValueError(f"{len(codes)} programs for {len(ids)} task ids")
    iso = iso if iso is not None else isolation()
    coded = [k for k, c in enumerate(codes) if c is not None]
    exp = expected_outputs(tasks, sorted({ids[k] for k in coded}), dataset, workers=workers, cache_dir=cache_dir,
                           iso=iso)
    todo = [k for k in coded if not reference_failures(exp[ids[k]])]  # no expected output, no run
    jobs = []
    for k in todo:
        lim = time_limits(exp[ids[k]])
        wall = min(task_timeout_s, sum(lim["base"]) + sum(lim["plus"])) + SLACK_S  # + interpreter start and load
        budget = 2 * int(exp[ids[k]].get("bytes", 0)) + OUTPUT_SLACK
        jobs.append((_program(str(codes[k]), tasks[ids[k]], dataset, lim), wall, memory_mb, budget))
    results = dict(zip(todo, _pool_run(jobs, workers, f"{dataset} candidates", iso)))
    scores = []
    for k, code in enumerate(codes):
        if code is None:
            scores.append(Score(None, None, "no fenced code block in the final answer"))
            continue
        if k in results:
            scores.append(_verdict(code, results[k], tasks[ids[k]], exp[ids[k]], dataset))
        else:
            scores.append(_reference_failed(code, reference_failures(exp[ids[k]])))
    return scores


def _matches(row: Mapping[str, Any], expected: Any, inp: Any, task: Mapping[str, Any], dataset: str) -> bool:
    try:
        out = decode(row["out"])
    except Exception:  # noqa: BLE001 - a malformed encoding from the candidate is a wrong output
        return False
    return outputs_match(out, decode(expected), inp, task["entry_point"], dataset, float(task.get("atol") or 0))


def _verdict(code: str, res: ExecResult, task: Mapping[str, Any], exp: Mapping[str, Any], dataset: str) -> Score:
    """Compare the candidate's outputs with the expected ones; the first failing input of each group is named.

    Unscored when the canonical solution failed on some input: no output of the candidate is compared with a
    missing expected one (a program returning None would match it)."""
    if reference_failures(exp):
        return _reference_failed(code, reference_failures(exp))
    rows, dup, where = _parse(res.stdout, {g: len(task[f"{g}_input"]) for g in GROUPS})
    late = late_inputs(res, where, time_limits(exp))
    status, notes = {}, []
    for g in GROUPS:
        status[g] = "pass"
        for i, inp in enumerate(task[f"{g}_input"]):
            row = rows.get((g, i))
            if (g, i) in dup:
                status[g], why = "fail", "more than one result line"
            elif row is None or "out" not in row:
                why = str((rows.get("load_error") or {}).get("load_error") or (row or {}).get("err")
                          or ("timeout" if res.timed_out else "output over the size limit" if res.truncated
                              else "no output"))[:100]
                status[g] = "timeout" if why in ("timeout", "_Timeout") else "fail"
            elif (g, i) in late:
                status[g], why = "timeout", "result past its time limit (scorer's clock)"
            elif not _matches(row, exp[g][i], inp, task, dataset):
                status[g], why = "fail", "wrong output"
            else:
                continue
            notes.append(f"{g}[{i}]: {why}")
            break
    ok = status["base"] == status["plus"] == "pass"
    reason = f"base:{status['base']} plus:{status['plus']}" + (f" ({'; '.join(notes)})" if notes else "")
    return Score(1.0 if ok else 0.0, code, reason)


def _reference_failed(code: str, failed: Sequence[str]) -> Score:
    """Unscored: the canonical solution gave no output on ``failed`` inputs, so there is nothing to compare with."""
    where = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
    return Score(None, code, f"{REFERENCE_FAILED} {len(failed)} input(s) ({where})")
