"""Diagonal empirical Fisher of the reasoning loss (RPSA, section 3).

What :func:`fisher_diagonal` computes, for every scored parameter entry ``theta_j``::

    F_j = 1/N * sum_n ( d/d theta_j  [ 1/T_n * sum_t log p(y_{n,t} | y_{n,<t}, x_n) ] )^2

over the N sequences of the reasoning corpus, T_n being the number of response tokens of
sequence n (labels != -100). The inner term is exactly the gradient of the Hugging Face
causal-LM loss with ``labels`` (sign does not matter once squared), so one backward per
sequence gives one sample of the estimator.

Relation to the paper's Eq. 4, which averages *per-token* squared gradients
``E_t[(d log p(y_t) / d theta)^2]``: that quantity needs one backward per token (T backwards per
sequence), which is too costly for long chains of thought. We square the gradient of the
per-sequence mean instead, ``(1/T sum_t g_t)^2 = 1/T^2 (sum_t g_t^2 + sum_{s != t} g_s g_t)``:
it keeps the cross-token terms and is a per-sequence empirical Fisher, not a per-token one. The
cheap ``sum_t g_t^2 x_t^2`` identity for linear layers (per-token output gradient times input,
squared) gives the per-token quantity only for single-token contributions to one weight, and is
not what is computed here either. Both estimators rank parameters by how much the reasoning
log-likelihood depends on them, which is what the mask uses; their absolute scales differ.

Memory: each parameter's squared gradient is added to an fp32 accumulator as soon as the
gradient is produced (``Tensor.register_post_accumulate_grad_hook``), and the gradient is then
dropped (``p.grad = None``), so no full set of gradients lives next to the accumulator: peak is
weights + accumulator + activations + one parameter's gradient. For a 14B model on one 80 GB
GPU, bf16 weights (28 GB) + a full fp32 accumulator on the GPU (56 GB) do not fit; pass
``accumulator_device="cpu"`` (each squared gradient is copied through a pinned fp32 staging
buffer into a CPU accumulator: 56 GB of host RAM, GPU peak ~28 GB + activations), or score only
the trainable subset via ``params`` (e.g. LoRA adapters or the MLP matrices).

LoRA note: freshly initialised LoRA has ``B = 0``, so ``d loss / d A = B^T (...) = 0`` and A's
Fisher is exactly zero ("zero Fisher"); only B's entries carry information at initialisation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sized
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from safetax.timing import progress_bar

log = logging.getLogger(__name__)

INPUT_KEYS = ("input_ids", "labels", "attention_mask")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_SKIP_PARTS = {"weight", "bias", "default", "base_layer", "lora_A", "lora_B", "lora_magnitude_vector",
               "lora_embedding_A", "lora_embedding_B", "modules_to_save", "original_module"}
ATTENTION_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "self_attn"}
MLP_MODULES = {"gate_proj", "up_proj", "down_proj", "mlp"}


def _single_sequence(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The model inputs of one sequence as a ``[1, T]`` batch on ``device``."""
    missing = [k for k in ("input_ids", "labels") if k not in batch]
    if missing:
        raise ValueError(f"fisher_diagonal batches need keys {list(INPUT_KEYS[:2])}; missing {missing}")
    out = {}
    for key in INPUT_KEYS:
        if key not in batch:
            continue
        t = batch[key]
        t = t.unsqueeze(0) if t.dim() == 1 else t
        if t.shape[0] != 1:
            raise ValueError(f"fisher_diagonal scores one sequence per backward; got {key} of shape {tuple(t.shape)}")
        out[key] = t.to(device)
    return out


def _make_hook(acc: Tensor, staging: Tensor | None) -> Any:
    """Post-accumulate-grad hook: add ``grad**2`` (fp32) to ``acc``, then drop the gradient."""

    def hook(p: Tensor) -> None:
        g = p.grad
        assert g is not None
        if acc.device == g.device:
            acc.addcmul_(g, g)  # in-place on fp32 ``acc``: computed in fp32 even for bf16 grads
        else:
            sq = g.detach().to(torch.float32).square_().reshape(-1)
            if staging is not None:  # pinned host buffer: fast device-to-host copy
                buf = staging[: sq.numel()]
                buf.copy_(sq)
                acc.view(-1).add_(buf)
            else:
                acc.view(-1).add_(sq.to(acc.device))
        p.grad = None

    return hook


def fisher_diagonal(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    params: dict[str, nn.Parameter] | None = None,
    *,
    accumulator_device: str | torch.device | None = None,
    progress_desc: str = "fisher",
) -> dict[str, Tensor]:
    """Diagonal empirical Fisher of the reasoning loss, one sequence per backward (see module doc).

    Args:
        model: a causal LM whose ``forward(input_ids, attention_mask, labels)`` returns ``.loss``
            (the mean NLL over tokens with ``labels != -100``), e.g. a HF or PEFT model.
        batches: single sequences: ``input_ids`` and ``labels`` (``-100`` on prompt tokens), and
            optionally ``attention_mask``; shape ``[T]`` or ``[1, T]``. Sequences without a
            response token are skipped.
        params: the parameters to score by name; default: every parameter with
            ``requires_grad``. Other parameters get ``requires_grad=False`` while scoring (so no
            gradient is computed for them); flags, train/eval mode are restored afterwards.
        accumulator_device: where the fp32 accumulators live (default: with each parameter);
            ``"cpu"`` for models whose fp32 Fisher does not fit next to the weights on the GPU.
        progress_desc: label of the progress bar.

    Returns:
        ``{name: fp32 tensor shaped like the parameter}``: mean over sequences of the squared
        gradient of the per-sequence mean token log-likelihood. Existing ``.grad`` of scored
        parameters are cleared; every scored ``p.grad`` is ``None`` afterwards.

    Raises:
        ValueError: if no sequence had a response token, or a batch holds several sequences.
    """
    named = dict(model.named_parameters())
    if params is None:
        params = {n: p for n, p in named.items() if p.requires_grad}
    if not params:
        raise ValueError("fisher_diagonal: no parameters to score (params is empty and none requires grad)")
    scored = {id(p) for p in params.values()}
    flags = {n: p.requires_grad for n, p in named.items()}
    was_training = model.training
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    device = embed.weight.device if embed is not None else next(iter(params.values())).device  # where inputs go
    acc_dev = torch.device(accumulator_device) if accumulator_device is not None else None
    accs = {n: torch.zeros(p.shape, dtype=torch.float32, device=acc_dev or p.device) for n, p in params.items()}
    staging = None
    if acc_dev is not None and acc_dev.type == "cpu" and any(p.device.type == "cuda" for p in params.values()):
        staging = torch.empty(max(p.numel() for p in params.values()), dtype=torch.float32, pin_memory=True)
    handles = []
    n_seq = skipped = 0
    total = len(batches) if isinstance(batches, Sized) else None
    try:
        for p in named.values():
            p.requires_grad_(id(p) in scored)
        for n, p in params.items():
            p.grad = None
            handles.append(p.register_post_accumulate_grad_hook(_make_hook(accs[n], staging)))
        model.eval()  # no dropout: the Fisher of the deterministic model
        with progress_bar(total, progress_desc, unit="seq") as bar:  # type: ignore[arg-type]
            for batch in batches:
                inputs = _single_sequence(batch, device)
                if not bool((inputs["labels"][:, 1:] != -100).any()):
                    skipped += 1
                    bar.update(1)
                    continue
                model(**inputs).loss.backward()
                n_seq += 1
                bar.update(1)
    finally:
        for h in handles:
            h.remove()
        for n, p in named.items():
            p.requires_grad_(flags[n])
        for p in params.values():
            p.grad = None
        model.train(was_training)
    if n_seq == 0:
        raise ValueError(f"fisher_diagonal: no sequence with a response token (skipped {skipped})")
    if skipped:
        log.warning("fisher_diagonal skipped %d sequence(s) without a response token", skipped)
    for a in accs.values():
        a.div_(n_seq)
    log.info("Fisher diagonal of %d tensor(s) over %d sequence(s)", len(accs), n_seq)
    return accs


def _module_of(name: str) -> str:
    """The module a parameter belongs to: ``...layers.3.mlp.up_proj.lora_A.default.weight`` -> ``up_proj``."""
    for part in reversed(name.split(".")):
        if part not in _SKIP_PARTS:
            return part
    return name


def _group_of(name: str, module: str) -> str:
    parts = set(name.split("."))
    if module in ATTENTION_MODULES or "self_attn" in parts:
        return "attention"
    if module in MLP_MODULES or "mlp" in parts:
        return "mlp"
    return "other"


def summarize_fisher(fisher: dict[str, Tensor]) -> pd.DataFrame:
    """One row per tensor: name, layer, module, group, numel, mean, nonzero_share, max.

    ``layer`` is the ``i`` of ``layers.<i>.`` (``None`` for embeddings, final norm, lm_head);
    ``group`` is ``attention`` (q/k/v/o projections), ``mlp`` (gate/up/down) or ``other``
    (norms, embeddings, lm_head).

    >>> import torch
    >>> df = summarize_fisher({"model.layers.1.mlp.up_proj.weight": torch.tensor([0.0, 2.0]),
    ...                        "model.embed_tokens.weight": torch.tensor([1.0])})
    >>> df[["layer", "module", "group", "mean", "nonzero_share"]].values.tolist()
    [[1, 'up_proj', 'mlp', 1.0, 0.5], [None, 'embed_tokens', 'other', 1.0, 1.0]]
    """
    rows = []
    for name, f in fisher.items():
        m = _LAYER.search(name)
        module = _module_of(name)
        f32 = f.detach().float()
        rows.append({
            "name": name,
            "layer": int(m.group(1)) if m else None,
            "module": module,
            "group": _group_of(name, module),
            "numel": f.numel(),
            "mean": float(f32.mean()) if f.numel() else 0.0,
            "nonzero_share": float((f32 != 0).float().mean()) if f.numel() else 0.0,
            "max": float(f32.max()) if f.numel() else 0.0,
        })
    df = pd.DataFrame(rows, columns=["name", "layer", "module", "group", "numel", "mean", "nonzero_share", "max"])
    df["layer"] = pd.Series([r["layer"] for r in rows], dtype=object)  # ints and None, not floats and NaN
    return df
