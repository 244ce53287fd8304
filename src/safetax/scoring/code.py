"""HumanEval+ / MBPP+ scoring: code extraction, a resource-limited subprocess, EvalPlus semantics.

EvalPlus semantics, implemented here without the ``evalplus`` package: the expected output of
every input is the canonical solution's output on it (computed once in the same subprocess
harness and cached per dataset version); a candidate passes "base" when it matches on every
``base_input`` and "plus" when it also matches on every ``plus_input`` (exact ``==``, else
``np.allclose(rtol=1e-7, atol)`` with ``atol`` forced to 1e-6 for float outputs; MBPP+'s
special oracles; HumanEval/32 checks the root). Per-input time limit ``max(1 s, 4 x canonical)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from safetax.formats import split_reasoning
from safetax.scoring.code_compare import decode, outputs_match
from safetax.scoring.sandbox import ExecResult, run_untrusted
from safetax.records import Score
from safetax.store import cache_root
from safetax.timing import progress_bar

log = logging.getLogger(__name__)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PY_LANGS = {"", "python", "py", "python3"}
MIN_TIME_LIMIT, GT_TIME_FACTOR = 1.0, 4.0  # EvalPlus defaults
# The program run in the subprocess after ``SPEC`` (JSON text) and ``SOURCE`` (candidate code).
_HARNESS = r"""
import copy, json, os, signal, sys, time
_spec = json.loads(SPEC)
_res = os.fdopen(os.dup(1), "w", encoding="utf-8")  # results only; the code's own prints go to /dev/null
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 1); os.dup2(_null, 2)
class _Timeout(BaseException): pass
def _alarm(*_): raise _Timeout()
signal.signal(signal.SIGALRM, _alarm)
def _emit(row):
    _res.write(json.dumps(row) + "\n"); _res.flush()
def _enc(x):
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > 12000:
        return {"$t": "obj", "type": "int", "v": hex(x)}
    if x is None or isinstance(x, (bool, int, float, str)): return x
    if type(x) is list: return [_enc(y) for y in x]
    if type(x) is tuple: return {"$t": "tuple", "v": [_enc(y) for y in x]}
    if type(x) in (set, frozenset): return {"$t": type(x).__name__, "v": [_enc(y) for y in x]}
    if type(x) is dict: return {"$t": "dict", "v": [[_enc(k), _enc(v)] for k, v in x.items()]}
    if type(x) is complex: return {"$t": "complex", "v": [x.real, x.imag]}
    return {"$t": "obj", "type": type(x).__qualname__, "v": repr(x)[:2000]}
def _tup(x): return tuple(_tup(y) for y in x) if isinstance(x, list) else x
def _mbpp_inputs(tid, ins):  # MBPP+ stores tuples, sets and complex numbers as JSON lists/strings
    n = int(tid.split("/")[-1])
    if n in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809):
        return [[tuple(a) for a in x] for x in ins]
    if n in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(b) for b in a] for a in x] for x in ins]
    if n in (75, 413, 444, 753): return [[[tuple(b) for b in x[0]], x[1]] for x in ins]
    if n in (106, 750): return [[x[0], tuple(x[1])] for x in ins]
    if n == 115: return [[[set(a) if isinstance(a, list) and a else {} for a in x[0]]] for x in ins]
    if n == 124: return [(float(x[0]), complex(x[1])) for x in ins]
    if n in (250, 405, 446, 617, 720, 763, 808): return [[tuple(x[0]), x[1]] for x in ins]
    if n in (259, 401, 445): return [[tuple(tuple(b) for b in a) for a in x] for x in ins]
    if n == 278: return [[tuple(tuple(a) if isinstance(a, list) else a for a in x[0])] for x in ins]
    if n == 307: return [[tuple(x[0]), x[1], x[2]] for x in ins]
    if n == 722: return [[{k: tuple(v) for k, v in x[0].items()}] + x[1:] for x in ins]
    if n == 252: return [[complex(x[0])] for x in ins]
    if n in (580, 615, 791): return [_tup(x) for x in ins]
    return ins
_ns = {"__name__": "__solution__"}
try:
    signal.setitimer(signal.ITIMER_REAL, 10.0)
    exec(compile(SOURCE, "solution.py", "exec"), _ns)
    signal.setitimer(signal.ITIMER_REAL, 0)
    _fn = _ns[_spec["entry_point"]]
except BaseException as e:
    signal.setitimer(signal.ITIMER_REAL, 0)
    _emit({"load_error": "timeout" if isinstance(e, _Timeout) else type(e).__name__}); os._exit(0)
for _g in ("base", "plus"):
    _lim = _spec["limits"].get(_g) or []
    _ins = _spec["inputs"][_g]
    _ins = _mbpp_inputs(_spec["task_id"], _ins) if _spec["dataset"] == "mbpp" else _ins
    for _i, _inp in enumerate(_ins):
        try:
            _args = copy.deepcopy(_inp)
            signal.setitimer(signal.ITIMER_REAL, _lim[_i] if _i < len(_lim) else 60.0)
            _t0 = time.perf_counter()
            _out = _fn(*_args)
            _dt = time.perf_counter() - _t0
            signal.setitimer(signal.ITIMER_REAL, 0)
            _line = json.dumps({"g": _g, "i": _i, "t": _dt, "out": _enc(_out)})
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _emit({"g": _g, "i": _i, "err": "timeout" if isinstance(e, _Timeout) else type(e).__name__})
            break
        _res.write(_line + "\n")
    _res.flush()
os._exit(0)
"""


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
    spec = {"task_id": task["task_id"], "entry_point": task["entry_point"], "dataset": dataset,
            "inputs": {"base": task["base_input"], "plus": task["plus_input"]}, "limits": dict(limits)}
    return f"SPEC = {json.dumps(json.dumps(spec))}\nSOURCE = {json.dumps(code)}\n" + _HARNESS


def _parse(stdout: str) -> dict[str, Any]:
    """Harness lines -> {"load_error": ..., ("base"|"plus", i): row}; garbage lines are ignored."""
    rows: dict[Any, Any] = {}
    for line in stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "g" in row and "i" in row:
            rows[(row["g"], row["i"])] = row
        elif isinstance(row, dict) and "load_error" in row:
            rows["load_error"] = row["load_error"]
    return rows


def _cache_file(tasks: Mapping[str, Mapping[str, Any]], dataset: str, cache_dir: Path | None) -> Path:
    h = hashlib.sha256(dataset.encode())
    for tid in sorted(tasks):
        t = tasks[tid]
        h.update(json.dumps([tid, t["canonical_solution"], t["base_input"], t["plus_input"]]).encode())
    root = cache_dir or cache_root()
    return root / "code-expected" / f"{dataset}-{h.hexdigest()[:16]}.json"


def _pool_run(jobs: list[tuple[str, float, int]], workers: int, desc: str) -> list[ExecResult]:
    """Run the jobs with ``workers`` concurrent sandboxed subprocesses (threads only wait on them)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, progress_bar(len(jobs), desc, "task") as bar:
        futures = [pool.submit(run_untrusted, *j) for j in jobs]
        out = []
        for f in futures:
            out.append(f.result())
            bar.update(1)
        return out


def expected_outputs(tasks: Mapping[str, Mapping[str, Any]], needed: Sequence[str], dataset: str, *,
                     workers: int = 2, cache_dir: Path | None = None) -> dict[str, Any]:
    """Canonical outputs and per-input times of the ``needed`` tasks, cached per dataset version."""
    path = _cache_file(tasks, dataset, cache_dir)
    cache: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    missing = sorted(set(needed) - set(cache))
    if missing:
        big = {"base": [], "plus": []}  # empty limits -> the harness allows 60 s per input
        jobs = []
        for tid in missing:
            t = tasks[tid]
            code = t["canonical_solution"] if dataset == "mbpp" else t["prompt"] + t["canonical_solution"]
            jobs.append((_program(code, t, dataset, big), 300.0, 4096))
        for tid, res in zip(missing, _pool_run(jobs, workers, f"{dataset} expected outputs")):
            rows, t = _parse(res.stdout), tasks[tid]
            entry: dict[str, Any] = {}
            for g in ("base", "plus"):
                got = [rows.get((g, i), {}) for i in range(len(t[f"{g}_input"]))]
                if any("out" not in r for r in got):
                    log.warning("%s: canonical solution failed on %s inputs (%s)", tid, g, res.stderr[-300:])
                entry[g] = [r.get("out") for r in got]
                entry[f"{g}_t"] = [float(r.get("t", 0.0)) for r in got]
            cache[tid] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(path)
    return {tid: cache[tid] for tid in needed}


def score_code(responses: Sequence[str], items: Sequence[Any], tasks: Mapping[str, Mapping[str, Any]],
               dataset: str, *, workers: int = 2, task_timeout_s: float = 60.0, memory_mb: int = 4096,
               cache_dir: Path | None = None) -> list[Score]:
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

    Returns:
        One Score per response: 1.0 when base and plus tests pass, 0.0 otherwise, None (unscored)
        when no code block was found; ``reason`` reads e.g. ``"base:pass plus:fail"``.
    """
    if len(responses) != len(items):
        raise ValueError(f"{len(responses)} responses for {len(items)} items")
    codes = [extract_code(r) for r in responses]
    ids = [str(it.meta["task_id"]) for it in items]
    todo = [k for k, c in enumerate(codes) if c is not None]
    exp = expected_outputs(tasks, sorted({ids[k] for k in todo}), dataset, workers=workers, cache_dir=cache_dir)
    jobs, limits_of = [], {}
    for k in todo:
        lim = {g: [max(MIN_TIME_LIMIT, GT_TIME_FACTOR * t) for t in exp[ids[k]][f"{g}_t"]] for g in ("base", "plus")}
        wall = min(task_timeout_s, sum(lim["base"]) + sum(lim["plus"])) + 3.0  # + interpreter start and load
        limits_of[k] = lim
        jobs.append((_program(str(codes[k]), tasks[ids[k]], dataset, lim), wall, memory_mb))
    results = dict(zip(todo, _pool_run(jobs, workers, f"{dataset} candidates")))
    scores = []
    for k, code in enumerate(codes):
        if code is None:
            scores.append(Score(None, None, "no fenced code block in the final answer"))
            continue
        scores.append(_verdict(code, results[k], tasks[ids[k]], exp[ids[k]], dataset))
    return scores


def _verdict(code: str, res: ExecResult, task: Mapping[str, Any], exp: Mapping[str, Any], dataset: str) -> Score:
    rows = _parse(res.stdout)
    status, notes = {}, []
    for g in ("base", "plus"):
        status[g] = "pass"
        for i, inp in enumerate(task[f"{g}_input"]):
            row = rows.get((g, i))
            if row is None or "out" not in row:
                why = rows.get("load_error") or (row or {}).get("err") or ("timeout" if res.timed_out else "no output")
                status[g] = "timeout" if why in ("timeout", "_Timeout") else "fail"
                notes.append(f"{g}[{i}]: {why}")
                break
            if not outputs_match(decode(row["out"]), decode(exp[g][i]), inp, task["entry_point"], dataset,
                                 float(task.get("atol") or 0)):
                status[g] = "fail"
                notes.append(f"{g}[{i}]: wrong output")
                break
    ok = status["base"] == status["plus"] == "pass"
    reason = f"base:{status['base']} plus:{status['plus']}" + (f" ({'; '.join(notes)})" if notes else "")
    return Score(1.0 if ok else 0.0, code, reason)
