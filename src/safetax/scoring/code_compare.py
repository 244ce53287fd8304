"""EvalPlus's output comparison: exact, then float tolerance, and MBPP+'s special oracles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# MBPP+ tasks whose outputs compare as sets, and whose oracle only checks for a non-None result.
SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
          "larg_nnum", "intersection_array", "find_dissimilar", "Diff"}
NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}

class _Opaque:
    """A value the harness could only describe by type name and repr."""

    def __init__(self, type_name: str, text: str) -> None:
        self.key = (type_name, text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def decode(v: Any) -> Any:
    """Inverse of the harness's tagged-JSON encoding (tuples, sets, dicts, complex, other objects)."""
    if isinstance(v, list):
        return [decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    t, x = v.get("$t"), v.get("v")
    if t == "tuple":
        return tuple(decode(y) for y in x)
    if t in ("set", "frozenset"):
        return (set if t == "set" else frozenset)(decode(y) for y in x)
    if t == "dict":
        return {decode(k): decode(y) for k, y in x}
    if t == "complex":
        return complex(x[0], x[1])
    return _Opaque(str(v.get("type")), str(x))


def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)


def _poly(xs: Sequence[float], x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(edge: float, height: float) -> int:
    return round(edge**2 + 2 * edge * math.sqrt((edge / 2) ** 2 + height**2))


def _digit_distance(a: int, b: int) -> int:
    sa, sb = str(a), str(b)
    n = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(n), sb.zfill(n)))


def outputs_match(out: Any, exp: Any, inp: Sequence[Any], entry: str, dataset: str, atol: float) -> bool:
    """EvalPlus's comparison of one decoded output with the expected one (special oracles included)."""
    try:
        if dataset == "humaneval" and entry == "find_zero":
            return abs(_poly(*inp, out)) <= atol
        exact = bool(out == exp)
        if dataset == "mbpp":
            if entry == "are_equivalent":
                exact = True
            elif entry == "sum_div":
                exact = exact or out == 0
            elif entry == "surface_Area":
                exact = exact or abs(out - _surface_area(*inp)) <= atol
            elif entry == "digit_distance_nums":
                exact = exact or out == _digit_distance(*inp)
            elif entry in SET_EQ:
                exact = set(out) == set(exp)
            elif entry in NOT_NONE:
                want = exp if isinstance(exp, bool) else exp is not None
                exact = out == want if isinstance(out, bool) else want == (out is not None)
        if atol == 0 and _is_floats(exp):
            atol = 1e-6
        if exact or atol == 0:
            return exact
        if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
            return False
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))
    except Exception:  # noqa: BLE001 - any failure to compare is a mismatch, as in EvalPlus
        return False
