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
