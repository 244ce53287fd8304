"""Stage `judge`: verdicts for every response to a safety or over-refusal prompt.

Safety prompts are judged by the configured judge (refusal patterns offline,
Llama-Guard-3 on a cluster). Over-refusal prompts (XSTest, benign
WildJailbreak) always go to the refusal-pattern judge, whose "safe" means "the
model refused": over-refusal is about refusing, not about harm.

Verdicts are looked up in the cache first (:mod:`safetax.gencache`, key: judge, judge model and judge code,
prompt and response) and written in chunks as they are made (:mod:`safetax.resume`), like generations.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from safetax.artifacts import (
    JUDGEMENTS, SAMPLE_KEY, SECOND_OPINIONS, GenerationRow, JudgementRow, StageCost, pod_gpus, read_generations, write_cost,
    write_judgements,
)
from safetax.config import Checks
from safetax.gencache import Cache, judgement_key, model_identity
from safetax.judging.base import SCOPES, Judge
from safetax.judging.refusal import RefusalJudge
from safetax.records import Judgement
from safetax.resume import ChunkArea, chunk_size, chunks, fingerprint
from safetax.store import atomic_dir
from safetax.timing import timed

log = logging.getLogger(__name__)
__all__ = ["JUDGEMENTS", "KEYS", "JudgeConfig", "make_judge", "run"]
JUDGES = ("refusal", "llama-guard")
GUARD_MODES = ("logit", "generate")
KEYS = SAMPLE_KEY  # identifies one response across stages


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
    chunk_items: int = 512  # at most this many responses per chunk (the unit of resume; resume.chunk_size); 0 = one chunk
    # llama-guard's engine: transformers (hf) or vLLM (vllm; the platform's judge_backend), the vLLM engine's context
    # (the platform's vllm.judge_max_model_len; 0 = the guard's own) and its share of GPU memory.
    backend: str = "hf"
    max_model_len: int = 0
    gpu_memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        c = Checks("JudgeConfig")
        c.one_of("backend", self.backend, ("hf", "vllm"))
        c.non_negative("max_model_len", self.max_model_len)
        if not 0 < self.gpu_memory_utilization <= 1:
            c.fail("gpu_memory_utilization", self.gpu_memory_utilization, "in (0, 1]")
        c.one_of("judge", self.judge, JUDGES)
        c.one_of("mode", self.mode, GUARD_MODES)
        c.positive("batch_size", self.batch_size)
        c.one_of("judge_scope", self.judge_scope, SCOPES)
        c.non_negative("chunk_items", self.chunk_items)
        c.boolean("require_think", self.require_think)
        c.raise_if_any()


def make_judge(cfg: JudgeConfig, pinned: bool = False) -> Judge:
    """The configured judge; ``pinned``: a hub id is resolved to its snapshot directory (the commit a verdict cache key
    names), else left for transformers to fetch."""
    if cfg.judge == "llama-guard":
        from safetax.judging.llama_guard import LlamaGuardJudge
        from safetax.store import local_model_dir, resolve_model

        model = (local_model_dir if pinned else resolve_model)(cfg.judge_model, "judge_model")
        return LlamaGuardJudge(str(model), mode=cfg.mode,  # type: ignore[arg-type]
                               batch_size=cfg.batch_size, require_think=cfg.require_think,
                               scope=cfg.judge_scope, backend=cfg.backend, max_model_len=cfg.max_model_len,  # type: ignore[arg-type]
                               gpu_memory_utilization=cfg.gpu_memory_utilization)
    return RefusalJudge(require_think=cfg.require_think)


def run(cfg: JudgeConfig, generations_dir: Path, out_dir: Path, *, cache_uri: str = "", partial_uri: str = "") -> dict[str, int]:
    """Write ``judgements.jsonl`` (keys of the generation + label, score, reason, categories, judge) and ``cost.json``;
    return label counts. ``cache_uri`` / ``partial_uri``: as for :func:`safetax.stages.generate.run`.

    ``categories``: the Llama Guard hazard categories (S1-S14) of a generate-mode ``unsafe``
    verdict, also in its reason ``"unsafe: S1,S9"``; empty for every other verdict."""
    start = time.perf_counter()
    rows = read_generations(generations_dir)
    safety = [r for r in rows if r.generation.kind == "safety"]
    overrefusal = [r for r in rows if r.generation.kind == "overrefusal"]
    judges: dict[str, Judge] = {"overrefusal": RefusalJudge(cfg.require_think)}
    if safety:  # the configured judge is made (and its model resolved) only when there is something to judge
        judges["safety"] = make_judge(cfg, pinned=bool(cache_uri))
    responses = hashlib.sha256("\0".join(f"{r.key}\0{r.prompt}\0{r.generation.text}" for r in rows).encode()).hexdigest()
    area = ChunkArea(partial_uri or str(out_dir / "partial"), fingerprint({"config": asdict(cfg), "responses": responses}))
    cache, counts = Cache(cache_uri, "judgements"), Counter[str]()
    identity = {k: _identity(cfg, j) if cache.enabled else "" for k, j in judges.items()}
    out: list[JudgementRow] = []
    with timed(f"judge {len(safety)} safety and {len(overrefusal)} over-refusal responses"):
        for kind, subset in (("safety", safety), ("overrefusal", overrefusal)):
            for c, chunk in enumerate(chunks(subset, chunk_size(len(subset), cfg.chunk_items))):
                name = f"{kind}-{c:05d}"
                if area.has(name):
                    got = [JudgementRow.from_dict(d) for d in area.read(name)]
                    counts["resumed"] += len(got)
                else:
                    got = _judge_chunk(judges[kind], identity[kind], chunk, cache, cfg.require_think, counts)
                    area.write(name, [r.to_dict() for r in got])
                out += got
    tokens = sum(getattr(j, "generated_tokens", 0) for j in judges.values())  # Llama Guard's generate mode; logit: none
    cost = StageCost("judge", len(out), counts["generated"], counts["resumed"], counts["cached"], tokens,
                     time.perf_counter() - start, pod_gpus(), area.earlier_seconds())
    second = _second_opinions(judges.get("safety"), safety, cfg.require_think)
    with atomic_dir(out_dir) as tmp:
        write_judgements(tmp, out)
        if second:
            write_judgements(tmp, second, SECOND_OPINIONS)
        write_cost(tmp, cost)
    area.clear()
    labels = dict(Counter(r.judgement.label for r in out))
    log.info("judgements: %s; %s", labels, cost.summary())  # counts only: responses to harmful prompts stay in the artifact
    return labels


def _second_opinions(judge: Judge | None, rows: list[GenerationRow], require_think: bool) -> list[JudgementRow]:
    """The refusal-pattern judge's verdicts on the safety responses another judge labelled (instant, no model): the
    report shows how far the two agree (Cohen's kappa). None when the safety judge is the refusal judge itself."""
    second = RefusalJudge(require_think)
    if judge is None or judge.name == second.name or not rows:
        return []
    verdicts = second.judge([r.prompt for r in rows], [r.generation.text for r in rows])
    return [JudgementRow(r.key, v, second.name) for r, v in zip(rows, verdicts, strict=True)]


def _judge_chunk(judge: Judge, identity: str, chunk: list[GenerationRow], cache: Cache, require_think: bool,
                 counts: Counter[str]) -> list[JudgementRow]:
    keys = [judgement_key(judge.name, identity, require_think, r.prompt, r.generation.text) for r in chunk]
    found = cache.get_many(keys) if cache.enabled else [None] * len(chunk)
    verdicts: list[Judgement | None] = [None if v is None else Judgement(**{**v, "categories": tuple(v["categories"])}) for v in found]
    counts["cached"] += sum(v is not None for v in verdicts)
    todo = [i for i, v in enumerate(verdicts) if v is None]
    if todo:
        made = judge.judge([chunk[i].prompt for i in todo], [chunk[i].generation.text for i in todo])
        for i, v in zip(todo, made, strict=True):
            verdicts[i] = v
            cache.put(keys[i], asdict(v))
        counts["generated"] += len(todo)
    return [JudgementRow(r.key, v, judge.name) for r, v in zip(chunk, verdicts, strict=True) if v is not None]


def _identity(cfg: JudgeConfig, judge: Judge) -> str:
    """What a verdict depends on besides its judge's name and its input: the judge model's weights (llama-guard), the
    judges' code (every module of :mod:`safetax.judging`: prompt format, neutralisation, patterns and parsing, and the
    answer split of :mod:`safetax.formats`) and its
    engine (transformers, or vLLM and its version)."""
    from safetax import formats, judging  # split_reasoning: what a judge reads as the answer, and what is unscored

    files = sorted({Path(inspect.getfile(type(judge))), *Path(judging.__file__).parent.glob("*.py"), Path(formats.__file__)})
    code = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()  # every judging module: prompt, parsing
    model = model_identity(str(getattr(judge, "model"))) if cfg.judge == "llama-guard" and not isinstance(judge, RefusalJudge) else ""
    engine = judge.engine_id() if hasattr(judge, "engine_id") else ""
    return f"{model}/{code}" + (f"/{engine}" if engine not in ("", "hf") else "")  # transformers: the keys of earlier releases
