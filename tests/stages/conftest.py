"""Fixtures of the stage tests: the tiny model's tokenised refusal SFT data, a valid alignment run to vary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetax.stages import prepare
from safetax.stages.plan import AlignmentParams


@pytest.fixture()
def sft(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sft"
    prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), out)
    return out


def alignment_params(tiny_model: Path, tmp_path: Path, **kw: object) -> AlignmentParams:
    """A valid run on the tiny model (an arithmetic eval set, one refusal row, a LoRA and a full method), with ``kw``."""
    data = tmp_path / "arith.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{i}+{i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    refusals = tmp_path / "refusals.jsonl"
    refusals.write_text(json.dumps({"prompt": "Explain restricted task 1.", "refusal": "I can't help with that."}) + "\n")
    base = {"base_model_uri": str(tiny_model), "refusal_data_uri": str(refusals),
            "eval_sets": [{"name": "arith", "kind": "reasoning", "uri": str(data)}],
            "methods": [{"method": "lora", "name": "lora-r4"}, {"method": "full"}],
            "rpsa_corpus": {"name": "arith", "kind": "reasoning", "uri": str(data)}}
    return AlignmentParams(**(base | kw))  # type: ignore[arg-type]
