"""Math answers: exact match on the last ``\\boxed{}`` of the final answer."""

from __future__ import annotations

import re

from safetax.formats import last_boxed, split_reasoning
from safetax.records import Score


def normalize_answer(s: str) -> str:
    r"""Whitespace, ``$`` and a trailing period removed; integers without leading zeros.

    >>> normalize_answer(" 025 ")
    '25'
    >>> normalize_answer(r"$\frac{1}{2}$.")
    '\\frac{1}{2}'
    """
    s = s.strip().rstrip(".").strip().strip("$").strip()
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"[+-]?\d+", s):
        s = str(int(s))
    return s


def score_boxed(response: str, reference: str, require_think: bool = True) -> Score:
    """1.0 when the last ``\\boxed{}`` of the final answer equals ``reference`` after normalisation."""
    _, answer, well_formed = split_reasoning(response)
    if require_think and not well_formed:
        return Score(None, None, "no final answer: reasoning not closed by </think>")
    boxed = last_boxed(answer)
    if boxed is None:
        return Score(None, None, "no \\boxed{} in the final answer")
    ok = normalize_answer(boxed) == normalize_answer(reference)
    return Score(1.0 if ok else 0.0, boxed, "match" if ok else "mismatch")
