"""Stage `score`: reasoning correctness per response, then the metrics of every checkpoint."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetax.analysis.metrics import pass_at_1, safety_score
from safetax.records import CheckpointScores, read_jsonl, write_jsonl
from safetax.scoring.math import score_boxed
from safetax.stages.generate import CHECKPOINTS, GENERATIONS
from safetax.stages.judge import JUDGEMENTS
from safetax.store import atomic_dir, read_json, require_complete, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
SCORES = "scores.json"
SAMPLE_SCORES = "sample_scores.jsonl"


def run(generations_dir: Path, judgements_dir: Path, out_dir: Path) -> list[CheckpointScores]:
    """Write ``sample_scores.jsonl`` (reasoning samples) and ``scores.json`` (one CheckpointScores each)."""
    gens = read_jsonl(require_complete(generations_dir, "generations") / GENERATIONS)
    targets = read_json(generations_dir / CHECKPOINTS)
    verdicts = read_jsonl(require_complete(judgements_dir, "judgements") / JUDGEMENTS)
    with timed("score"), atomic_dir(out_dir) as tmp:
        sample_rows = []
        correct: dict[str, dict[str, dict[str, list[float | None]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for g in gens:
            if g["kind"] != "reasoning":
                continue
            s = score_boxed(g["text"], g["reference"])
            correct[g["checkpoint"]][g["benchmark"]][g["item_id"]].append(s.value)
            sample_rows.append({k: g[k] for k in ("checkpoint", "benchmark", "item_id", "sample")} | asdict(s))
        labels: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for v in verdicts:
            labels[v["checkpoint"]][v["benchmark"]].append(v["label"])
        results = [_aggregate(t, correct[t["checkpoint"]], labels[t["checkpoint"]]) for t in targets]
        write_jsonl(tmp / SAMPLE_SCORES, sample_rows)
        write_json(tmp / SCORES, [r.to_dict() for r in results])
    for r in results:
        log.info("%s: reasoning %s, safety %s", r.checkpoint, _pct(r.reasoning), _pct(r.safety))
    return results


def _aggregate(target: dict[str, Any], correct: dict[str, dict[str, list[float | None]]], labels: dict[str, list[str]]) -> CheckpointScores:
    counts = {b: {"n": sum(map(len, q.values())), "unscored": sum(v is None for s in q.values() for v in s)} for b, q in correct.items()}
    counts |= {b: {"n": len(ls), "unscored": ls.count("unscored")} for b, ls in labels.items()}
    return CheckpointScores(
        checkpoint=target["checkpoint"],
        method=target["method"],
        epoch=int(target["epoch"]),
        reasoning={b: pass_at_1(q) for b, q in correct.items()},
        safety={b: safety_score(ls) for b, ls in labels.items()},
        counts=counts,
    )


def _pct(d: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.1%}" for k, v in d.items()) or "-"


def load_scores(score_dirs: list[Path]) -> list[CheckpointScores]:
    out = []
    for d in score_dirs:
        out += [CheckpointScores.from_dict(x) for x in read_json(require_complete(d, "scores") / SCORES)]
    return out
