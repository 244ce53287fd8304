"""Stage `gather`: one method's per-checkpoint scores, as one ``scores.json``.

The alignment pipeline evaluates every checkpoint and merge candidate of a method in a chain of its own
(generate -> judge -> code -> score); this step collects their records, in the order the method lists its
targets, so that analytics and the gate read one score output per method, as before the fan-out. A checkpoint
evaluated in shards (run parameter ``eval_shards``) arrives as one record per shard and leaves as one
(:func:`safetax.artifacts.read_scores` merges them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from safetax.artifacts import read_scores, write_scores
from safetax.records import CheckpointScores
from safetax.shards import parse
from safetax.store import atomic_dir

log = logging.getLogger(__name__)


def run(score_dirs: Sequence[Path], out_dir: Path, order: Sequence[str] = ()) -> list[CheckpointScores]:
    """Write the records of every ``score_dirs`` output to ``out_dir``; ``order`` (the loop's items: checkpoint names,
    or ``<name>/shard-i-of-n``) sorts them, the rest by name. Two records for one checkpoint are an error (the fan-out
    evaluated it twice), and so is a shard missing or seen twice."""
    records = read_scores(score_dirs)
    chains = list(order)  # "" alone: one unnamed chain (the base model without shards), whose stages the console showed
    order = list(dict.fromkeys(parse(item)[0] for item in order))
    names = [r.checkpoint for r in records]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"checkpoint(s) scored more than once: {twice}")
    rank = {name: i for i, name in enumerate(order)}
    records.sort(key=lambda r: (rank.get(r.checkpoint, len(rank)), r.checkpoint))
    with atomic_dir(out_dir) as tmp:
        write_scores(tmp, records)
    names = [r.checkpoint for r in records]
    log.log(logging.DEBUG if chains == [""] else logging.INFO, "evaluated %d checkpoint(s)%s", len(records),
            f": {names[0]} .. {names[-1]}" if len(names) > 1 else f": {names[0]}" if names else "")
    return records


def sharded(order: Sequence[str]) -> set[str]:
    """The model names whose loop items are evaluation shards (their figures are pushed after the merge).

    >>> sorted(sharded(["a/epoch-1/shard-1-of-2", "a/epoch-1/shard-2-of-2", "b"]))
    ['a/epoch-1']
    """
    return {name for name, shard in map(parse, order) if shard is not None}
