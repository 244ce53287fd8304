"""Evaluation sets: a registered benchmark (``{"benchmark": "aime24"}``) or a plain file.

A plain file has a documented schema:

- ``safety`` / ``overrefusal``: column ``prompt`` (and optionally ``id``)
- ``reasoning``: columns ``problem`` and ``answer`` (and optionally ``id``), scored by
  exact match on the last ``\\boxed{}``

Which rows: all, the first ``limit``, or a seeded random ``sample`` of N (not both). Per set, a
benchmark's ``prompt_style`` picks the paper whose prompts it uses, and ``samples`` and
``max_new_tokens`` override the run's sampling and token budget (None = the run's).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetax.benchmarks.registry import KINDS, Benchmark, Item, get_benchmark
from safetax.benchmarks.styles import DEFAULT_STYLE, PROMPT_STYLES
from safetax.config import Checks, ConfigError, as_int
from safetax.data.tables import DataError, read_rows, require_columns, row_label
from safetax.records import Score
from safetax.scoring.math import score_boxed
from safetax.store import fetch

COLUMNS = {"safety": ("prompt",), "overrefusal": ("prompt",), "reasoning": ("problem", "answer")}
TEXT_FIELD = {"safety": "prompt", "overrefusal": "prompt", "reasoning": "problem"}
_INT_KEYS = ("limit", "sample", "sample_seed")
_OPTIONAL_INT_KEYS = ("samples", "max_new_tokens")


@dataclass(frozen=True)
class EvalSet:
    name: str  # label in results; a benchmark's own name by default
    kind: str  # safety | overrefusal | reasoning (a benchmark's own kind)
    uri: str = ""  # data file; for a benchmark, empty = $SAFETAX_DATA_DIR/<its default path> (a directory or s3:// prefix)
    benchmark: str = ""  # a registered benchmark, e.g. strongreject, xstest, aime24, gpqa, humanevalplus
    limit: int = 0  # evaluate the first `limit` rows; 0 = all
    prompt_template: str = "{text}"  # plain files only: how a row becomes the user turn
    prompt_style: str = DEFAULT_STYLE  # benchmarks only: deepseek | lora-paper | rpsa-paper (safetax.benchmarks.styles)
    sample: int = 0  # evaluate a seeded random subset of `sample` rows (RPSA: 250 WildJailbreak prompts); 0 = off
    sample_seed: int = 0  # seed of that subset: the same seed and file give the same rows
    samples: int | None = None  # responses per prompt for this set; None = the run's (reasoning_samples, 1 for safety)
    max_new_tokens: int | None = None  # token budget per response for this set; None = the run's for its kind

    def __post_init__(self) -> None:
        c = Checks(f"eval set {self.name!r}")
        if not self.name or "/" in self.name:
            c.fail("name", self.name, "a non-empty name without '/'")
        c.one_of("kind", self.kind, KINDS)
        if not self.benchmark and not self.uri:
            c.fail("uri", self.uri, "a data file when no `benchmark` is named")
        if "{text}" not in self.prompt_template:
            c.fail("prompt_template", self.prompt_template, "a template containing {text}")
        c.one_of("prompt_style", self.prompt_style, PROMPT_STYLES)
        if not self.benchmark and self.prompt_style != DEFAULT_STYLE:
            c.fail("prompt_style", self.prompt_style, f"{DEFAULT_STYLE!r} for a plain file (its prompt_template shapes the prompt)")
        for key in _INT_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                c.fail(key, value, "an integer >= 0")
        if self.limit and self.sample:
            c.fail("sample", self.sample, f"0 when `limit` is set (limit={self.limit} takes the first rows; choose one)")
        for key in _OPTIONAL_INT_KEYS:
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                c.fail(key, value, "an integer >= 1, or None for the run's setting")
        c.raise_if_any()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalSet:
        """From a pipeline parameter; a named benchmark fills in name and kind."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError("eval set", [f"`keys` must be among {', '.join(sorted(allowed))}, got {unknown!r}"])
        kw = dict(d)
        for key in _INT_KEYS + _OPTIONAL_INT_KEYS:  # KFP turns numbers inside a list parameter into floats
            if kw.get(key) is not None:
                kw[key] = as_int(key, kw[key])
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


def sample_items(items: list[Item], n: int, seed: int) -> list[Item]:
    """A seeded random subset of ``n`` items (all when ``n`` >= their count), in their original order.

    Each item is ranked by a hash of ``seed`` and its id, so the subset depends on the ids, not on the
    order of the rows, and the subset of ``n`` is contained in that of ``n + 1``.

    >>> items = [Item(str(i), "p") for i in range(10)]
    >>> [it.id for it in sample_items(items, 3, seed=0)] == [it.id for it in sample_items(items[::-1], 3, seed=0)][::-1]
    True
    >>> len(sample_items(items, 3, seed=0)), len(sample_items(items, 50, seed=0))
    (3, 10)
    """
    def rank(it: Item) -> str:
        return hashlib.sha256(f"{seed}:{it.id}".encode()).hexdigest()

    chosen = {id(it) for it in sorted(items, key=rank)[:n]}
    return [it for it in items if id(it) in chosen]


def load_eval_set(es: EvalSet) -> tuple[list[Item], Benchmark | None]:
    """Read and validate every row (errors name file, row and column) before any generation.

    Returns the items (all, the first ``limit``, or a seeded ``sample``) and the benchmark that scores
    them (None for plain files).
    """
    if es.benchmark:
        bench = get_benchmark(es.benchmark)
        items = bench.load(es.uri or None, es.limit, style=es.prompt_style)
    else:
        bench = None
        items = _plain_items(es, fetch(es.uri, f"eval set {es.name!r} uri"))
    return (sample_items(items, es.sample, es.sample_seed) if es.sample else items), bench


def _plain_items(es: EvalSet, path: Path) -> list[Item]:
    """Every row of a plain file checked (text where text belongs, unique ids), then the first ``limit``."""
    rows = read_rows(path)
    require_columns(path, rows, COLUMNS[es.kind])
    field = TEXT_FIELD[es.kind]
    items: list[Item] = []
    seen: set[str] = set()
    for i, r in enumerate(rows, start=1):
        where = f"{path}: {row_label(rows, i)}"
        if not isinstance(r[field], str):
            raise DataError(f"{where}: column {field!r} must be text, got {type(r[field]).__name__}")
        if "answer" in r and (isinstance(r["answer"], bool) or not isinstance(r["answer"], (str, int, float))):
            raise DataError(f"{where}: column 'answer' must be text or a number, got {type(r['answer']).__name__}")
        item_id = str(r["id"]).strip() if r.get("id") is not None else str(i - 1)  # no id: the 0-based position
        if not item_id:
            raise DataError(f"{where}: column 'id' is empty (give every row an id, or leave the column out)")
        if item_id in seen:
            raise DataError(f"{where}: duplicate id {item_id!r}" + ("" if "id" in r else " (a row without an id gets its 0-based position)"))
        seen.add(item_id)
        items.append(Item(id=item_id, prompt=es.prompt_template.replace("{text}", r[field]), reference=str(r.get("answer", ""))))
    return items[: es.limit] if es.limit else items


def score_items(bench: Benchmark | None, responses: list[str], items: list[Item]) -> list[Score]:
    """Reasoning scores: the benchmark's scorer, or boxed exact match for plain files."""
    if bench is not None:
        return bench.score(responses, items)
    return [score_boxed(r, it.reference) for r, it in zip(responses, items, strict=True)]
