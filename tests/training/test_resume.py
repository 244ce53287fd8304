"""Resume after preemption: a train stage killed with SIGKILL mid-epoch, rerun into the same output
directory, ends with the losses and weights of a run that was never interrupted.

The stage runs in a child process (its ``on_step`` sleeps, so the parent can kill it while it trains);
the parent waits for the state of optimiser step 8 (epoch 2 of 3, batch 3 of 5, with epoch 1's
checkpoint written), kills the child, reruns it, and compares with an uninterrupted run in this
process. LoRA runs with dropout, so the RNG states are part of what must come back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safetax.artifacts import CHECKPOINTS
from safetax.config import ConfigError
from safetax.stages import prepare, train
from safetax.store import is_complete
from safetax.training.resume import KEEP, STATE_DIR

FAST = {"batch_size": 4, "learning_rate": 3e-3, "epochs": 3, "seed": 7, "checkpoint_every_steps": 2}
KILL_AFTER = "step-000008"  # 20 examples in batches of 4: 5 steps per epoch; step 8 is mid-epoch 2
CHILD = """
import json, sys, time
from pathlib import Path
from safetax.stages import train
cfg, model, sft, out, delay, result = json.loads(sys.argv[1]), *sys.argv[2:7]
steps = []
def on_step(loss, tps, epoch):
    steps.append(loss)
    time.sleep(float(delay))
res = train.run(train.TrainConfig(**cfg), model, Path(sft), Path(out), on_step=on_step)
Path(result).write_text(json.dumps({"losses": res.losses, "steps": steps}))
"""


@pytest.fixture()
def sft(tiny_model: Path, refusal_file: Path, tmp_path: Path) -> Path:
    prepare.run(prepare.PrepareConfig(str(refusal_file), str(tiny_model), max_length=128), tmp_path / "sft")
    return tmp_path / "sft"


def _child(cfg: dict[str, object], model: Path, sft: Path, out: Path, delay: float, result: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", CHILD, json.dumps(cfg), str(model), str(sft), str(out), str(delay), str(result)]
    return subprocess.Popen(args, env=os.environ | {"SAFETAX_PROGRESS": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path / "COMPLETE").is_file():
        if proc.poll() is not None:
            pytest.fail(f"the training child ended ({proc.returncode}) before {path.name}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} after {timeout}s")
        time.sleep(0.02)


@pytest.mark.parametrize(("method", "weights"), [("lora", "adapter_model.safetensors"), ("full", "model.safetensors")])
def test_a_killed_run_resumes_to_the_uninterrupted_result(method: str, weights: str, tiny_model: Path, sft: Path,
                                                          tmp_path: Path) -> None:
    cfg = {"method": method, **FAST, **({"lora_dropout": 0.1} if method == "lora" else {})}
    whole = train.run(train.TrainConfig(**cfg), str(tiny_model), sft, tmp_path / "whole")  # type: ignore[arg-type]

    out, result = tmp_path / "out", tmp_path / "result.json"
    proc = _child(cfg, tiny_model, sft, out, 0.4, result)
    try:
        _wait_for(out / STATE_DIR / KILL_AFTER, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not result.exists()
    kept = sorted(p.name for p in (out / STATE_DIR).iterdir() if p.name.startswith("step-"))
    # Older states were pruned (the kill may land between a state's rename and the pruning it triggers: KEEP + 1).
    assert kept[-1] == KILL_AFTER and len(kept) <= KEEP + 1 and "step-000002" not in kept and "step-000004" not in kept
    assert not is_complete(out)

    rerun = _child(cfg, tiny_model, sft, out, 0.0, result)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
    resumed = json.loads(result.read_text())
    assert resumed["losses"] == pytest.approx(whole.losses, rel=1e-6, abs=1e-6)
    assert 0 < len(resumed["steps"]) <= 15 - 8  # it trained only the batches after the last state
    assert is_complete(out) and not (out / STATE_DIR).exists()  # the finished output replaced the state
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.out_dir.iterdir())
    for epoch in ("epoch-1", "epoch-2", "epoch-3"):  # epoch 1 was written before the kill, taken over on resume
        w1, w2 = load_file(whole.out_dir / epoch / weights), load_file(out / epoch / weights)
        assert w1.keys() == w2.keys()
        for k in w1:
            torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-6, msg=k)
    m1, m2 = (json.loads((d / CHECKPOINTS).read_text()) for d in (whole.out_dir, out))
    assert [{**e, "loss": pytest.approx(e["loss"], rel=1e-6)} for e in m1["checkpoints"]] == m2["checkpoints"]


def test_a_state_of_another_run_is_not_resumed(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    cfg = train.TrainConfig(method="lora", **{**FAST, "epochs": 1})  # type: ignore[arg-type]
    first = train.run(cfg, str(tiny_model), sft, tmp_path / "a")
    # Leave a complete state behind as a killed run would (a run with another learning rate)...
    other = train.TrainConfig(method="lora", **{**FAST, "epochs": 1, "learning_rate": 1e-2})  # type: ignore[arg-type]
    state = tmp_path / "kept-state"
    train.run(other, str(tiny_model), sft, tmp_path / "b", state_dir=state)
    assert (state / "step-000005" / "COMPLETE").is_file()
    # ...which a run with this config ignores: it trains from the start and gets the same losses as `first`.
    again = train.run(cfg, str(tiny_model), sft, tmp_path / "c", state_dir=state)
    assert again.losses == first.losses


def test_checkpoint_every_steps_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"`checkpoint_every_steps` must be an integer >= -1 .* got -2"):
        train.TrainConfig(checkpoint_every_steps=-2)
    assert train.TrainConfig.from_dict({"checkpoint_every_steps": 50.0}).checkpoint_every_steps == 50


def test_two_fsdp_processes_resume_from_their_sharded_state(tiny_model: Path, sft: Path, tmp_path: Path) -> None:
    # Each rank wrote its FSDP shards (DCP) and its RNG; a rerun from the state of epoch 2 ends as the first run did.
    import shutil

    cfg = train.TrainConfig(method="full", **{**FAST, "checkpoint_every_steps": 0})  # type: ignore[arg-type]
    state = tmp_path / "state"
    first = train.run(cfg, str(tiny_model), sft, tmp_path / "first", state_dir=state, processes=2)
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("step-")) == ["step-000010", "step-000015"]
    shutil.rmtree(state / "step-000015")  # as if killed during epoch 3
    steps: list[tuple[float, ...]] = []
    again = train.run(cfg, str(tiny_model), sft, tmp_path / "again", on_step=lambda *a: steps.append(a), state_dir=state,
                      processes=2)
    assert len(steps) == 5 and again.losses == pytest.approx(first.losses, rel=1e-6)  # only epoch 3 was trained
    for epoch in ("epoch-1", "epoch-2", "epoch-3"):
        w1, w2 = (load_file(d / epoch / "model.safetensors") for d in (tmp_path / "first", tmp_path / "again"))
        assert all(torch.equal(w1[k], w2[k]) for k in w1), epoch
