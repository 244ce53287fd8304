"""Stage `corpus`: the model's own chain-of-thought answers, RPSA's reference corpus for the Fisher.

N problems of a reasoning set (default MATH-500, 100 problems drawn with a fixed seed; any
registered reasoning benchmark or plain reasoning file can be given) are answered by the base
model with the seeds' sampling (temperature 0.6, top_p 0.95). Every row keeps the rendered prompt,
the full response (thinking included) and its score, so the Fisher stage can use all answers or
only the correct ones. GPQA is refused: its questions must not be stored in plain text.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetax.config import Checks
from safetax.data.chat import render_prompt
from safetax.data.eval_sets import EvalSet, load_eval_set, score_items
from safetax.generation.base import SamplingConfig
from safetax.records import read_jsonl, write_jsonl
from safetax.store import atomic_dir, input_dir, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
CORPUS = "corpus.jsonl"
KEEP = ("all", "correct")


@dataclass(frozen=True)
class CorpusConfig:
    eval_set: EvalSet = EvalSet(name="math500", kind="reasoning", benchmark="math500")
    n: int = 100  # problems (0 = none: the stage writes an empty corpus and RPSA methods refuse to run)
    seed: int = 42
    sampling: SamplingConfig = SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=32768, seed=42)
    batch_size: int = 32
    backend: str = "hf"

    def __post_init__(self) -> None:
        c = Checks("CorpusConfig")
        c.non_negative("rpsa_corpus_size", self.n)
        c.one_of("eval_set.kind", self.eval_set.kind, ("reasoning",))
        if self.eval_set.benchmark == "gpqa":
            c.fail("rpsa_corpus", "gpqa", "a set whose questions may be stored (GPQA's may not): math500, aime24, ...")
        c.raise_if_any()


def run(cfg: CorpusConfig, model_uri: str, out_dir: Path) -> int:
    """Write ``corpus.jsonl`` (prompt, response, correct) for ``cfg.n`` sampled problems; return the row count."""
    from safetax.generation.backends import make_backend

    rows: list[dict[str, Any]] = []
    with timed(f"corpus of {cfg.n} problems"), atomic_dir(out_dir) as tmp:
        if cfg.n:
            items, bench = load_eval_set(cfg.eval_set)  # validates the file before the model loads
            picked = sorted(random.Random(cfg.seed).sample(range(len(items)), min(cfg.n, len(items))))
            items = [items[i] for i in picked]
            backend = make_backend(cfg.backend, resolve_model(model_uri, "model_uri"), cfg.batch_size)
            prompts = [render_prompt(backend.tokenizer, it.prompt) for it in items]
            outs = backend.generate(prompts, cfg.sampling)
            responses = [o[0].text for o in outs]
            scores = score_items(bench, responses, items)
            for it, prompt, out, s in zip(items, prompts, outs, scores, strict=True):
                rows.append({"id": it.id, "prompt": prompt, "response": out[0].text, "finished": out[0].finished,
                             "correct": s.value == 1.0})
        write_jsonl(tmp / CORPUS, rows)
        write_json(tmp / "corpus.json", {"eval_set": asdict(cfg.eval_set), "n": len(rows), "seed": cfg.seed,
                                         "correct": sum(r["correct"] for r in rows), "sampling": asdict(cfg.sampling)})
    log.info("corpus: %d answers, %d correct", len(rows), sum(r["correct"] for r in rows))
    return len(rows)


def corpus_examples(tokenizer: Any, corpus_dir: Path, keep: str = "all", max_length: int = 4096) -> list[dict[str, list[int]]]:
    """Tokenised (prompt + response) sequences with the loss on the response tokens only.

    ``keep`` ``all`` or ``correct``. A sequence longer than ``max_length`` tokens loses the
    end of its response, never its prompt: the Fisher must condition on the problem (RPSA
    Eq. 4 is the likelihood of the response given the prompt). A row whose prompt alone
    leaves no room for a response token is skipped with a warning."""
    from safetax.data.chat import IGNORE_INDEX

    if keep not in KEEP:
        raise ValueError(f"`keep` must be one of {', '.join(KEEP)}, got {keep!r}")
    rows = read_jsonl(input_dir(corpus_dir, "rpsa corpus") / CORPUS)
    out = []
    eos = tokenizer.eos_token or ""
    for r in rows:
        if keep == "correct" and not r["correct"]:
            continue
        p_ids = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(r["response"] + (eos if r.get("finished") else ""), add_special_tokens=False)["input_ids"]
        c_ids = c_ids[: max(0, max_length - len(p_ids))]  # the response's end goes first
        if not c_ids and len(p_ids) >= max_length:
            log.warning("rpsa corpus row %s skipped: its prompt has %d tokens, max_length is %d",
                        r.get("id", "?"), len(p_ids), max_length)
        if c_ids:
            out.append({"input_ids": p_ids + c_ids, "labels": [IGNORE_INDEX] * len(p_ids) + c_ids})
    return out
