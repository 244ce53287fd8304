"""Stage `gather`: one method's per-checkpoint scores, as one ``scores.json``.

The alignment pipeline evaluates every checkpoint and merge candidate of a method in a chain of its own
(generate -> judge -> code -> score); this step collects their records, in the order the method lists its
targets, so that analytics and the gate read one score output per method, as before the fan-out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from safetax.artifacts import read_scores, write_scores
from safetax.records import CheckpointScores
from safetax.store import atomic_dir

log = logging.getLogger(__name__)


def run(score_dirs: Sequence[Path], out_dir: Path, order: Sequence[str] = ()) -> list[CheckpointScores]:
    """Write the records of every ``score_dirs`` output to ``out_dir``; ``order`` (checkpoint names) sorts them,
    the rest by name. Two records for one checkpoint are an error (the fan-out evaluated it twice)."""
    records = read_scores(score_dirs)
    names = [r.checkpoint for r in records]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"checkpoint(s) scored more than once: {twice}")
    rank = {name: i for i, name in enumerate(order)}
    records.sort(key=lambda r: (rank.get(r.checkpoint, len(rank)), r.checkpoint))
    with atomic_dir(out_dir) as tmp:
        write_scores(tmp, records)
    names = [r.checkpoint for r in records]
    log.info("evaluated %d checkpoint(s)%s", len(records), f": {names[0]} .. {names[-1]}" if len(names) > 1 else
             f": {names[0]}" if names else "")
    return records
