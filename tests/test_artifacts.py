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
