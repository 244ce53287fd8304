"""The paper's Eq. 4 Fisher (``estimator="token"``) against a brute-force loop, one backward per token."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safetax.rpsa.fisher import fisher_diagonal, sample_positions


def brute_force_token_fisher(model: nn.Module, sequences: list[dict[str, torch.Tensor]], m: int = 0,
                             seed: int = 0) -> dict[str, torch.Tensor]:
    """1/N sum_n 1/|S_n| sum_{t in S_n} (d log p(y_t) / d theta)^2: a fresh forward and backward per token."""
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    for seq in sequences:
        ids, labels = seq["input_ids"].unsqueeze(0), seq["labels"][1:]
        response = (labels != -100).nonzero().squeeze(-1)
        chosen = response[sample_positions(len(response), m, gen)]
        for t in chosen.tolist():
            model.zero_grad(set_to_none=True)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, t].double(), -1)[labels[t]]
            logp.backward()
            for n, p in params.items():
                acc[n] += p.grad.double() ** 2 / len(chosen)
    model.zero_grad(set_to_none=True)
    return {n: (a / len(sequences)).float() for n, a in acc.items()}


def test_all_tokens_match_the_brute_force_loop(model, sequences):
    sequences = sequences[:3]
    got = fisher_diagonal(model, sequences, estimator="token")
    want = brute_force_token_fisher(model, sequences)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-10, msg=n)
    # it is not the per-sequence estimator: the cross-token terms differ
    seq = fisher_diagonal(model, sequences)
    assert any(not torch.allclose(seq[n], got[n], rtol=1e-2) for n in got)


def test_sampled_tokens_match_the_brute_force_loop_on_the_same_sample(model, sequences):
    sequences = sequences[:3]
    got = fisher_diagonal(model, sequences, estimator="token", tokens_per_sequence=3, seed=4)
    want = brute_force_token_fisher(model, sequences, m=3, seed=4)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-10, msg=n)
    other = fisher_diagonal(model, sequences, estimator="token", tokens_per_sequence=3, seed=5)
    assert any(not torch.allclose(other[n], got[n]) for n in got)


def test_positions_are_uniform_without_replacement_so_the_estimate_is_unbiased():
    """Each position is drawn with probability m/T, so E[1/m sum_{t in S} g_t^2] = 1/T sum_t g_t^2."""
    gen = torch.Generator().manual_seed(0)
    draws = [sample_positions(10, 3, gen) for _ in range(20000)]
    assert all(len(set(d.tolist())) == 3 and d.tolist() == sorted(d.tolist()) for d in draws[:100])
    freq = torch.bincount(torch.cat(draws), minlength=10).double() / len(draws)
    torch.testing.assert_close(freq, torch.full((10,), 0.3, dtype=torch.float64), atol=0.015, rtol=0)


def test_more_samples_than_tokens_is_exact(model, sequences):
    sequences = sequences[:2]
    exact = fisher_diagonal(model, sequences, estimator="token")
    capped = fisher_diagonal(model, sequences, estimator="token", tokens_per_sequence=1000, seed=9)
    for n in exact:
        torch.testing.assert_close(capped[n], exact[n])


@pytest.mark.parametrize(("kwargs", "match"), [({"estimator": "tokens"}, "`estimator` must be one of"),
                                               ({"tokens_per_sequence": -1}, "`tokens_per_sequence` must be"),
                                               ({"tokens_per_sequence": 2.0}, "`tokens_per_sequence` must be")])
def test_bad_arguments_are_refused(model, sequences, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fisher_diagonal(model, sequences, **kwargs)
