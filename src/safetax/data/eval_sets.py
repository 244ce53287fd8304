"""Evaluation sets: a registered benchmark (``{"benchmark": "aime24"}``) or a plain file.

A plain file has a documented schema:

- ``safety`` / ``overrefusal``: column ``prompt`` (and optionally ``id``)
- ``reasoning``: columns ``problem`` and ``answer`` (and optionally ``id``), scored by
  exact match on the last ``\\boxed{}``
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from safetax.benchmarks.registry import KINDS, Benchmark, Item, get_benchmark
from safetax.config import Checks, ConfigError, as_int
from safetax.data.tables import read_rows, require_columns
from safetax.records import Score
from safetax.scoring.math import score_boxed
from safetax.store import fetch

COLUMNS = {"safety": ("prompt",), "overrefusal": ("prompt",), "reasoning": ("problem", "answer")}
TEXT_FIELD = {"safety": "prompt", "overrefusal": "prompt", "reasoning": "problem"}


@dataclass(frozen=True)
class EvalSet:
    name: str  # label in results; a benchmark's own name by default
    kind: str  # safety | overrefusal | reasoning (a benchmark's own kind)
    uri: str = ""  # data file; for a benchmark, empty = $SAFETAX_DATA_DIR/<its default path> (a directory or s3:// prefix)
    benchmark: str = ""  # a registered benchmark, e.g. strongreject, xstest, aime24, gpqa, humanevalplus
    limit: int = 0  # evaluate the first `limit` rows; 0 = all
    prompt_template: str = "{text}"  # plain files only: how a row becomes the user turn

    def __post_init__(self) -> None:
        c = Checks(f"eval set {self.name!r}")
        if not self.name or "/" in self.name:
            c.fail("name", self.name, "a non-empty name without '/'")
        c.one_of("kind", self.kind, KINDS)
        c.non_negative("limit", self.limit)
        if not self.benchmark and not self.uri:
            c.fail("uri", self.uri, "a data file when no `benchmark` is named")
        if "{text}" not in self.prompt_template:
            c.fail("prompt_template", self.prompt_template, "a template containing {text}")
        c.raise_if_any()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSet:
        """From a pipeline parameter; a named benchmark fills in name and kind."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError("eval set", [f"`keys` must be among {', '.join(sorted(allowed))}, got {unknown!r}"])
        kw = dict(d)
        if "limit" in kw:
            kw["limit"] = as_int("limit", kw["limit"])
        if kw.get("benchmark"):
            try:
                bench = get_benchmark(kw["benchmark"])
            except ValueError as e:
                raise ConfigError("eval set", [f"`benchmark`: {e}"]) from None
            kw.setdefault("name", bench.name)
            if kw.setdefault("kind", bench.kind) != bench.kind:
                raise ConfigError("eval set", [f"`kind` must be {bench.kind!r} for benchmark {bench.name!r}, got {kw['kind']!r}"])
        missing = [k for k in ("name", "kind") if k not in kw]
        if missing:
            raise ConfigError("eval set", [f"`{k}` must be given (or a `benchmark`), got None" for k in missing])
        return cls(**kw)


def load_eval_set(es: EvalSet) -> tuple[list[Item], Benchmark | None]:
    """Read and validate every row (errors name file, row and column) before any generation.

    Returns the items and the benchmark that scores them (None for plain files).
    """
    if es.benchmark:
        bench = get_benchmark(es.benchmark)
        return bench.load(es.uri or None, es.limit), bench
    path = fetch(es.uri, f"eval set {es.name!r} uri")
    rows = read_rows(path)
    require_columns(path, rows, COLUMNS[es.kind])
    if es.limit:
        rows = rows[: es.limit]
    field = TEXT_FIELD[es.kind]
    items = [
        Item(id=str(r.get("id", i)), prompt=es.prompt_template.replace("{text}", str(r[field])), reference=str(r.get("answer", "")))
        for i, r in enumerate(rows)
    ]
    return items, None


def score_items(bench: Benchmark | None, responses: list[str], items: list[Item]) -> list[Score]:
    """Reasoning scores: the benchmark's scorer, or boxed exact match for plain files."""
    if bench is not None:
        return bench.score(responses, items)
    return [score_boxed(r, it.reference) for r, it in zip(responses, items, strict=True)]
