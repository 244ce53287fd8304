"""The LoRA paper's orthogonality regularisers (sec. 5.2) attached to a PEFT model's LoRA layers.

Each adapted Linear gets an :class:`~safetax.weights.ortho.OrthoRegularizer` built once from its
frozen base weight W_I (rank-k truncated SVD); the returned callable gives the mean penalty over
all adapted matrices, computed from the LoRA factors A and B without forming dW, so gradients
flow into A and B only. The mean (not the sum) keeps ``beta`` comparable across models with
different numbers of adapted matrices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from safetax.timing import progress

log = logging.getLogger(__name__)
ADAPTER = "default"


def lora_orthogonality_regularizer(model: torch.nn.Module, mode: str, beta: float, k: int, seed: int = 0) -> Callable[[], torch.Tensor]:
    """``mode`` ``col`` or ``both``; raises ValueError when the model has no LoRA layer or ``k`` does not fit."""
    from peft.tuners.lora import LoraLayer

    from safetax.weights.ortho import OrthoRegularizer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A]
    if not layers:
        raise ValueError("ortho_reg needs LoRA layers: the model has none")
    items = []
    for m in progress(layers, desc=f"orthogonality regulariser (top-{k} SVD)", unit="matrix"):
        w = m.get_base_layer().weight.detach()
        items.append((OrthoRegularizer.from_weight(w.float(), k, seed=seed).to(w.device), m))

    def penalty() -> torch.Tensor:
        total = sum(reg.penalty_lora(m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight, m.scaling[ADAPTER], mode, beta)
                    for reg, m in items)
        return total / len(items)  # type: ignore[return-value]

    log.info("orthogonality regulariser (%s, beta=%g, k=%d) on %d LoRA matrices", mode, beta, k, len(items))
    return penalty
