"""RPSA's masked training (sec. 4): freeze the reasoning-critical parameters, with a dynamic frozen ratio.

Among parameters with non-zero Fisher, those above the (1 - k) quantile are frozen (no gradient
step, no weight decay, no momentum: :class:`~safetax.rpsa.masking.MaskedAdamW`). With
``dynamic_ratio``, every ``update_every`` optimiser steps the reasoning gradient g_R of one
corpus sequence is compared with the (unmasked) safety gradient g_S of the current batch; the
conflict c (share of non-zero-Fisher entries with opposite signs) feeds
:class:`~safetax.rpsa.dynamic.DynamicRatio` over a window of ``conflict_window`` values, and the
mask is recomputed from the new k. ``random_mask`` freezes a random set of the same size instead
(the ablation baseline).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)


class RPSAController:
    """Owns the masked optimiser; ``before_step(step)`` runs after backward, before clipping and the step."""

    def __init__(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor], cfg: Any,
                 reasoning: Sequence[dict[str, list[int]]], pad_id: int) -> None:
        from safetax.rpsa.dynamic import DynamicRatio
        from safetax.rpsa.masking import MaskedAdamW

        self.model, self.cfg = model, cfg
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        missing = sorted(set(self.params) - set(fisher))
        if missing:
            raise ValueError(f"the Fisher does not cover trainable parameters {missing[:3]}...: it was scored for another "
                             "method config (LoRA rank/targets/layers and seed must match the training run)")
        device = next(iter(self.params.values())).device
        self.fisher = {n: fisher[n].to(device) for n in self.params}
        self.nonzero = {n: f != 0 for n, f in self.fisher.items()}
        self.dynamic = DynamicRatio(window=cfg.conflict_window, initial=cfg.frozen_ratio)
        self.k = cfg.frozen_ratio
        self.optimizer = MaskedAdamW(list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._reasoning = itertools.cycle(reasoning) if reasoning else None
        self.pad_id = pad_id
        self.history: list[dict[str, float]] = []
        self._apply(self.k)

    def _apply(self, k: float) -> None:
        from safetax.rpsa.masking import fisher_masks, fisher_threshold, frozen_share, random_masks

        if self.cfg.random_mask:
            masks = random_masks(self.fisher, k, seed=self.cfg.seed)
        else:
            masks = fisher_masks(self.fisher, fisher_threshold(self.fisher, k, seed=self.cfg.seed))
        self.optimizer.set_masks({self.params[n]: m for n, m in masks.items()})
        self.frozen = frozen_share(masks, self.fisher)

    def before_step(self, step: int) -> None:
        """Every ``update_every`` steps (dynamic ratio): conflict of g_R and g_S, new k, new mask."""
        if self.cfg.dynamic_ratio and self._reasoning is not None and step % self.cfg.update_every == 0:
            from safetax.rpsa.dynamic import gradient_conflict
            from safetax.training.sft import collate

            g_s = {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None}
            self.model.zero_grad(set_to_none=True)
            device = next(iter(self.params.values())).device
            batch = {k: v.to(device) for k, v in collate([next(self._reasoning)], self.pad_id).items()}
            self.model(**batch).loss.backward()
            g_r = {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None}
            for n, p in self.params.items():
                p.grad = g_s.get(n)
            c = gradient_conflict(g_r, g_s, self.nonzero)  # a parameter without a gradient: no conflict
            self.k = self.dynamic.update(c, step)
            self._apply(self.k)
            self.history.append({"step": step, "conflict": c, "k": self.k, "frozen_share": self.frozen})
            log.info("rpsa step %d: conflict %.3f -> frozen ratio %.3f", step, c, self.k)
        self.optimizer.zero_frozen_grads()
