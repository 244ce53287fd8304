"""The typed checkpoints.json of train and merge outputs: one CheckpointRef per entry, named as generate names
the models it evaluates (targets_of), written back unchanged."""

from __future__ import annotations

from pathlib import Path

from safetax.artifacts import CheckpointManifest, read_checkpoints, write_checkpoints
from safetax.checkpoints import CheckpointRef
from safetax.stages.generate import targets_of
from safetax.store import atomic_dir

TRAIN = {"label": "lora-r4", "kind": "adapter", "method": "lora",
         "checkpoints": [{"name": f"epoch-{e}", "epoch": e, "loss": 1.0 / e, "dtype": "float32"} for e in (1, 2)]}
MERGE = {"method": "lora", "label": "lora-r4", "base_model": "/m", "kind": "full",
         "merge": {"mode": "ortho-both", "k": 16, "lambdas": [1.0, 1.25], "epochs": "last", "seed": 0},
         "checkpoints": [{"name": f"lora-r4+ortho-both-l{lam:g}-epoch-2", "epoch": 2, "method": f"lora-r4+ortho-both-l{lam:g}",
                          "lambda": lam, "matrices": 8} for lam in (1.0, 1.25)]}


def test_refs_of_trained_checkpoints_and_merge_candidates() -> None:
    train, merge = CheckpointManifest.from_dict(TRAIN), CheckpointManifest.from_dict(MERGE)
    assert [str(e.ref) for e in train.entries] == ["lora-r4/epoch-1", "lora-r4/epoch-2"]
    assert [e.ref for e in merge.entries] == [CheckpointRef("lora-r4", 2, "ortho-both-l1"), CheckpointRef("lora-r4", 2, "ortho-both-l1.25")]
    assert all(e.name == e.ref.dirname for m in (train, merge) for e in m.entries)  # one naming rule for directories
    assert merge.find("lora-r4+ortho-both-l1.25/epoch-2").details == {"lambda": 1.25, "matrices": 8}
    assert train.to_dict() == TRAIN and merge.to_dict() == MERGE


def test_generate_names_its_targets_as_the_manifest_refs(tmp_path: Path) -> None:
    for i, d in enumerate((TRAIN, MERGE)):
        manifest = CheckpointManifest.from_dict(d)
        with atomic_dir(tmp_path / str(i)) as tmp:
            write_checkpoints(tmp, manifest)
            for e in manifest.entries:
                (tmp / e.name).mkdir()
        assert read_checkpoints(tmp_path / str(i)) == manifest
        assert [t.checkpoint for t in targets_of("/m", tmp_path / str(i))] == [str(e.ref) for e in manifest.entries]


def test_generate_and_judge_files_round_trip(tmp_path: Path) -> None:
    from safetax.artifacts import (
        GenerationRow, JudgementRow, StageCost, Target, read_cost, read_eval_sets, read_generations, read_judgements,
        read_targets, write_cost, write_eval_sets, write_generations, write_judgements, write_targets,
    )
    from safetax.data.eval_sets import EvalSet
    from safetax.records import Generation, Judgement

    rows = [GenerationRow(Generation("lora-r4/epoch-1", "sr", "safety", "7", 0, "t", 3, True), "p", "", {"category": "c"}, "1"),
            GenerationRow(Generation("base", "aime24", "reasoning", "1", 2, "u", 9, False), "", "42", {}, "1")]
    targets = [Target("base", "base", 0, "/m", None), Target("lora-r4/epoch-1", "lora-r4", 1, "/m", "/t/epoch-1")]
    sets = [EvalSet("sr", "safety", "/d/sr.jsonl", samples=None, max_new_tokens=64)]
    verdicts = [JudgementRow(rows[0].key, Judgement("unsafe", 1.0, "unsafe: S1,S9", ("S1", "S9")), "llama-guard-generate")]
    cost = StageCost("generate", 10, 6, 3, 1, 600, 12.0, 2)
    with atomic_dir(tmp_path / "gen") as tmp:
        write_generations(tmp, rows)
        write_targets(tmp, targets)
        write_eval_sets(tmp, sets)
        write_cost(tmp, cost)
    with atomic_dir(tmp_path / "judge") as tmp:
        write_judgements(tmp, verdicts)
    assert read_generations(tmp_path / "gen") == rows and read_targets(tmp_path / "gen") == targets
    assert read_eval_sets(tmp_path / "gen") == sets and read_judgements(tmp_path / "judge") == verdicts
    assert (tmp_path / "gen" / "targets.json").is_file() and not (tmp_path / "gen" / "checkpoints.json").exists()
    got = read_cost(tmp_path / "gen")
    assert got == cost and (got.gpu_seconds, got.tokens_per_second, got.cache_hit_rate) == (24.0, 50.0, 1 / 7)
    flat = verdicts[0].to_dict()
    assert flat == {"checkpoint": "lora-r4/epoch-1", "benchmark": "sr", "item_id": "7", "sample": 0, "label": "unsafe",
                    "score": 1.0, "reason": "unsafe: S1,S9", "categories": ["S1", "S9"], "judge": "llama-guard-generate"}


def test_record_cost_pushes_the_stage_cost_figures() -> None:
    from safetax.artifacts import StageCost
    from safetax.stages.runtime import record_cost
    from safetax.telemetry import StageTelemetry

    tel = StageTelemetry("generate", pipeline="safetax-alignment", run_id="r", model="m", method="base", gateway="")
    record_cost(tel, StageCost("generate", 10, 6, 2, 2, 600, 10.0, 1))
    assert tel.kfp_metrics() == {"cache_hit_rate": 0.25, "generated_tokens": 600.0, "generated_tokens_per_second": 60.0,
                                 "gpu_seconds": 10.0, "samples_cached": 2.0, "samples_generated": 6.0, "samples_resumed": 2.0}
