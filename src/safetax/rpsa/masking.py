"""Fisher masks and masked AdamW (RPSA, section 3): freeze the entries reasoning depends on most.

A mask is ``{name: BoolTensor}`` shaped like the parameter, ``True`` = frozen. Only entries with
non-zero Fisher take part: an entry with Fisher exactly 0 (e.g. LoRA A at initialisation, or a
token embedding row the corpus never uses) carries no information and is never frozen.

Under FSDP (parameters sharded along dim 0 across ranks) everything is elementwise on the local
shard: each rank masks its shard of the Fisher and of the parameter, and
:func:`sharded_fisher_threshold` gives every rank the threshold one process computes on the whole Fisher.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def _check_ratio(frozen_ratio: float) -> None:
    if not 0.0 <= frozen_ratio <= 1.0:
        raise ValueError(f"frozen_ratio must be in [0, 1], got {frozen_ratio}")


def _nonzero_counts(fisher: dict[str, Tensor]) -> dict[str, int]:
    return {n: int(torch.count_nonzero(f)) for n, f in fisher.items()}


def fisher_threshold(fisher: dict[str, Tensor], frozen_ratio: float, *, sample_size: int = 1_000_000,
                     seed: int = 0) -> float:
    """Threshold ``t`` such that freezing non-zero entries with ``F >= t`` freezes ``frozen_ratio`` of them.

    ``t`` is the ``k``-th largest non-zero Fisher value, ``k = round(frozen_ratio * N)`` over the
    ``N`` non-zero entries (the ``1 - frozen_ratio`` quantile). Exact (``kthvalue`` on the
    concatenation) when ``N <= sample_size``; otherwise estimated on ``sample_size`` entries drawn
    uniformly with replacement among the non-zero ones (allocated to tensors by one global draw,
    so only one tensor's non-zero values are materialised at a time). Error of the sampled path:
    by the Dvoretzky-Kiefer-Wolfowitz inequality, with probability ``1 - delta`` the frozen share
    is within ``sqrt(ln(2/delta) / (2n)) + 1/n`` of ``frozen_ratio`` (n = ``sample_size``;
    ~0.0014 for n = 1e6 at delta = 0.05). Ties at ``t`` are all frozen.

    Returns ``inf`` (nothing frozen) when ``k == 0`` and the smallest non-zero value (everything
    non-zero frozen) when ``frozen_ratio == 1``.

    >>> import torch
    >>> f = {"a": torch.tensor([0.0, 1.0, 2.0]), "b": torch.tensor([3.0, 4.0])}
    >>> fisher_threshold(f, 0.5), fisher_threshold(f, 0.0), fisher_threshold(f, 1.0)
    (3.0, inf, 1.0)
    """
    _check_ratio(frozen_ratio)
    counts = _nonzero_counts(fisher)
    total = sum(counts.values())
    if total == 0 or round(frozen_ratio * total) == 0:
        return math.inf
    if frozen_ratio == 1.0:
        return min(float(f[f != 0].min()) for n, f in fisher.items() if counts[n])
    if total <= sample_size:
        values = torch.cat([f[f != 0].float().cpu() for f in fisher.values()])
    else:
        gen = torch.Generator().manual_seed(seed)
        names = [n for n in fisher if counts[n]]
        bounds = torch.tensor([counts[n] for n in names], dtype=torch.long).cumsum(0)
        picks = torch.randint(total, (sample_size,), generator=gen)
        owner = torch.bucketize(picks, bounds, right=True)  # tensor holding each global pick
        starts = torch.cat([torch.zeros(1, dtype=torch.long), bounds[:-1]])
        parts = []
        for i, n in enumerate(names):
            local = picks[owner == i] - starts[i]
            if local.numel():
                f = fisher[n]
                parts.append(f[f != 0].float().cpu()[local])
        values = torch.cat(parts)
    n = values.numel()
    k = round(frozen_ratio * n)
    if k == 0:
        return math.inf
    return float(torch.kthvalue(values, n - k + 1).values)


def sharded_fisher_threshold(shards: dict[str, Tensor], frozen_ratio: float, *, sample_size: int = 1_000_000,
                             seed: int = 0) -> float:
    """:func:`fisher_threshold` of a Fisher split along dim 0 across the ranks of the default process group.

    Each rank passes its shards (rank ``r`` holds the ``r``-th chunk of every tensor, as FSDP2 shards,
    names in the same order on every rank); every rank gets the same threshold, equal to the one of
    the whole Fisher in one process. The non-zero counts are all-gathered; the exact path gathers
    the non-zero values (at most ``sample_size`` of them); the sampled path draws the same global picks
    as one process, each rank fills the values of the picks in its shards, and a sum all-reduce
    assembles the sample. ``kthvalue`` does not depend on the order of the values.
    """
    import torch.distributed as dist

    _check_ratio(frozen_ratio)
    names = list(shards)
    device = next(iter(shards.values())).device if shards else torch.device("cpu")
    world, rank = dist.get_world_size(), dist.get_rank()
    local = torch.tensor([int(torch.count_nonzero(shards[n])) for n in names], dtype=torch.long, device=device)
    gathered = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    per_rank = torch.stack(gathered).cpu()  # [world, tensors]
    per_tensor = per_rank.sum(0)
    total = int(per_tensor.sum())
    if total == 0 or round(frozen_ratio * total) == 0:
        return math.inf
    mine = [shards[n][shards[n] != 0].float() for n in names]
    if frozen_ratio == 1.0:
        smallest = torch.tensor([min((float(v.min()) for v in mine if v.numel()), default=math.inf)], device=device)
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
        return float(smallest.item())
    if total <= sample_size:
        width = int(per_rank.sum(1).max())
        padded = torch.full((width,), math.inf, device=device)
        flat = torch.cat(mine) if mine else padded[:0]
        padded[: flat.numel()] = flat
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        values = torch.cat([part[: int(per_rank[r].sum())] for r, part in enumerate(parts)]).cpu()
    else:
        gen = torch.Generator().manual_seed(seed)  # the picks of the one-process path, over the same global order
        bounds = per_tensor[per_tensor > 0].cumsum(0)
        picks = torch.randint(total, (sample_size,), generator=gen)
        owner = torch.bucketize(picks, bounds, right=True)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), bounds[:-1]])
        values = torch.zeros(sample_size, dtype=torch.float32)
        for i, t in enumerate(int(t) for t in torch.nonzero(per_tensor > 0).squeeze(1)):
            taken = torch.nonzero(owner == i).squeeze(1)
            offsets = picks[taken] - starts[i]
            lo = int(per_rank[:rank, t].sum())  # this rank's first non-zero entry in tensor t
            here = (offsets >= lo) & (offsets < lo + int(per_rank[rank, t]))
            values[taken[here]] = mine[t].cpu()[offsets[here] - lo]
        values = values.to(device)
        dist.all_reduce(values)  # every pick is filled by exactly one rank
        values = values.cpu()
    n = values.numel()
    k = round(frozen_ratio * n)
    if k == 0:
        return math.inf
    return float(torch.kthvalue(values, n - k + 1).values)


def local_shard(t: Tensor) -> Tensor:
    """This rank's part of a DTensor (FSDP2's parameters, gradients, optimiser state; a view: writes
    reach the DTensor); a plain tensor as it is."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def fisher_masks(fisher: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """Frozen = ``F >= threshold`` and ``F != 0`` (zero-Fisher entries are never frozen).

    >>> import torch
    >>> fisher_masks({"a": torch.tensor([0.0, 1.0, 2.0])}, 0.0)["a"].tolist()
    [False, True, True]
    """
    return {n: (f >= threshold) & (f != 0) for n, f in fisher.items()}


def random_masks(fisher: dict[str, Tensor], frozen_ratio: float, seed: int = 0) -> dict[str, Tensor]:
    """The ablation baseline: ``round(frozen_ratio * N)`` random non-zero-Fisher entries frozen.

    The count equals the Fisher mask's (exact threshold, no ties at it). Stratified: each tensor
    freezes its proportional share of the count (largest remainder, so the total is exact),
    chosen uniformly among its non-zero entries; every non-zero entry has the same chance up
    to rounding. Peak memory: one ``randperm`` of the largest tensor's non-zero count.
    """
    _check_ratio(frozen_ratio)
    counts = _nonzero_counts(fisher)
    total = sum(counts.values())
    k = round(frozen_ratio * total)
    quotas = {n: k * c / total if total else 0.0 for n, c in counts.items()}
    alloc = {n: math.floor(q) for n, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda n: quotas[n] - alloc[n], reverse=True)
    for n in by_remainder[: k - sum(alloc.values())]:
        alloc[n] += 1
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for n, f in fisher.items():
        flat = torch.zeros(f.numel(), dtype=torch.bool)
        nz = torch.nonzero(f.reshape(-1).cpu() != 0).squeeze(1)
        flat[nz[torch.randperm(nz.numel(), generator=gen)[: alloc[n]]]] = True
        masks[n] = flat.view(f.shape).to(f.device)
    return masks


def frozen_share(masks: dict[str, Tensor], fisher: dict[str, Tensor]) -> float:
    """Share of non-zero-Fisher entries that ``masks`` freezes."""
    nz = sum(int(torch.count_nonzero(f)) for f in fisher.values())
    frozen = sum(int((masks[n] & (f != 0)).sum()) for n, f in fisher.items())
    return frozen / nz if nz else 0.0


def masks_by_param(model: nn.Module, masks: dict[str, Tensor]) -> dict[nn.Parameter, Tensor]:
    """Re-key name masks (from :func:`fisher_masks`) by the model's parameter objects."""
    named = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(named))
    if unknown:
        raise KeyError(f"masks name parameters the model does not have: {unknown[:5]}")
    return {named[n]: m for n, m in masks.items()}


class MaskedAdamW(torch.optim.AdamW):
    """AdamW whose frozen entries do not move: no gradient step, no weight decay, no momentum step.

    RPSA freezes by masking the gradient (g' = M * g, §3.2) before an ordinary AdamW. That alone would still move a
    frozen entry (AdamW's decoupled weight decay, and the momentum of earlier steps), so :meth:`step` zeroes frozen
    gradients, runs AdamW, then writes the frozen values saved before the step back (bit-exact). The moments of a
    frozen entry evolve as the masked rule has them (a zero gradient: ``exp_avg`` and ``exp_avg_sq`` decay by
    beta1, beta2 per step); they are never reset, so an entry the dynamic ratio frees again resumes with its
    second-moment history: resetting it to 0 while Adam's step count runs on made a freed entry take steps up to
    several times the learning rate. Extra memory: a copy of the frozen values during the step. Call
    :meth:`zero_frozen_grads` before gradient clipping if the clipping norm should not see frozen gradients. With
    FSDP2's DTensor parameters, masks are the shape of this rank's shard and every operation acts on the local shard.
    """

    def __init__(self, params: Iterable[nn.Parameter] | Iterable[dict], **kwargs: object) -> None:
        super().__init__(params, **kwargs)  # type: ignore[arg-type]
        self.masks: dict[nn.Parameter, Tensor] = {}

    def set_masks(self, masks: dict[nn.Parameter, Tensor]) -> None:
        """Replace the masks (``True`` = frozen); parameters absent from ``masks`` are free."""
        known = {id(p) for g in self.param_groups for p in g["params"]}
        self.masks = {}
        for p, m in masks.items():
            if id(p) not in known:
                raise ValueError("set_masks: a masked parameter is not in this optimizer")
            shard = local_shard(p)  # under FSDP a mask covers this rank's shard
            if m.shape != shard.shape:
                raise ValueError(f"set_masks: mask shape {tuple(m.shape)} != parameter shape {tuple(shard.shape)}")
            self.masks[p] = m.to(device=shard.device, dtype=torch.bool)

    @torch.no_grad()
    def zero_frozen_grads(self) -> None:
        for p, m in self.masks.items():
            if p.grad is not None:
                local_shard(p.grad).masked_fill_(m, 0)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        self.zero_frozen_grads()
        saved = {p: local_shard(p)[m] for p, m in self.masks.items() if p.grad is not None}
        loss = super().step(closure)
        for p, values in saved.items():
            local_shard(p)[self.masks[p]] = values
        return loss
