"""The plan step finds every mistake of a run at once, on a CPU, before any model loads or pod starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetax.config import ConfigError
from safetax.stages.plan import PLAN, AlignmentParams, plan
from tests.stages.conftest import alignment_params


def _params(tiny_model: Path, tmp_path: Path, **kw) -> AlignmentParams:
    return alignment_params(tiny_model, tmp_path, **kw)


def test_items_carry_resolved_configs_and_flags(tiny_model: Path, tmp_path: Path) -> None:
    items = plan(_params(tiny_model, tmp_path, epochs=2, seed=7, rpsa_corpus_size=4,
                         methods=[{"method": "lora", "name": "lora-r4", "merge": "ortho-both", "merge_k": 8,  # tiny model: 32 x 64
                                   "merge_lambdas": [1, 1.25]},
                                  {"method": "full", "epochs": 1}, {"method": "rpsa", "name": "rpsa-lora"}]), tmp_path / "out")
    by = {it["label"]: it for it in items}
    assert list(by) == ["lora-r4", "full", "rpsa-lora"]
    assert by["lora-r4"]["config"]["epochs"] == 2 and by["full"]["config"]["epochs"] == 1  # a method's own setting wins
    assert all(it["config"]["seed"] == 7 for it in items)
    assert (by["lora-r4"]["merges"], by["full"]["merges"]) == (True, False)
    assert [it["is_rpsa"] for it in items] == [False, False, True]
    assert by["rpsa-lora"]["rpsa"]["corpus"]["n"] == 4 and by["full"]["rpsa"] == {}
    assert json.loads((tmp_path / "out" / PLAN).read_text())["methods"] == items


def test_every_problem_is_reported_at_once_naming_where(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan(_params(tiny_model, tmp_path, methods=[{"method": "lora", "name": "a"}, {"method": "lroa"}, {"method": "full", "name": "a"},
                                                    {"method": "full", "name": "../../victim"}, {"method": "rpsa"}],
                     eval_sets=[{"name": "x", "kind": "reasonin", "uri": "nowhere.jsonl"}], generation_backend="tgi",
                     generation_batch_size=0, train_gpus="two", judge_name="guard", store_uri="ftp://host/x",
                     gate_thresholds={"min_safety_score": 2}))
    msg = str(err.value)
    for expected in ("methods[1]", "lroa", "methods[2].name", "unique", "methods[3].name", "rpsa_corpus_size", "eval_sets[0]",
                     "generation_backend", "generation_batch_size", "train_gpus", "judge", "store_uri", "gate_thresholds"):
        assert expected in msg, expected


def test_unreachable_model_fails_in_the_plan(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be reached: base_model_uri"):
        plan(_params(tiny_model, tmp_path, base_model_uri=str(tmp_path / "no-such-model")))


def test_gpu_counts_arrive_as_text(tiny_model: Path, tmp_path: Path) -> None:
    assert len(plan(_params(tiny_model, tmp_path, train_gpus="2", generate_gpus="1", judge_gpus="0"))) == 2
    # RPSA trains on several GPUs too (its masks act on each rank's FSDP shards).
    assert len(plan(_params(tiny_model, tmp_path, train_gpus="2", methods=[{"method": "rpsa"}], rpsa_corpus_size=2))) == 1
    with pytest.raises(ConfigError, match="train_gpus"):
        plan(_params(tiny_model, tmp_path, train_gpus="two"))


@pytest.mark.parametrize(("shards", "message"), [(0, "eval_shards: 0 is not allowed; an integer from 1"),
                                                 (4, "`eval_shards` must be at most the 3 prompts of the eval sets")])
def test_eval_shards_are_checked_against_the_prompts(tiny_model: Path, tmp_path: Path, shards: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan(_params(tiny_model, tmp_path, eval_shards=shards))
    assert message in str(err.value)
    assert len(plan(_params(tiny_model, tmp_path, eval_shards=3.0))) == 2  # KFP may hand whole numbers over as floats
