"""RPSA's masked training (sec. 4): freeze the reasoning-critical parameters, with a dynamic frozen ratio.

Among parameters with non-zero Fisher, those above the (1 - k) quantile are frozen (no gradient
step, no weight decay, no momentum: :class:`~safetax.rpsa.masking.MaskedAdamW`). With
``dynamic_ratio``, every ``update_every`` optimiser steps the reasoning gradient g_R of one
corpus sequence is compared with the (unmasked) safety gradient g_S of the current batch; the
conflict c (share of non-zero-Fisher entries with opposite signs) feeds
:class:`~safetax.rpsa.dynamic.DynamicRatio` over a window of ``conflict_window`` values, and the
mask is recomputed from the new k. ``random_mask`` freezes a random set of the same size instead
(the ablation baseline).

On several ranks (``ranks``): with DDP (LoRA) every rank holds the whole model and the same
averaged gradients, so the masks agree by construction; the reasoning gradient is averaged across
ranks (with LoRA dropout each rank's forward differs). With FSDP2 (full fine-tuning) each rank
keeps the Fisher of its parameter shards, the threshold is computed across ranks
(:func:`~safetax.rpsa.masking.sharded_fisher_threshold`), the reasoning backward reduce-scatters
like any other, and the conflict's counts are summed over ranks: the frozen entries, k and the
losses are those of one process.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from safetax.training.distributed import DataParallel

log = logging.getLogger(__name__)


class RPSAController:
    """Owns the masked optimiser; ``before_step(step)`` runs after backward, before clipping and the step."""

    def __init__(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor], cfg: Any,
                 reasoning: Sequence[dict[str, list[int]]], pad_id: int, ranks: DataParallel | None = None) -> None:
        from torch.distributed.tensor import DTensor

        from safetax.rpsa.dynamic import DynamicRatio
        from safetax.rpsa.masking import MaskedAdamW

        self.model, self.cfg, self.ranks = model, cfg, ranks
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        missing = sorted(set(self.params) - set(fisher))
        if missing:
            raise ValueError(f"the Fisher does not cover trainable parameters {missing[:3]}...: it was scored for another "
                             "method config (LoRA rank/targets/layers and seed must match the training run)")
        self.sharded = any(isinstance(p, DTensor) for p in self.params.values())
        # The whole Fisher is needed only to draw the random ablation mask the one-process way.
        self._whole = {n: fisher[n] for n in self.params} if self.sharded and cfg.random_mask else None
        self.fisher = {n: _like(fisher[n], p) for n, p in self.params.items()}
        self.nonzero = {n: f != 0 for n, f in self.fisher.items()}
        self.dynamic = DynamicRatio(window=cfg.conflict_window, initial=cfg.frozen_ratio)
        self.k = cfg.frozen_ratio
        self.optimizer = MaskedAdamW(list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._corpus = list(reasoning)
        self._reasoning = itertools.cycle(self._corpus) if self._corpus else None
        self._drawn = 0  # reasoning sequences drawn so far (the cycle's position, for a resumed run)
        self.pad_id = pad_id
        self.history: list[dict[str, float]] = []
        self._apply(self.k)

    def _apply(self, k: float) -> None:
        from safetax.rpsa.masking import fisher_masks, fisher_threshold, random_masks, sharded_fisher_threshold

        if self.cfg.random_mask and self._whole is not None:
            masks = {n: _like(m, self.params[n]) for n, m in random_masks(self._whole, k, seed=self.cfg.seed).items()}
        elif self.cfg.random_mask:
            masks = random_masks(self.fisher, k, seed=self.cfg.seed)
        elif self.sharded:
            masks = fisher_masks(self.fisher, sharded_fisher_threshold(self.fisher, k, seed=self.cfg.seed))
        else:
            masks = fisher_masks(self.fisher, fisher_threshold(self.fisher, k, seed=self.cfg.seed))
        self.optimizer.set_masks({self.params[n]: m for n, m in masks.items()})
        frozen = sum(int((m & self.nonzero[n]).sum()) for n, m in masks.items())
        nonzero = sum(int(m.sum()) for m in self.nonzero.values())
        frozen, nonzero = self._sum_over_ranks(frozen, nonzero)
        self.frozen = frozen / nonzero if nonzero else 0.0

    def _sum_over_ranks(self, *counts: int) -> tuple[int, ...]:
        """Counts over the whole model: summed over FSDP's shards; as they are with one process or DDP."""
        if not self.sharded:
            return counts
        import torch.distributed as dist

        device = next(iter(self.fisher.values())).device
        t = torch.tensor(counts, dtype=torch.long, device=device)
        dist.all_reduce(t)
        return tuple(int(v) for v in t.tolist())

    def before_step(self, step: int) -> None:
        """Every ``update_every`` steps (dynamic ratio): conflict of g_R and g_S, new k, new mask."""
        if self.cfg.dynamic_ratio and self._reasoning is not None and step % self.cfg.update_every == 0:
            from safetax.rpsa.dynamic import conflict_counts
            from safetax.rpsa.masking import local_shard
            from safetax.training.sft import collate

            g_s = {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None}
            self.model.zero_grad(set_to_none=True)
            device = next(iter(self.params.values())).device
            batch = {k: v.to(device) for k, v in collate([next(self._reasoning)], self.pad_id).items()}
            self._drawn += 1
            self.model(**batch).loss.backward()
            self._average_replicas()
            g_r = {n: local_shard(p.grad).detach().clone() for n, p in self.params.items() if p.grad is not None}
            for n, p in self.params.items():
                p.grad = g_s.get(n)
            # A parameter without a gradient: no conflict. Under FSDP each rank counts its shards.
            conflicts, total = self._sum_over_ranks(*conflict_counts(g_r, {n: local_shard(g) for n, g in g_s.items()}, self.nonzero))
            if total == 0:
                raise ValueError("rpsa: no non-zero-Fisher entry to measure the gradient conflict over")
            c = conflicts / total
            self.k = self.dynamic.update(c, step)
            self._apply(self.k)
            self.history.append({"step": step, "conflict": c, "k": self.k, "frozen_share": self.frozen})
            log.info("rpsa step %d: conflict %.3f -> frozen ratio %.3f", step, c, self.k)
        self.optimizer.zero_frozen_grads()

    def _average_replicas(self) -> None:
        """DDP: the reasoning backward ran outside DDP's hooks; average it so that every replica sees the same g_R."""
        if self.ranks is None or self.sharded:
            return
        import torch.distributed as dist

        for p in self.params.values():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.ranks.world

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs (JSON): k, the conflict window and history, the corpus position."""
        return {"k": self.k, "window": list(self.dynamic._values), "dynamic_history": self.dynamic.history,
                "history": self.history, "drawn": self._drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the same k (and so the same masks) and the same next sequence."""
        self.k = float(state["k"])
        self.dynamic._values.clear()
        self.dynamic._values.extend(state["window"])
        self.dynamic.history = [tuple(h) for h in state["dynamic_history"]]  # type: ignore[misc]
        self.history = list(state["history"])
        self._drawn = int(state["drawn"])
        if self._corpus:
            self._reasoning = itertools.islice(itertools.cycle(self._corpus), self._drawn % len(self._corpus), None)
        self._apply(self.k)


def _like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``full`` (a Fisher or mask of the whole parameter) as ``param`` holds it: this rank's dim-0 shard of
    an FSDP2 DTensor parameter (sliced locally, no communication), else the whole tensor on its device."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        return distribute_tensor(full.to(param.device), param.device_mesh, param.placements, src_data_rank=None).to_local()
    return full.to(param.device)
