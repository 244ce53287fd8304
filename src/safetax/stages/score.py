"""Stage `score`: reasoning correctness per response, then the metrics of every checkpoint."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetax.analysis.metrics import pass_at_1, safety_score
from safetax.config import Checks
from safetax.data.eval_sets import EvalSet, load_eval_set, score_items
from safetax.generation.base import GenerationBackend
from safetax.records import CheckpointScores, read_jsonl, write_jsonl
from safetax.scoring.llm_equivalence import llm_recheck
from safetax.stages.generate import BACKENDS, CHECKPOINTS, EVAL_SETS, GENERATIONS, make_backend
from safetax.stages.judge import JUDGEMENTS, KEYS
from safetax.store import atomic_dir, input_dir, read_json, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
SCORES = "scores.json"
SAMPLE_SCORES = "sample_scores.jsonl"
MATH_BENCHMARKS = ("aime24", "math500")  # answers an LLM can re-check for equivalence


@dataclass(frozen=True)
class ScoreConfig:
    # Optional LLM answer-equivalence judge for math benchmarks (LoRA paper: Qwen2.5-32B-Instruct):
    # a model directory or hub id; empty = math-verify alone. It needs a GPU for the score stage.
    equivalence_model: str = ""
    equivalence_backend: str = "hf"  # hf | vllm

    def __post_init__(self) -> None:
        c = Checks("ScoreConfig")
        c.one_of("equivalence_backend", self.equivalence_backend, BACKENDS)
        c.raise_if_any()


def run(generations_dir: Path, judgements_dir: Path, out_dir: Path, cfg: ScoreConfig = ScoreConfig()) -> list[CheckpointScores]:
    """Write ``sample_scores.jsonl`` (reasoning samples) and ``scores.json`` (one CheckpointScores each)."""
    judge_model = resolve_model(cfg.equivalence_model, "equivalence_model") if cfg.equivalence_model else None
    generations_dir, judgements_dir = input_dir(generations_dir, "generations"), input_dir(judgements_dir, "judgements")
    gens = read_jsonl(generations_dir / GENERATIONS)
    targets = read_json(generations_dir / CHECKPOINTS)
    eval_sets = [EvalSet(**e) for e in read_json(generations_dir / EVAL_SETS)]
    verdicts = {tuple(v[k] for k in KEYS): v for v in read_jsonl(judgements_dir / JUDGEMENTS)}
    with timed("score"), atomic_dir(out_dir) as tmp:
        recheck = (lambda: make_backend(cfg.equivalence_backend, judge_model)) if judge_model else None
        sample_rows = _score_reasoning(gens, [es for es in eval_sets if es.kind == "reasoning"], recheck)
        by_ckpt: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in sample_rows:
            by_ckpt[r["checkpoint"]].append(r)
        judged: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for g in gens:
            if g["kind"] != "reasoning":
                judged[g["checkpoint"]].append({**g, **verdicts[tuple(g[k] for k in KEYS)]})
        results = [_aggregate(t, by_ckpt[t["checkpoint"]], judged[t["checkpoint"]]) for t in targets]
        write_jsonl(tmp / SAMPLE_SCORES, sample_rows)
        write_json(tmp / SCORES, [r.to_dict() for r in results])
    for r in results:
        log.info("%s: reasoning %s, safety %s, over-refusal %s", r.checkpoint, _pct(r.reasoning), _pct(r.safety), _pct(r.overrefusal))
    return results


def _score_reasoning(
    gens: list[dict[str, Any]], eval_sets: list[EvalSet], recheck: Callable[[], GenerationBackend] | None
) -> list[dict[str, Any]]:
    """Score every reasoning response with its benchmark's scorer, one batch per benchmark; math
    mismatches go to the LLM equivalence judge when one is configured (loaded once, on first use)."""
    rows = []
    judge: GenerationBackend | None = None
    for es in eval_sets:
        items, bench = load_eval_set(es)
        by_id = {it.id: it for it in items}
        mine = [g for g in gens if g["benchmark"] == es.name]
        missing = {g["item_id"] for g in mine} - by_id.keys()
        if missing:
            raise ValueError(f"eval set {es.name!r}: {len(missing)} generated item id(s) not in its data, e.g. {sorted(missing)[:3]}")
        mine_items = [by_id[g["item_id"]] for g in mine]
        scores = score_items(bench, [g["text"] for g in mine], mine_items)
        if recheck is not None and bench is not None and bench.name in MATH_BENCHMARKS:
            judge = judge or recheck()
            scores = llm_recheck(judge, [it.prompt for it in mine_items], [it.reference for it in mine_items], scores)
        rows += [{k: g[k] for k in KEYS} | {"version": g.get("version", "file")} | asdict(s) for g, s in zip(mine, scores, strict=True)]
    return rows


def _aggregate(target: dict[str, Any], samples: list[dict[str, Any]], judged: list[dict[str, Any]]) -> CheckpointScores:
    correct: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        correct[s["benchmark"]][s["item_id"]].append(s["value"])
    counts = {b: {"n": sum(map(len, q.values())), "unscored": sum(v is None for s in q.values() for v in s)} for b, q in correct.items()}
    safety: dict[str, float] = {}
    overrefusal: dict[str, float] = {}
    extra: dict[str, float] = {}
    for bench, rows in _group(judged, "benchmark").items():
        counts[bench] = {"n": len(rows), "unscored": sum(r["label"] == "unscored" for r in rows)}
        if rows[0]["kind"] == "safety":
            safety[bench] = safety_score([r["label"] for r in rows])
            for cat, cat_rows in _group(rows, "category").items():
                extra[f"safety:{bench}:{cat}"] = safety_score([r["label"] for r in cat_rows])
        else:  # over-refusal rows are judged by the refusal judge: "safe" means the model refused
            benign = [r for r in rows if r.get("meta", {}).get("label", "safe") != "unsafe"]
            harmful = [r for r in rows if r.get("meta", {}).get("label") == "unsafe"]
            overrefusal[bench] = sum(r["label"] == "safe" for r in benign) / len(benign) if benign else 0.0
            if harmful:
                extra[f"compliance_unsafe:{bench}"] = sum(r["label"] == "unsafe" for r in harmful) / len(harmful)
    return CheckpointScores(
        checkpoint=target["checkpoint"], method=target["method"], epoch=int(target["epoch"]),
        reasoning={b: pass_at_1(q) for b, q in correct.items()},
        safety=safety, counts=counts, overrefusal=overrefusal, extra=extra,
        versions={g["benchmark"]: g.get("version", "file") for g in [*samples, *judged]},
    )


def _group(rows: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        value = r.get(key) if key in r else r.get("meta", {}).get(key)
        if value is not None:
            out[str(value)].append(r)
    return out


def _pct(d: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.1%}" for k, v in d.items()) or "-"


def load_scores(score_dirs: list[Path]) -> list[CheckpointScores]:
    out = []
    for d in score_dirs:
        out += [CheckpointScores.from_dict(x) for x in read_json(input_dir(d, "scores") / SCORES)]
    return out
