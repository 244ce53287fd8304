"""Stage `prepare`: refusal data -> tokenised SFT examples in the model's chat template."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from safetax.config import Checks
from safetax.data.chat import build_sft_example
from safetax.data.tables import read_rows, require_columns
from safetax.records import write_jsonl
from safetax.store import atomic_dir, local_path, resolve_model, write_json
from safetax.timing import timed

log = logging.getLogger(__name__)
SFT_FILE = "sft.jsonl"


@dataclass(frozen=True)
class PrepareConfig:
    refusal_uri: str  # JSONL, CSV or parquet with a harmful prompt and a refusal per row
    model_uri: str  # the base model whose tokenizer and chat template format the examples
    max_length: int = 1024  # tokens per example; refusals are short, long prompts are cut on the left
    prompt_column: str = "prompt"
    refusal_column: str = "refusal"

    def __post_init__(self) -> None:
        c = Checks("PrepareConfig")
        c.positive("max_length", self.max_length)
        for name in ("refusal_uri", "model_uri", "prompt_column", "refusal_column"):
            if not getattr(self, name):
                c.fail(name, getattr(self, name), "a non-empty string")
        c.raise_if_any()


@dataclass(frozen=True)
class PrepareResult:
    out_dir: Path
    n_examples: int
    n_truncated: int
    mean_tokens: float


def run(cfg: PrepareConfig, out_dir: Path) -> PrepareResult:
    """Validate every row, then write ``sft.jsonl`` (input_ids, labels) and ``stats.json``."""
    from transformers import AutoTokenizer

    path = local_path(cfg.refusal_uri, "refusal_uri")
    model = resolve_model(cfg.model_uri, "model_uri")
    rows = read_rows(path)
    require_columns(path, rows, (cfg.prompt_column, cfg.refusal_column))
    with timed("prepare"), atomic_dir(out_dir) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(model)
        examples = [
            build_sft_example(tokenizer, str(r[cfg.prompt_column]), str(r[cfg.refusal_column]), cfg.max_length)
            for r in rows
        ]
        write_jsonl(tmp / SFT_FILE, [{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
        n_trunc = sum(len(e.input_ids) >= cfg.max_length for e in examples)
        mean = sum(len(e.input_ids) for e in examples) / len(examples)
        write_json(tmp / "stats.json", {"n_examples": len(examples), "n_truncated": n_trunc, "mean_tokens": mean})
    log.info("prepared %d SFT examples (%d truncated, %.0f tokens on average)", len(examples), n_trunc, mean)
    return PrepareResult(out_dir, len(examples), n_trunc, mean)
