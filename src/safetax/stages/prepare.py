"""Stage `prepare`: refusal data -> tokenised SFT examples in the model's chat template."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from safetax.config import Checks
from safetax.data.chat import build_sft_example
from safetax.data.refusal_sets import fetch_hub_dataset, load_refusal_rows
from safetax.records import write_jsonl
from safetax.store import atomic_dir, fetch, is_hub_id, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
SFT_FILE = "sft.jsonl"


@dataclass(frozen=True)
class PrepareConfig:
    # JSONL, CSV or parquet with `prompt` and `refusal` columns, or DirectRefusal's format
    # (`refusal` = "Question: ... Answer: ..."), as a path or a hub dataset id (online clusters).
    refusal_uri: str
    model_uri: str  # the base model whose tokenizer and chat template format the examples
    max_length: int = 1024  # tokens per example; refusals are short, long prompts are cut on the left

    def __post_init__(self) -> None:
        c = Checks("PrepareConfig")
        c.positive("max_length", self.max_length)
        for name in ("refusal_uri", "model_uri"):
            if not getattr(self, name):
                c.fail(name, getattr(self, name), "a non-empty string")
        c.raise_if_any()


@dataclass(frozen=True)
class PrepareResult:
    out_dir: Path
    n_examples: int
    n_truncated: int
    mean_tokens: float


def _refusal_file(uri: str) -> Path:
    """A local file, or a hub dataset (e.g. TianshengHuang/DirectRefusal) fetched on an online cluster."""
    if is_hub_id(uri):
        return fetch_hub_dataset(uri)
    return fetch(uri, "refusal_uri")


def run(cfg: PrepareConfig, out_dir: Path) -> PrepareResult:
    """Validate every row, then write ``sft.jsonl`` (input_ids, labels) and ``stats.json``."""
    from transformers import AutoTokenizer

    path = _refusal_file(cfg.refusal_uri)
    model = resolve_model(cfg.model_uri, "model_uri")
    rows = load_refusal_rows(path)
    with timed("prepare"), atomic_dir(out_dir) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(model)
        examples = [
            build_sft_example(tokenizer, r["prompt"], r["refusal"], cfg.max_length)
            for r in rows
        ]
        write_jsonl(tmp / SFT_FILE, [{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
        n_trunc = sum(len(e.input_ids) >= cfg.max_length for e in examples)
        mean = sum(len(e.input_ids) for e in examples) / len(examples)
        write_json(tmp / "stats.json", {"n_examples": len(examples), "n_truncated": n_trunc, "mean_tokens": mean})
    log.info("prepared %d SFT examples (%d truncated, %.0f tokens on average)", len(examples), n_trunc, mean)
    return PrepareResult(out_dir, len(examples), n_trunc, mean)
