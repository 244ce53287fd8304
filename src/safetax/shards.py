"""Evaluation shards: one model's prompts split over several generate -> judge -> code -> score chains.

With the run parameter ``eval_shards`` = n > 1, every evaluated model (the base model, each checkpoint and merge
candidate, each audited checkpoint) is evaluated by n chains, each on every n-th prompt of all its eval sets
(prompt j goes to shard ``j % n + 1``: long and short benchmarks spread evenly). A prompt's samples stay
together, so pass@1 per question, paired outcomes and label counts of the shards add up exactly to those of one
chain: the per-shard score records are merged (:func:`merge_scores`) before anything reads them.

A chain's loop item names its model and shard: ``lora-r4/epoch-2/shard-1-of-4`` (the store keeps its outputs
under that path); without shards it is the model's name alone, as before.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from safetax.metrics import LabelCounts, QuestionCounts
from safetax.records import CheckpointScores

MAX_SHARDS = 64
_ITEM = re.compile(r"^(?P<name>.*?)/?shard-(?P<index>[0-9]+)-of-(?P<count>[0-9]+)$")
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard {self.index} of {self.count}: need 1 <= index <= count <= {MAX_SHARDS}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every ``count``-th, starting at ``index - 1``.

        >>> Shard(2, 3).take(list(range(8)))
        [1, 4, 7]
        """
        return list(items[self.index - 1 :: self.count])


def check_count(count: object, where: str = "eval_shards") -> int:
    """``count`` as a shard count; a ValueError naming ``where`` and the allowed values otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"{where}: {count!r} is not allowed; an integer from 1 (no shards) to {MAX_SHARDS}")
    return count


def items(names: Sequence[str], count: int) -> list[str]:
    """The loop items of ``names`` in ``count`` shards (the names themselves when ``count`` is 1).

    >>> items(["lora/epoch-1"], 2)
    ['lora/epoch-1/shard-1-of-2', 'lora/epoch-1/shard-2-of-2']
    >>> items(["base"], 1), items([""], 2)
    (['base'], ['shard-1-of-2', 'shard-2-of-2'])
    """
    check_count(count)
    if count == 1:
        return list(names)
    return [f"{name}/shard-{i}-of-{count}" if name else f"shard-{i}-of-{count}" for name in names for i in range(1, count + 1)]


def parse(item: str) -> tuple[str, Shard | None]:
    """(model name, shard) of a loop item; no shard for a plain name.

    >>> parse("lora-r4/epoch-2/shard-3-of-4"), parse("lora-r4/epoch-2"), parse("shard-1-of-2")
    (('lora-r4/epoch-2', Shard(index=3, count=4)), ('lora-r4/epoch-2', None), ('', Shard(index=1, count=2)))
    """
    m = _ITEM.match(item)
    if m is None:
        return item, None
    return m["name"], Shard(int(m["index"]), int(m["count"]))


def merge_scores(records: Sequence[CheckpointScores]) -> list[CheckpointScores]:
    """``records`` with each checkpoint's shard records merged into one, at the place of its first shard; whole
    records pass through. A shard missing or seen twice, or shards beside a whole record of the same checkpoint,
    is an error."""
    groups: dict[str, list[CheckpointScores]] = defaultdict(list)
    for r in records:
        if r.shard:
            groups[r.checkpoint].append(r)
    mixed = sorted({r.checkpoint for r in records if not r.shard} & groups.keys())
    if mixed:
        raise ValueError(f"checkpoint(s) {mixed}: both a whole record and shard records (evaluated twice)")
    out, done = [], set()
    for r in records:
        if not r.shard:
            out.append(r)
        elif r.checkpoint not in done:
            done.add(r.checkpoint)
            out.append(_merge(r.checkpoint, groups[r.checkpoint]))
    return out


def _merge(name: str, parts: list[CheckpointScores]) -> CheckpointScores:
    shards = [Shard(*map(int, p.shard.split("/"))) for p in parts]
    count = shards[0].count
    seen = Counter(s.index for s in shards)
    if any(s.count != count for s in shards) or sorted(seen) != list(range(1, count + 1)) or max(seen.values()) > 1:
        raise ValueError(f"checkpoint {name!r}: shards {sorted(str(s) for s in shards)}; expected each of 1..{count} of {count} once")
    first = parts[0]
    questions: dict[str, dict[str, QuestionCounts]] = defaultdict(dict)
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    for p in parts:
        for bench, qs in p.questions.items():
            _disjoint(name, bench, questions[bench], qs)
            questions[bench].update(qs)
        for bench, os in p.outcomes.items():
            _disjoint(name, bench, outcomes[bench], os)
            outcomes[bench].update(os)
    versions: dict[str, str] = {}
    for p in parts:
        for bench, v in p.versions.items():
            if versions.setdefault(bench, v) != v:
                raise ValueError(f"checkpoint {name!r}: benchmark {bench!r} has versions {versions[bench]!r} and {v!r} in its shards")
    return replace(
        first, shard="", reasoning={}, safety={}, overrefusal={}, versions=versions,
        counts=_sum_nested([p.counts for p in parts]),
        extra=_merge_extra(name, parts),
        safety_labels=_sum_labels([p.safety_labels for p in parts]),
        benign_labels=_sum_labels([p.benign_labels for p in parts]),
        questions=dict(questions), outcomes=dict(outcomes),
        categories={b: _sum_labels([p.categories.get(b, {}) for p in parts])
                    for b in dict.fromkeys(b for p in parts for b in p.categories)},
        hazards=_sum_nested([p.hazards for p in parts]),
        judge_agreement=_sum_nested([p.judge_agreement for p in parts]),
        cost=_merge_cost([p.cost for p in parts]),
    )


def _disjoint(name: str, bench: str, have: dict[str, object], new: dict[str, object]) -> None:
    twice = have.keys() & new.keys()
    if twice:
        raise ValueError(f"checkpoint {name!r}: benchmark {bench!r} item(s) {sorted(twice)[:3]} in more than one shard")


def _sum_labels(parts: Sequence[dict[str, LabelCounts]]) -> dict[str, LabelCounts]:
    out: dict[str, LabelCounts] = {}
    for part in parts:
        for key, c in part.items():
            out[key] = out[key] + c if key in out else c
    return out


def _sum_nested(parts: Sequence[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for part in parts:
        for key, inner in part.items():
            out[key].update(inner)
    return {k: dict(v) for k, v in out.items()}


def _merge_extra(name: str, parts: Sequence[CheckpointScores]) -> dict[str, float]:
    """Rates over a benchmark's harmful contrasts (``compliance_unsafe:<bench>``) are weighted by each shard's
    contrast count (``counts[bench]["contrasts"]``); any other figure must agree across shards."""
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for p in parts for k in p.extra):
        if key.startswith("compliance_unsafe:"):
            bench = key.split(":", 1)[1]
            weights = [(p.extra[key], p.counts.get(bench, {}).get("contrasts", 0)) for p in parts if key in p.extra]
            total = sum(w for _, w in weights)
            if total == 0:
                raise ValueError(f"checkpoint {name!r}: {key} in shards without a contrast count (scored by an older release)")
            out[key] = sum(v * w for v, w in weights) / total
            continue
        values = {p.extra[key] for p in parts if key in p.extra}
        if len(values) > 1:
            raise ValueError(f"checkpoint {name!r}: figure {key!r} differs between shards and cannot be merged")
        out[key] = values.pop()
    return out


def _merge_cost(parts: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Samples, tokens, seconds and GPU-seconds add up (``wall_s`` becomes the shards' pod-seconds); ``gpus`` is a
    pod's; the rates are recomputed from the sums (as :class:`safetax.artifacts.StageCost` defines them)."""
    out: dict[str, dict[str, float]] = {}
    for stage in dict.fromkeys(s for p in parts for s in p):
        figures = [p[stage] for p in parts if stage in p]
        merged = {k: sum(f.get(k, 0.0) for f in figures) for k in dict.fromkeys(k for f in figures for k in f)}
        if "gpus" in merged:
            merged["gpus"] = max(f.get("gpus", 0.0) for f in figures)
        if "tokens_per_second" in merged:
            merged["tokens_per_second"] = merged.get("tokens", 0.0) / merged["wall_s"] if merged.get("wall_s") else 0.0
        if "cache_hit_rate" in merged:
            looked_up = merged.get("cached", 0.0) + merged.get("generated", 0.0)
            merged["cache_hit_rate"] = merged.get("cached", 0.0) / looked_up if looked_up else 0.0
        out[stage] = merged
    return out
