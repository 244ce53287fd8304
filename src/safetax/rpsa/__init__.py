"""Reasoning-Preserved Safety Alignment (RPSA): Fisher masks that keep reasoning-critical weights frozen.

``fisher``: diagonal empirical Fisher of the reasoning loss; ``masking``: thresholds, masks and
:class:`MaskedAdamW`; ``dynamic``: the gradient-conflict-driven frozen ratio; ``plots``: figures.
"""

from __future__ import annotations

from safetax.rpsa.dynamic import DynamicRatio, gradient_conflict
from safetax.rpsa.fisher import fisher_diagonal, summarize_fisher
from safetax.rpsa.masking import (
    MaskedAdamW,
    fisher_masks,
    fisher_threshold,
    frozen_share,
    masks_by_param,
    random_masks,
)

__all__ = [
    "DynamicRatio",
    "MaskedAdamW",
    "fisher_diagonal",
    "fisher_masks",
    "fisher_threshold",
    "frozen_share",
    "gradient_conflict",
    "masks_by_param",
    "random_masks",
    "summarize_fisher",
]
