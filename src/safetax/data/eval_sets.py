"""Evaluation sets given as files: harmful prompts (safety) and problems with answers (reasoning).

The benchmark registry (StrongREJECT, AIME, ...) builds on this; here a set is
a file with a documented schema:

- ``safety``: column ``prompt`` (and optionally ``id``)
- ``reasoning``: columns ``problem`` and ``answer`` (and optionally ``id``)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from safetax.config import Checks, as_int
from safetax.data.tables import read_rows, require_columns
from safetax.store import local_path

KINDS = ("safety", "reasoning")
COLUMNS = {"safety": ("prompt",), "reasoning": ("problem", "answer")}
TEXT_FIELD = {"safety": "prompt", "reasoning": "problem"}


@dataclass(frozen=True)
class EvalSet:
    name: str
    kind: str  # safety | reasoning
    uri: str
    limit: int = 0  # evaluate the first `limit` rows; 0 = all
    prompt_template: str = "{text}"  # how a row becomes the user turn; {text} is the prompt or problem

    def __post_init__(self) -> None:
        c = Checks(f"eval set {self.name!r}")
        if not self.name or "/" in self.name:
            c.fail("name", self.name, "a non-empty name without '/'")
        c.one_of("kind", self.kind, KINDS)
        c.non_negative("limit", self.limit)
        if "{text}" not in self.prompt_template:
            c.fail("prompt_template", self.prompt_template, "a template containing {text}")
        c.raise_if_any()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSet:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        c = Checks("eval set")
        if unknown:
            c.fail("keys", unknown, "among " + ", ".join(sorted(allowed)))
        for k in ("name", "kind", "uri"):
            if k not in d:
                c.fail(k, None, "given")
        c.raise_if_any()
        kw = dict(d)
        if "limit" in kw:
            kw["limit"] = as_int("limit", kw["limit"])
        return cls(**kw)


@dataclass(frozen=True)
class EvalItem:
    id: str
    prompt: str  # the user turn
    reference: str  # the reference answer; "" for safety prompts


def load_eval_set(es: EvalSet) -> list[EvalItem]:
    """Read and validate every row (errors name file, row and column) before any generation."""
    path = local_path(es.uri, f"eval set {es.name!r} uri")
    rows = read_rows(path)
    require_columns(path, rows, COLUMNS[es.kind])
    if es.limit:
        rows = rows[: es.limit]
    field = TEXT_FIELD[es.kind]
    return [
        EvalItem(
            id=str(r.get("id", i)),
            prompt=es.prompt_template.replace("{text}", str(r[field])),
            reference=str(r.get("answer", "")),
        )
        for i, r in enumerate(rows)
    ]
