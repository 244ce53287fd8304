"""Stream weight matrices from safetensors checkpoints, one matrix pair at a time.

For analysing a 7B-14B model on a small machine: each tensor is read by opening its
file for that one read (``safetensors.safe_open``). The tensor is a private
(copy-on-write) memory map whose pages are read on first touch and freed with the
tensor, so no whole checkpoint or shard becomes resident; peak memory is a few
matrices (``bench/bench_analysis_memory.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from safetax.weights.ortho import lora_delta

EMBEDDING_MARKERS = ("embed", "lm_head", "wte", "wpe")  # token/position embeddings and the output head
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_A(?:\.[^.]+)?\.weight$")


def _natural(name: str) -> list[int | str]:
    """Sort key that puts ``layers.2`` before ``layers.10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def tensor_index(model_dir: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """``{tensor name: (file, shape)}`` over every ``model*.safetensors`` in ``model_dir`` (headers only)."""
    files = sorted(Path(model_dir).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model*.safetensors files in {model_dir}")
    index: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                index[key] = (path, tuple(f.get_slice(key).get_shape()))
    return index


def load_tensor(path: Path, key: str) -> Tensor:
    """One tensor, the file opened for this read only; in-place edits never reach the file (private map)."""
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(key)


def is_linear_weight(name: str, shape: tuple[int, ...], include_embeddings: bool = False) -> bool:
    """A 2-D ``*.weight`` of a Linear layer; embeddings and ``lm_head`` only if asked.

    >>> is_linear_weight("model.layers.0.mlp.up_proj.weight", (64, 32))
    True
    >>> is_linear_weight("model.embed_tokens.weight", (100, 32)), is_linear_weight("model.norm.weight", (32,))
    (False, False)
    """
    if not name.endswith(".weight") or len(shape) != 2:
        return False
    return include_embeddings or not any(marker in name for marker in EMBEDDING_MARKERS)


def iter_matrix_pairs(
    base_dir: Path, tuned_dir: Path, *, include_embeddings: bool = False
) -> Iterator[tuple[str, Tensor, Tensor]]:
    """``(name, W_I, W_tuned)`` for every Linear weight of two full checkpoints, one pair in memory at a time.

    Both directories hold ``model*.safetensors`` with the same tensor names (any
    sharding). Tensors come in their stored dtype, in natural name order.

    Raises:
        ValueError: (before any tensor is read) if a selected weight is missing from
            ``tuned_dir`` or has another shape there.
    """
    base, tuned = tensor_index(base_dir), tensor_index(tuned_dir)
    selected = (n for n, (_, shape) in base.items() if is_linear_weight(n, shape, include_embeddings))
    names = sorted(selected, key=_natural)
    missing = [n for n in names if n not in tuned]
    if missing:
        raise ValueError(f"{len(missing)} weight(s) of {base_dir} missing from {tuned_dir}, e.g. {missing[:3]}")
    wrong = [f"{n}: {base[n][1]} vs {tuned[n][1]}" for n in names if base[n][1] != tuned[n][1]]
    if wrong:
        raise ValueError(f"{len(wrong)} weight(s) differ in shape between {base_dir} and {tuned_dir}: {wrong[:3]}")
    for name in names:
        yield name, load_tensor(base[name][0], name), load_tensor(tuned[name][0], name)


def iter_matrix_deltas(
    base_dir: Path, tuned_dir: Path, *, include_embeddings: bool = False
) -> Iterator[tuple[str, Tensor, Tensor]]:
    """:func:`iter_matrix_pairs` as ``(name, W_I, dW)``, ``dW = W_tuned - W_I`` in float32 (float64 if stored so)."""
    for name, W_I, W_tuned in iter_matrix_pairs(base_dir, tuned_dir, include_embeddings=include_embeddings):
        dtype = torch.float64 if W_tuned.dtype == torch.float64 else torch.float32
        yield name, W_I, W_tuned.to(dtype, copy=True).sub_(W_I)  # one float copy, not three; never the loaded tensor


def _lora_scale(config: dict, module: str, rank: int) -> float:
    """PEFT's ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), ``alpha_pattern`` matched as PEFT matches it."""
    alpha = config["lora_alpha"]
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            alpha = value
            break
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)


def read_adapter_config(adapter_dir: Path) -> dict:
    """``adapter_config.json`` of a PEFT LoRA adapter, refusing what ``B @ A`` does not describe."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"`peft_type` must be 'LORA', got {config.get('peft_type')!r} in {adapter_dir}")
    for key in ("use_dora", "fan_in_fan_out"):
        if config.get(key):
            raise ValueError(f"`{key}`=true adapters are not supported (their update is not scale * B @ A)")
    return config


def iter_lora_deltas(
    base_dir: Path, adapter_dir: Path, *, include_embeddings: bool = False
) -> Iterator[tuple[str, Tensor, Tensor]]:
    """``(name, W_I, dW)`` for every LoRA-adapted Linear weight, ``dW = scale * B @ A`` in ``W_I``'s dtype.

    Reads a PEFT adapter directory (``adapter_model.safetensors`` + ``adapter_config.json``
    with ``r``, ``lora_alpha``, optional ``use_rslora`` / ``rank_pattern`` /
    ``alpha_pattern``). Keys like ``base_model.model.model.layers.0.mlp.up_proj.lora_A.weight``
    map to the base tensor ``model.layers.0.mlp.up_proj.weight``. ``dW`` equals
    ``merge_and_unload()``'s weight minus the base weight. Embedding adapters
    (``lora_embedding_A``) are skipped; ``include_embeddings`` keeps Linear-LoRA on
    ``lm_head``.

    Raises:
        ValueError: if a LoRA module has no base weight or no ``lora_B``.
    """
    config = read_adapter_config(adapter_dir)
    adapter = Path(adapter_dir) / ADAPTER_FILE
    base = tensor_index(base_dir)
    with safe_open(adapter, framework="pt") as f:
        keys = set(f.keys())
    modules = [(m.group("module"), m.group(0)) for k in keys if (m := _LORA_KEY.match(k))]
    for module, key_a in sorted(modules, key=lambda mk: _natural(mk[0])):
        name = f"{module}.weight"
        key_b = key_a.replace(".lora_A", ".lora_B")
        if name not in base or key_b not in keys:
            raise ValueError(f"LoRA module {module!r}: base weight {name!r} or {key_b!r} not found")
        if not is_linear_weight(name, base[name][1], include_embeddings):
            continue
        A, B = load_tensor(adapter, key_a), load_tensor(adapter, key_b)
        W_I = load_tensor(base[name][0], name)
        rank = A.shape[0]
        yield name, W_I, lora_delta(A, B, _lora_scale(config, module, rank) * rank, rank).to(W_I.dtype)
