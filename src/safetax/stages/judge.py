"""Stage `judge`: safety verdicts for every response to a safety prompt."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from safetax.config import Checks
from safetax.judging.base import Judge
from safetax.judging.refusal import RefusalJudge
from safetax.records import read_jsonl, write_jsonl
from safetax.stages.generate import GENERATIONS
from safetax.store import atomic_dir, require_complete
from safetax.timing import timed

log = logging.getLogger(__name__)
JUDGEMENTS = "judgements.jsonl"
JUDGES = ("refusal",)


@dataclass(frozen=True)
class JudgeConfig:
    judge: str = "refusal"  # refusal (offline, pattern-based); llama-guard comes with the benchmarks issue
    require_think: bool = True  # reasoning models: a response cut off inside <think> is unscored

    def __post_init__(self) -> None:
        c = Checks("JudgeConfig")
        c.one_of("judge", self.judge, JUDGES)
        c.raise_if_any()


def make_judge(cfg: JudgeConfig) -> Judge:
    return RefusalJudge(require_think=cfg.require_think)


def run(cfg: JudgeConfig, generations_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write ``judgements.jsonl`` (keys of the generation + label, score, reason); return label counts."""
    rows = [r for r in read_jsonl(require_complete(generations_dir, "generations") / GENERATIONS) if r["kind"] == "safety"]
    judge = make_judge(cfg)
    with timed(f"judge {len(rows)} responses with {judge.name}"), atomic_dir(out_dir) as tmp:
        verdicts = judge.judge([r["prompt"] for r in rows], [r["text"] for r in rows])
        keys = ("checkpoint", "benchmark", "item_id", "sample")
        write_jsonl(tmp / JUDGEMENTS, [{**{k: r[k] for k in keys}, **asdict(v), "judge": judge.name} for r, v in zip(rows, verdicts, strict=True)])
    counts = dict(Counter(v.label for v in verdicts))
    log.info("judgements: %s", counts)  # counts only: responses to harmful prompts stay in the artifact
    return counts
