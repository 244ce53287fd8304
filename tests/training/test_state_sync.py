"""Resumable states in the run store: a state copied there while the first pod trained is restored into another
pod's empty directory, and the retry resumes from it to the result of a run that was never interrupted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safetax.stages import prepare, train
from safetax.training.state_sync import StateMirror, newest_state

FAST = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 3, "seed": 7, "checkpoint_every_steps": 0}


@pytest.fixture()
def sft(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> Path:
    prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), tmp_path / "sft")
    return tmp_path / "sft"


def test_a_retry_in_a_new_pod_resumes_from_the_store(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", **FAST)  # type: ignore[arg-type]
    first_pod = tmp_path / "pod-1-state"
    first = train.run(cfg, str(tiny_model), sft, tmp_path / "first", state_dir=first_pod)
    shutil.rmtree(first_pod / "step-000015")  # the pod was preempted in epoch 3: step 10 is its newest state
    uri = str(tmp_path / "store" / "run-1" / "partial" / "train" / cfg.label)
    mirror = StateMirror(first_pod, uri)
    assert mirror.sync() and not mirror.sync()  # published once; nothing newer afterwards
    assert newest_state(Path(uri)).name == "step-000010" and (Path(uri) / "epochs" / "epoch-2").is_dir()

    second_pod = tmp_path / "pod-2-state"  # a new node: an empty disk
    assert StateMirror(second_pod, uri).restore() == "step-000010"
    steps: list[tuple[float, ...]] = []
    again = train.run(cfg, str(tiny_model), sft, tmp_path / "again", on_step=lambda *a: steps.append(a), state_dir=second_pod)
    assert len(steps) == 5 and again.losses == pytest.approx(first.losses, rel=1e-6)  # only epoch 3 was trained
    for epoch in ("epoch-1", "epoch-2", "epoch-3"):
        w1, w2 = (load_file(d / epoch / "adapter_model.safetensors") for d in (tmp_path / "first", tmp_path / "again"))
        assert all(torch.equal(w1[k], w2[k]) for k in w1), epoch

    mirror.discard()
    assert not any(Path(uri).rglob("*.safetensors"))
    assert StateMirror(tmp_path / "pod-3-state", uri).restore() == ""  # nothing left to resume from
