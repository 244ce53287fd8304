"""The dtype checkpoints are written in, and writing them in it.

Training keeps fp32 master weights; a full fine-tuning checkpoint written as they are is twice the
size of a bf16 base model (DeepSeek-R1-Distill-Qwen-7B: 30 GB per epoch instead of 15 GB, 152 GB
for the seeds' 5 epochs). By default (``save_dtype: base``) full checkpoints take the base model's
dtype (``dtype`` / ``torch_dtype`` of its config.json; fp32 when it names none), which is also what
the model is served in. LoRA adapters stay fp32 by default: they are a few MB (r=4 on the MLP of
a 7B model: ~30 MB), and rounding A and B to bf16 would change the update B A for nothing. An
explicit ``float32`` / ``bfloat16`` / ``float16`` applies to both.

Note for the weight-update analysis: dW of a full fine-tuning is read from the checkpoint, so in
bf16 it carries the rounding of W (up to half a bf16 step, ~0.2% of |W|); ``save_dtype: float32``
keeps the exact update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SAVE_DTYPES = ("base", "float32", "bfloat16", "float16")


def save_dtype(setting: str, lora: bool, model_ref: str) -> torch.dtype:
    """The dtype of the checkpoints for ``save_dtype`` = ``setting``, reading the base model's config if needed."""
    if setting != "base":
        return getattr(torch, setting)
    if lora:
        return torch.float32
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(model_ref), "dtype", None)  # transformers reads torch_dtype into it
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def write_checkpoint(model: torch.nn.Module, path: Path, dtype: torch.dtype, state: dict[str, torch.Tensor] | None = None,
                     drop: list[str] | None = None) -> None:
    """``model.save_pretrained(path)`` with the floating-point tensors in ``dtype`` (a PEFT model: its
    adapter). ``state``: a gathered full state dict to write instead of the model's own, ``drop`` its
    tied aliases. A full model's config.json names ``dtype``, so ``dtype="auto"`` loads it as stored."""
    if state is None:
        peft = hasattr(model, "peft_config")
        state = {k: v.detach() for k, v in model.state_dict().items() if not peft or "lora_" in k}
        if all(v.dtype == dtype for v in state.values() if v.is_floating_point()):
            model.save_pretrained(path)  # already in that dtype: no copy
            return
        drop = [] if peft else tied_aliases(model)
    for name in drop or []:  # tied aliases would be written twice once cast to separate tensors
        state.pop(name, None)
    for key in list(state):  # one tensor at a time: the fp32 copy of a gathered state dict is freed as we go
        if state[key].is_floating_point():
            state[key] = state[key].to("cpu", dtype)
    model.save_pretrained(path, state_dict=state)
    config = Path(path) / "config.json"
    if config.is_file():  # save_pretrained writes the dtype of the (fp32) parameters
        d = json.loads(config.read_text(encoding="utf-8"))
        d["dtype"] = str(dtype).removeprefix("torch.")
        d.pop("torch_dtype", None)
        config.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def tied_aliases(model: torch.nn.Module) -> list[str]:
    """Names of parameters that are another parameter (tied embeddings' ``lm_head.weight``): the
    one-process checkpoint keeps only the first name."""
    first: dict[int, str] = {}
    aliases = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.append(name)
        else:
            first[id(p)] = name
    return aliases


SHARD_BYTES = 5 * 2**30  # per safetensors file of a streamed checkpoint: what the hub's large models use


def stream_checkpoint(model: torch.nn.Module, path: Path, dtype: torch.dtype, main: bool,
                      shard_bytes: int = SHARD_BYTES) -> None:
    """Write an FSDP2-sharded model as ``save_pretrained`` would, without its full fp32 state on any rank.

    Every rank calls this. Parameters are gathered one at a time (``full_tensor``, a collective), cast
    to ``dtype`` and handed to rank 0 (``main``), which writes a safetensors file whenever
    ``shard_bytes`` have piled up: its peak is one file's tensors in ``dtype`` plus one gathered
    parameter (14B in bf16: 5 GB + the 3 GB embedding in fp32, instead of 56 GB). One file is
    ``model.safetensors``; several are ``model-0000k-of-0000n.safetensors`` with
    ``model.safetensors.index.json``, as transformers names them. Tied aliases are left out.
    """
    from safetensors.torch import save_file
    from torch.distributed.tensor import DTensor

    drop = set(tied_aliases(model))
    current: dict[str, torch.Tensor] = {}
    written: list[dict[str, int]] = []  # per file written: tensor name -> bytes
    size = 0
    for name, value in model.state_dict().items():
        if name in drop:
            continue
        full = value.full_tensor() if isinstance(value, DTensor) else value
        if main:
            current[name] = full.detach().to("cpu", dtype if full.is_floating_point() else full.dtype).contiguous()
            size += current[name].numel() * current[name].element_size()
            if size >= shard_bytes:
                written.append(_write_part(current, path, len(written) + 1, save_file))
                current, size = {}, 0
        del full
    if not main:
        return
    if current or not written:
        written.append(_write_part(current, path, len(written) + 1, save_file))
    _name_parts(path, written)
    _write_config(model, path, dtype)


def _write_part(tensors: dict[str, torch.Tensor], path: Path, number: int, save_file: Any) -> dict[str, int]:
    """Write part ``number`` under a temporary name; return its tensors' sizes in bytes."""
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / f".part-{number}.safetensors"), metadata={"format": "pt"})
    return {k: v.numel() * v.element_size() for k, v in tensors.items()}


def _name_parts(path: Path, written: list[dict[str, int]]) -> None:
    """Rename the parts as transformers names shards; write the index when there are several."""
    n = len(written)
    if n == 1:
        (path / ".part-1.safetensors").rename(path / "model.safetensors")
        return
    weight_map = {}
    for i, sizes in enumerate(written, start=1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        (path / f".part-{i}.safetensors").rename(path / name)
        weight_map.update(dict.fromkeys(sizes, name))
    total = sum(sum(sizes.values()) for sizes in written)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _write_config(model: Any, path: Path, dtype: torch.dtype) -> None:
    """config.json (naming ``dtype``) and generation_config.json, as ``save_pretrained`` writes them."""
    model.config.architectures = [type(model).__name__.removeprefix("FSDP")]
    model.config.save_pretrained(path)
    if model.can_generate() and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(path)
    config = path / "config.json"
    d = json.loads(config.read_text(encoding="utf-8"))
    d["dtype"] = str(dtype).removeprefix("torch.")
    d.pop("torch_dtype", None)
    config.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n", encoding="utf-8")
