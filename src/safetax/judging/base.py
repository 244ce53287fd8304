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
