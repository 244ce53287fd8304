"""The program run in the sandbox for one HumanEval+/MBPP+ task (the candidate's or the canonical solution).

It is preceded by ``SPEC`` (JSON text: task id, entry point, dataset, the base and plus inputs, per-input time
limits) and ``SOURCE`` (the code). It writes ``LOADED`` once the code is loaded (its module level ran, at most
10 s), then one JSON line per input to a copy of its stdout, ``{"g", "i", "t", "out"}`` (the output in a
tagged-JSON encoding, :func:`safetax.scoring.code_compare.decode`), or ``{"g", "i", "err"}`` and stops that
group at the first error or per-input timeout; each line is flushed at once. The code's own prints go to
/dev/null.

Nothing here is trusted: the code runs in the same process and can write any line, stop early or switch
the per-input alarm off. The scorer takes only the outputs from these lines and compares them itself with
expected outputs the code never sees. The per-input limits are enforced here (an alarm) and again by the
scorer, on its own clock: each line must arrive within the limits of the inputs up to it, counted from
``LOADED`` (:mod:`safetax.scoring.code`); the whole run's wall-clock limit is the scorer's too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from safetax.scoring.sandbox import ExecResult

GROUPS = ("base", "plus")
SLACK_S, LOAD_MAX_S = 3.0, 13.0  # over the per-input limits (start, load, overheads); latest clock start (LOADED)
LOADED = '{"loaded": true}'  # the line that says the code is loaded: the scorer's clock on inputs starts here
HARNESS = r"""
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
_emit({"loaded": True})
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
        _res.write(_line + "\n"); _res.flush()
os._exit(0)
"""


def late_inputs(res: ExecResult, where: Mapping[Any, int], lim: Mapping[str, list[float]]) -> set[Any]:
    """Inputs whose result line arrived after ``LOADED`` + :data:`SLACK_S` + the limits up to it (base first).

    The scorer's clock (:attr:`ExecResult.line_times`): the code can neither stop nor set it. Its start, the
    ``LOADED`` line, counts only before every result and at most :data:`LOAD_MAX_S` after the run's start.
    """
    def at(n: int) -> float:
        return res.line_times[n] if n < len(res.line_times) else res.wall_s

    start = min(at(where["loaded"]), LOAD_MAX_S) if "loaded" in where else 0.0
    late, used = set(), start + SLACK_S
    for g in GROUPS:
        for i, limit in enumerate(lim[g]):
            used += limit
            if (g, i) in where and at(where[(g, i)]) > used:
                late.add((g, i))
    return late
