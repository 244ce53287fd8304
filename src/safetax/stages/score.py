"""Stage `score`: reasoning correctness per response, then the metrics of every checkpoint."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from safetax.artifacts import (
    SAMPLE_KEY, SAMPLE_SCORES, SCORES, SECOND_OPINIONS, JudgementRow, read_cost, read_eval_sets, read_generations, read_judgements, read_scores, read_targets,
    write_sample_scores, write_scores,
)
from safetax.benchmarks.safety import UNCATEGORIZED
from safetax.config import Checks
from safetax.data.eval_sets import EvalSet, load_eval_set, score_items
from safetax.generation.base import GenerationBackend
from safetax.metrics import LabelCounts, QuestionCounts, attack_success_rate
from safetax.records import CheckpointScores, Score
from safetax.scoring.llm_equivalence import llm_recheck
from safetax.shards import Shard
from safetax.stages.code_exec import read_results
from safetax.generation.backends import BACKENDS, make_backend
from safetax.store import StoreError, atomic_dir, resolve_model
from safetax.timing import timed

log = logging.getLogger(__name__)
__all__ = ["SAMPLE_SCORES", "SCORES", "ScoreConfig", "load_scores", "run"]
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


def run(generations_dir: Path, judgements_dir: Path, out_dir: Path, cfg: ScoreConfig = ScoreConfig(),
        code_results: Path | None = None, shard: Shard | None = None) -> list[CheckpointScores]:
    """Write ``sample_scores.jsonl`` (reasoning samples) and ``scores.json`` (one CheckpointScores each).

    ``shard``: the generations are one evaluation shard's (:mod:`safetax.shards`); the records say so, and
    :func:`load_scores` merges them with the other shards' before any figure is read.

    ``code_results``: the verdicts of the code task (:mod:`safetax.stages.code_exec`) for HumanEval+ / MBPP+
    responses; the pipelines always pass them, so this stage runs no model-written code. None: the programs run
    here, in the sandbox (library use and tests)."""
    judge_model = resolve_model(cfg.equivalence_model, "equivalence_model") if cfg.equivalence_model else None
    gens = [g.to_dict() for g in read_generations(generations_dir)]  # flat rows: verdicts are merged into them
    targets = [t.to_dict() for t in read_targets(generations_dir)]
    eval_sets = read_eval_sets(generations_dir)
    verdicts = {v.key: v.to_dict() for v in read_judgements(judgements_dir)}
    second = {v.key: v for v in read_judgements(judgements_dir, SECOND_OPINIONS)}
    with timed("score"), atomic_dir(out_dir) as tmp:
        recheck = (lambda: make_backend(cfg.equivalence_backend, judge_model)) if judge_model else None
        ran = read_results(code_results) if code_results is not None else None
        sample_rows = _score_reasoning(gens, [es for es in eval_sets if es.kind == "reasoning"], recheck, ran)
        by_ckpt: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in sample_rows:
            by_ckpt[r["checkpoint"]].append(r)
        judged: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for g in gens:
            if g["kind"] != "reasoning":
                judged[g["checkpoint"]].append({**g, **verdicts[tuple(g[k] for k in SAMPLE_KEY)]})
        cost = _cost(generations_dir, judgements_dir) if len(targets) == 1 else {}  # a per-checkpoint chain's
        results = [replace(_aggregate(t, by_ckpt[t["checkpoint"]], judged[t["checkpoint"]]),
                           judge_agreement=_agreement(judged[t["checkpoint"]], second), cost=cost,
                           shard=str(shard) if shard else "") for t in targets]
        write_sample_scores(tmp, sample_rows)
        write_scores(tmp, results)
    for r in results:
        log.info("%s: reasoning %s, safety %s, over-refusal %s", r.checkpoint, _pct(r.reasoning), _pct(r.safety), _pct(r.overrefusal))
    return results


def _score_reasoning(
    gens: list[dict[str, Any]], eval_sets: list[EvalSet], recheck: Callable[[], GenerationBackend] | None,
    ran: dict[tuple[Any, ...], Score] | None = None,
) -> list[dict[str, Any]]:
    """Score every reasoning response with its benchmark's scorer, one batch per benchmark; math
    mismatches go to the LLM equivalence judge when one is configured (loaded once, on first use).
    Code benchmarks take the code task's verdicts ``ran`` when given (a missing one is an error)."""
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
        if ran is not None and getattr(bench, "dataset", ""):  # an EvalPlus benchmark: its programs ran in the code task
            missing_runs = [g for g in mine if tuple(g[k] for k in SAMPLE_KEY) not in ran]
            if missing_runs:
                raise ValueError(f"eval set {es.name!r}: {len(missing_runs)} response(s) without a verdict of the code task")
            scores = [ran[tuple(g[k] for k in SAMPLE_KEY)] for g in mine]
        else:
            scores = score_items(bench, [g["text"] for g in mine], mine_items)
        if recheck is not None and bench is not None and bench.name in MATH_BENCHMARKS:
            judge = judge or recheck()
            scores = llm_recheck(judge, [it.prompt for it in mine_items], [it.reference for it in mine_items], scores)
        rows += [{k: g[k] for k in SAMPLE_KEY} | {"version": g.get("version", "file")} | asdict(s) for g, s in zip(mine, scores, strict=True)]
    return rows


def _aggregate(target: dict[str, Any], samples: list[dict[str, Any]], judged: list[dict[str, Any]]) -> CheckpointScores:
    """One checkpoint's record: the counts (per benchmark, category, question and prompt) every figure comes from."""
    correct: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        correct[s["benchmark"]][s["item_id"]].append(s["value"])
    safety_labels: dict[str, LabelCounts] = {}
    benign_labels: dict[str, LabelCounts] = {}
    categories: dict[str, dict[str, LabelCounts]] = {}
    hazards: dict[str, dict[str, int]] = {}
    outcomes: dict[str, dict[str, str]] = {}
    extra: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for bench, rows in _group(judged, "benchmark").items():
        counts[bench] = {"n": len(rows), "unscored": sum(r["label"] == "unscored" for r in rows)}
        if rows[0]["kind"] == "safety":
            safety_labels[bench] = LabelCounts.from_labels(r["label"] for r in rows)
            if any(_category(r) for r in rows):  # a plain eval file may have none
                by_cat = _group([{**r, "category": _category(r) or UNCATEGORIZED} for r in rows], "category")
                categories[bench] = {cat: LabelCounts.from_labels(r["label"] for r in rs) for cat, rs in sorted(by_cat.items())}
            named = Counter(code for r in rows if r["label"] == "unsafe" for code in r.get("categories") or ())
            if named:
                hazards[bench] = dict(sorted(named.items()))
            outcomes[bench] = {_outcome_key(r): r["label"] for r in rows}
        else:  # over-refusal rows are judged by the refusal judge: "safe" means the model refused
            benign = [r for r in rows if r.get("meta", {}).get("label", "safe") != "unsafe"]
            contrast = [r for r in rows if r.get("meta", {}).get("label") == "unsafe"]
            if benign:  # a shard (or a contrast-only file) may hold none
                benign_labels[bench] = LabelCounts.from_labels(r["label"] for r in benign)
            if contrast:  # XSTest's harmful contrasts: the share the model complied with (and its weight in a merge of shards)
                counts[bench]["contrasts"] = len(contrast)
                extra[f"compliance_unsafe:{bench}"] = attack_success_rate(LabelCounts.from_labels(r["label"] for r in contrast)).value
    return CheckpointScores(
        checkpoint=target["checkpoint"], method=target["method"], epoch=int(target["epoch"]),
        counts=counts, extra=extra, versions={g["benchmark"]: g.get("version", "file") for g in [*samples, *judged]},
        safety_labels=safety_labels, benign_labels=benign_labels,
        questions={b: {q: QuestionCounts.from_values(v) for q, v in qs.items()} for b, qs in correct.items()},
        categories=categories, hazards=hazards, outcomes=outcomes,
    )


def _cost(generations_dir: Path, judgements_dir: Path) -> dict[str, dict[str, float]]:
    """The generate and judge tasks' cost.json figures (numbers only); a stage without one is left out."""
    out: dict[str, dict[str, float]] = {}
    for d in (generations_dir, judgements_dir):
        try:
            c = read_cost(d).to_dict()
        except (FileNotFoundError, StoreError):  # outputs of earlier releases, hand-made test directories
            continue
        stage = str(c.pop("stage"))
        out[stage] = {k: float(v) for k, v in c.items()}
    return out


def _agreement(judged: list[dict[str, Any]], second: dict[tuple[Any, ...], JudgementRow]) -> dict[str, dict[str, int]]:
    """"<judge> vs <second judge>" -> "<label>|<label>" -> responses, over the safety responses both judged."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in judged:
        other = second.get(tuple(r[k] for k in SAMPLE_KEY))
        if r["kind"] == "safety" and other is not None:
            out[f"{r['judge']} vs {other.judge}"][f"{r['label']}|{other.judgement.label}"] += 1
    return {pair: dict(sorted(c.items())) for pair, c in out.items()}


def _category(row: dict[str, Any]) -> str:
    return str(row.get("category") or row.get("meta", {}).get("category") or "")


def _outcome_key(row: dict[str, Any]) -> str:
    """A prompt's key in ``outcomes``: its item id (greedy decoding: one response per prompt), else id#sample."""
    return str(row["item_id"]) if int(row.get("sample", 0)) == 0 else f"{row['item_id']}#{row['sample']}"


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
    """The records of every score output (:func:`safetax.artifacts.read_scores`: shards merged)."""
    return read_scores(score_dirs)
