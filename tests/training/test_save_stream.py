"""The streamed checkpoint writer (FSDP's final save): files as transformers names them, loadable, in the
asked dtype. Here in one process on a plain model (``full_tensor`` is only needed for DTensors); the
2-process FSDP path is in test_distributed.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from safetax.training.save import stream_checkpoint


def test_a_streamed_checkpoint_in_several_files_loads_as_the_model_in_bf16(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    stream_checkpoint(model, tmp_path / "out", torch.bfloat16, main=True, shard_bytes=40_000)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    parts = [f for f in files if f.endswith(".safetensors")]
    assert len(parts) > 2 and parts[0] == f"model-00001-of-{len(parts):05d}.safetensors" and not any(f.startswith(".") for f in files)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(parts)
    assert index["metadata"]["total_size"] == sum(v.numel() * 2 for v in model.state_dict().values())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    assert loaded.dtype == torch.bfloat16
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.to(torch.bfloat16)), name


def test_a_small_model_is_one_file_like_save_pretrained(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    stream_checkpoint(model, tmp_path / "streamed", torch.float32, main=True)
    model.save_pretrained(tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "streamed").iterdir()) == sorted(p.name for p in (tmp_path / "hf").iterdir())
    ours, theirs = load_file(tmp_path / "streamed" / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
