"""Quantile thresholds, Fisher and random masks, and MaskedAdamW's bit-exact freezing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from safetax.rpsa.fisher import fisher_diagonal
from safetax.rpsa.masking import (
    MaskedAdamW,
    fisher_masks,
    fisher_threshold,
    frozen_share,
    masks_by_param,
    random_masks,
)


def synthetic_fisher(seed: int = 0) -> dict[str, torch.Tensor]:
    """~6000 entries over three tensors, ~30% exactly zero, values spanning 6 orders of magnitude."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in (("a", (40, 50)), ("b", (3000,)), ("c", (10, 100))):
        f = 10 ** (torch.rand(shape, generator=g) * 6 - 8)
        f[torch.rand(shape, generator=g) < 0.3] = 0.0
        out[name] = f
    return out


def n_nonzero(fisher: dict[str, torch.Tensor]) -> int:
    return sum(int(torch.count_nonzero(f)) for f in fisher.values())


def n_frozen(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


def assert_zero_never_frozen(fisher, masks):
    for n, f in fisher.items():
        assert not bool((masks[n] & (f == 0)).any()), n


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.37, 0.5, 0.9, 0.999])
def test_exact_threshold_freezes_requested_share(ratio):
    fisher = synthetic_fisher()
    total = n_nonzero(fisher)
    masks = fisher_masks(fisher, fisher_threshold(fisher, ratio))
    assert abs(n_frozen(masks) - round(ratio * total)) <= 1
    assert_zero_never_frozen(fisher, masks)
    # the frozen entries are the largest: every frozen value >= every unfrozen non-zero value
    frozen = torch.cat([f[masks[n]] for n, f in fisher.items()])
    free = torch.cat([f[~masks[n] & (f != 0)] for n, f in fisher.items()])
    assert frozen.min() >= free.max()


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_sampled_threshold_within_dkw_error(ratio):
    fisher = synthetic_fisher()
    total, n = n_nonzero(fisher), 2000
    assert total > n  # forces the sampled path
    delta = 0.05
    bound = math.sqrt(math.log(2 / delta) / (2 * n)) + 1 / n
    for seed in range(3):
        masks = fisher_masks(fisher, fisher_threshold(fisher, ratio, sample_size=n, seed=seed))
        assert abs(frozen_share(masks, fisher) - ratio) <= bound
        assert_zero_never_frozen(fisher, masks)
    a = fisher_threshold(fisher, ratio, sample_size=n, seed=0)
    assert a == fisher_threshold(fisher, ratio, sample_size=n, seed=0)
    assert a != fisher_threshold(fisher, ratio, sample_size=n, seed=1)


@pytest.mark.parametrize("sample_size", [1_000_000, 500])
def test_ratio_zero_and_one(sample_size):
    fisher = synthetic_fisher()
    assert fisher_threshold(fisher, 0.0, sample_size=sample_size) == math.inf
    assert n_frozen(fisher_masks(fisher, math.inf)) == 0
    masks = fisher_masks(fisher, fisher_threshold(fisher, 1.0, sample_size=sample_size))
    assert n_frozen(masks) == n_nonzero(fisher)
    assert_zero_never_frozen(fisher, masks)


def test_threshold_rejects_bad_ratio_and_handles_all_zero():
    with pytest.raises(ValueError, match="frozen_ratio must be in"):
        fisher_threshold(synthetic_fisher(), 1.5)
    zeros = {"a": torch.zeros(10)}
    assert fisher_threshold(zeros, 0.5) == math.inf
    assert n_frozen(fisher_masks(zeros, fisher_threshold(zeros, 1.0))) == 0


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_random_masks_same_count_nonzero_only(ratio):
    fisher = synthetic_fisher()
    masks = random_masks(fisher, ratio, seed=3)
    assert n_frozen(masks) == round(ratio * n_nonzero(fisher))
    assert_zero_never_frozen(fisher, masks)
    if 0 < ratio < 1:
        assert n_frozen(masks) == n_frozen(fisher_masks(fisher, fisher_threshold(fisher, ratio)))
        other = random_masks(fisher, ratio, seed=4)
        assert any(not torch.equal(masks[n], other[n]) for n in masks)
        # spread over all tensors, roughly in proportion to their non-zero counts
        for n, f in fisher.items():
            assert abs(int(masks[n].sum()) - ratio * int(torch.count_nonzero(f))) <= 1


def _train_steps(model, sequences, opt, steps):
    model.train()
    for i in range(steps):
        s = sequences[i % len(sequences)]
        loss = model(**{k: v.unsqueeze(0) for k, v in s.items()}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_masked_adamw_freezes_bit_exactly_with_weight_decay(model, sequences):
    fisher = fisher_diagonal(model, sequences)
    masks = fisher_masks(fisher, fisher_threshold(fisher, 0.5))
    named = dict(model.named_parameters())
    init = {n: p.detach().clone() for n, p in named.items()}
    opt = MaskedAdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    opt.set_masks(masks_by_param(model, masks))
    _train_steps(model, sequences, opt, 5)
    for n, p in named.items():
        m = masks[n]
        assert torch.equal(p.detach()[m], init[n][m]), n
        moved = ~m & (init[n] != 0)
        assert bool((p.detach()[moved] != init[n][moved]).all()), n
        state = opt.state[p]  # frozen from the first step: a zero gradient all along, so no moments either
        assert not state["exp_avg"][m].any() and not state["exp_avg_sq"][m].any(), n

    # switch to another mask mid-training: newly frozen entries hold, newly freed ones move
    new_masks = random_masks(fisher, 0.5, seed=1)
    at_switch = {n: p.detach().clone() for n, p in named.items()}
    opt.set_masks(masks_by_param(model, new_masks))
    _train_steps(model, sequences, opt, 3)
    for n, p in named.items():
        m = new_masks[n]
        assert torch.equal(p.detach()[m], at_switch[n][m]), n
        freed = masks[n] & ~m & (at_switch[n] != 0)
        assert bool((p.detach()[freed] != at_switch[n][freed]).all()), n


def test_a_freed_entry_resumes_with_the_moments_of_gradient_masking() -> None:
    """While frozen, an entry's Adam moments evolve as under the paper's rule (AdamW fed the masked gradient), and the
    entry is freed with them: its steps after the freeze are no larger than the other entries'. Resetting the
    second moment at a mask change (as before) made them up to ~2x the learning rate within 10 steps here."""
    torch.manual_seed(0)
    ours_p = nn.Parameter(torch.randn(8))
    ref_p = nn.Parameter(ours_p.detach().clone())
    ours = MaskedAdamW([ours_p], lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW([ref_p], lr=1e-2, weight_decay=0.1)
    grad, frozen = torch.linspace(0.5, 1.5, 8), torch.arange(8) < 4

    def step(mask: torch.Tensor | None) -> torch.Tensor:
        before = ours_p.detach().clone()
        ours_p.grad, ref_p.grad = grad.clone(), grad * (~mask if mask is not None else 1)
        ours.step()
        ref.step()
        return (ours_p.detach() - before).abs()

    for _ in range(50):
        step(None)
    ours.set_masks({ours_p: frozen})
    held = ours_p.detach()[frozen].clone()
    for _ in range(25):
        step(frozen)
    assert torch.equal(ours_p.detach()[frozen], held)  # frozen: not moved
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(ours.state[ours_p][key], ref.state[ref_p][key])  # the masked rule's moments
    ours.set_masks({})
    moves = torch.stack([step(None) for _ in range(10)])
    assert moves[:, frozen].max() <= 1.05 * moves[:, ~frozen].max()


def test_plain_adamw_would_move_frozen_entries(model, sequences):
    """The control: with zeroed gradients only, AdamW's decoupled decay still shrinks entries."""
    p = next(model.parameters())
    before = p.detach().clone()
    opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.1)
    p.grad = torch.zeros_like(p)
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_set_masks_validates(model):
    p = next(model.parameters())
    opt = MaskedAdamW([p], lr=1e-3)
    with pytest.raises(ValueError, match="mask shape"):
        opt.set_masks({p: torch.zeros(3, dtype=torch.bool)})
    other = list(model.parameters())[1]
    with pytest.raises(ValueError, match="not in this optimizer"):
        opt.set_masks({other: torch.zeros_like(other, dtype=torch.bool)})
    with pytest.raises(KeyError, match="does not have"):
        masks_by_param(model, {"nope": torch.zeros(1, dtype=torch.bool)})
