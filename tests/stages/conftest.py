"""Fixtures of the stage tests: the tiny model's tokenised refusal SFT data."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetax.stages import prepare


@pytest.fixture()
def sft(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sft"
    prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), out)
    return out
