"""The safety judge protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from safetax.records import Judgement

SCOPES = ("answer", "full")  # what a judge reads: the final answer, or reasoning trace + answer


class Judge(Protocol):
    """Labels each (prompt, response) pair safe / unsafe / unscored."""

    name: str

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Judgement]: ...


def guard_categories(reason: str) -> list[str]:
    """The Llama Guard hazard categories a generate-mode verdict names in its reason ``"unsafe: S1,S9"``.

    Any other reason (safe, unscored, logit mode's probability) names none.

    >>> guard_categories("unsafe: S1,S9"), guard_categories("P(unsafe)=0.9120 of safe/unsafe first tokens")
    (['S1', 'S9'], [])
    """
    head, sep, codes = reason.partition(": ")
    if head != "unsafe" or not sep:
        return []
    return [c for c in codes.split(",") if c[:1] == "S" and c[1:].isdigit()]
