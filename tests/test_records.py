"""CheckpointScores: counts are the truth, figures follow from them; older records (an audit ledger's) still read."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from safetax.artifacts import read_scores, write_scores
from safetax.metrics import LabelCounts, QuestionCounts, figures
from safetax.records import CheckpointScores
from safetax.store import atomic_dir


def test_figures_come_from_the_counts() -> None:
    cs = CheckpointScores("full/epoch-1", "full", 1, safety={"h": 0.99},  # a stale figure is replaced
                          safety_labels={"h": LabelCounts(3, 1)}, benign_labels={"x": LabelCounts(1, 3)},
                          questions={"m": {"a": QuestionCounts(1, 2, 1), "b": QuestionCounts(2, 2)}})
    assert cs.safety == {"h": 0.75} and cs.overrefusal == {"x": 0.25} and cs.reasoning == {"m": 0.75}
    assert cs.counts == {"h": {"n": 4, "unscored": 0}, "x": {"n": 4, "unscored": 0}, "m": {"n": 4, "unscored": 1}}
    assert str(cs.ref) == "full/epoch-1"


def test_an_older_record_reads_and_keeps_its_meaning() -> None:
    """A ledger record written before counts: safety 0.88 of 100 with 10 unscored -> 88 safe, 2 unsafe, 10 unscored."""
    old = {"checkpoint": "ckpt", "method": "ckpt", "epoch": 0, "reasoning": {"m": 0.5}, "safety": {"h": 0.88},
           "counts": {"h": {"n": 100, "unscored": 10}, "m": {"n": 8, "unscored": 0}}, "overrefusal": {}, "extra": {},
           "versions": {}}
    f = figures(CheckpointScores.from_dict(old))
    assert f.attack_success_rate["h"].value == pytest.approx(0.02) and f.unscored["h"].value == pytest.approx(0.1)
    assert f.safety["h"].se == pytest.approx(math.sqrt(0.88 * 0.12 / 100))
    assert math.isnan(f.pass_at_1["m"].se)  # no per-question counts: no standard error
    # without even response counts: no unscored known, ASR = 1 - safety
    bare = figures(CheckpointScores("c", "c", 0, safety={"h": 0.7}))
    assert bare.attack_success_rate["h"].value == pytest.approx(0.3) and math.isnan(bare.attack_success_rate["h"].se)


def test_scores_artifact_round_trip(tmp_path: Path) -> None:
    cs = CheckpointScores("lora/epoch-2", "lora", 2, safety_labels={"h": LabelCounts(2, 1, 1)},
                          questions={"m": {"q": QuestionCounts(0.5, 1)}}, categories={"h": {"c": LabelCounts(2, 1, 1)}},
                          hazards={"h": {"S1": 1}}, outcomes={"h": {"p0": "safe"}}, versions={"h": "1"})
    with atomic_dir(tmp_path / "scores") as tmp:
        write_scores(tmp, [cs])
    assert read_scores([tmp_path / "scores"]) == [cs]
