"""Stage `judge`: verdicts for every response to a safety or over-refusal prompt.

Safety prompts are judged by the configured judge (refusal patterns offline,
Llama-Guard-3 on a cluster). Over-refusal prompts (XSTest, benign
WildJailbreak) always go to the refusal-pattern judge, whose "safe" means "the
model refused": over-refusal is about refusing, not about harm.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetax.config import Checks
from safetax.judging.base import SCOPES, Judge, guard_categories
from safetax.judging.refusal import RefusalJudge
from safetax.records import read_jsonl, write_jsonl
from safetax.stages.generate import GENERATIONS
from safetax.store import atomic_dir, input_dir
from safetax.timing import timed

log = logging.getLogger(__name__)
JUDGEMENTS = "judgements.jsonl"
JUDGES = ("refusal", "llama-guard")
GUARD_MODES = ("logit", "generate")
KEYS = ("checkpoint", "benchmark", "item_id", "sample")  # identifies one response across stages


@dataclass(frozen=True)
class JudgeConfig:
    judge: str = "refusal"  # refusal (pattern-based, offline) | llama-guard (Llama-Guard-3)
    judge_model: str = "meta-llama/Llama-Guard-3-8B"  # llama-guard: model directory or hub id
    mode: str = "logit"  # llama-guard: one forward pass reading P(unsafe), or generate and parse
    require_think: bool = True  # reasoning models: a response cut off inside <think> is unscored
    batch_size: int = 8
    # llama-guard: what the guard reads. "answer": the text after </think>; "full": the reasoning
    # trace too (harm in a trace is a real risk; an unfinished response can then be unsafe, never
    # safe). Neither paper states it: the LoRA paper (app. A.2) passes "the answer" of a greedy
    # generation to Llama-Guard-3-8B; RPSA (sec. 4.2) names neither its safety judge nor the scope.
    judge_scope: str = "answer"

    def __post_init__(self) -> None:
        c = Checks("JudgeConfig")
        c.one_of("judge", self.judge, JUDGES)
        c.one_of("mode", self.mode, GUARD_MODES)
        c.positive("batch_size", self.batch_size)
        c.one_of("judge_scope", self.judge_scope, SCOPES)
        c.raise_if_any()


def make_judge(cfg: JudgeConfig) -> Judge:
    if cfg.judge == "llama-guard":
        from safetax.judging.llama_guard import LlamaGuardJudge
        from safetax.store import resolve_model

        return LlamaGuardJudge(resolve_model(cfg.judge_model, "judge_model"), mode=cfg.mode,  # type: ignore[arg-type]
                               batch_size=cfg.batch_size, require_think=cfg.require_think,
                               scope=cfg.judge_scope)  # type: ignore[arg-type]
    return RefusalJudge(require_think=cfg.require_think)


def run(cfg: JudgeConfig, generations_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write ``judgements.jsonl`` (keys of the generation + label, score, reason, categories, judge); return label counts.

    ``categories``: the Llama Guard hazard categories (S1-S14) of a generate-mode ``unsafe``
    verdict, also in its reason ``"unsafe: S1,S9"``; empty for every other verdict."""
    rows = read_jsonl(input_dir(generations_dir, "generations") / GENERATIONS)
    safety = [r for r in rows if r["kind"] == "safety"]
    overrefusal = [r for r in rows if r["kind"] == "overrefusal"]
    out: list[dict[str, Any]] = []
    with timed(f"judge {len(safety)} safety and {len(overrefusal)} over-refusal responses"), atomic_dir(out_dir) as tmp:
        for judge, subset in ((make_judge(cfg) if safety else None, safety), (RefusalJudge(cfg.require_think), overrefusal)):
            if judge is None or not subset:
                continue
            verdicts = judge.judge([r["prompt"] for r in subset], [r["text"] for r in subset])
            out += [{**{k: r[k] for k in KEYS}, **asdict(v), "categories": guard_categories(v.reason), "judge": judge.name}
                    for r, v in zip(subset, verdicts, strict=True)]
        write_jsonl(tmp / JUDGEMENTS, out)
    counts = dict(Counter(r["label"] for r in out))
    log.info("judgements: %s", counts)  # counts only: responses to harmful prompts stay in the artifact
    return counts
