"""top_singular against a full SVD, its seeding and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetax.weights.svd import top_singular


def gapped(m: int, n: int, k: int, seed: int = 0) -> torch.Tensor:
    """``U diag(s) V^T`` with singular values 10..6 for the top k and <= 0.1 after: a clear gap after k."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    tail = 0.1 * torch.rand(min(m, n) - k, generator=g, dtype=torch.float64)
    s = torch.cat([torch.linspace(10, 6, k, dtype=torch.float64), tail])
    return U[:, : len(s)] @ torch.diag(s) @ V[:, : len(s)].T


def test_randomized_matches_exact_with_a_gap() -> None:
    W = gapped(60, 40, 5)
    U, S, V = top_singular(W, 5)
    u, s, vt = np.linalg.svd(W.numpy())
    np.testing.assert_allclose(S.numpy(), s[:5], rtol=1e-8)
    # singular vectors are defined up to sign: compare the projectors
    np.testing.assert_allclose((U @ U.T).numpy(), u[:, :5] @ u[:, :5].T, atol=1e-8)
    np.testing.assert_allclose((V @ V.T).numpy(), vt[:5].T @ vt[:5], atol=1e-8)


def test_exact_matches_numpy_and_is_orthonormal() -> None:
    W = torch.randn(30, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    U, S, V = top_singular(W, 7, exact=True)
    assert U.shape == (30, 7) and S.shape == (7,) and V.shape == (50, 7)
    np.testing.assert_allclose(S.numpy(), np.linalg.svd(W.numpy(), compute_uv=False)[:7], rtol=1e-10)
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(7), atol=1e-10)
    np.testing.assert_allclose((U @ torch.diag(S) @ V.T).numpy(), (U @ U.T @ W).numpy(), atol=1e-10)


def test_seeded_and_leaves_global_rng_alone() -> None:
    W = torch.randn(50, 50, generator=torch.Generator().manual_seed(2))  # no gap: the seed matters
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = top_singular(W, 4, seed=7, niter=0)
    assert torch.equal(torch.rand(3), expected)
    again = top_singular(W, 4, seed=7, niter=0)
    other = top_singular(W, 4, seed=8, niter=0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[1], other[1])


def test_low_precision_input_gives_float32_vectors() -> None:
    U, S, V = top_singular(gapped(20, 10, 3).to(torch.bfloat16), 3)
    assert U.dtype == S.dtype == V.dtype == torch.float32
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(3), atol=1e-5)


@pytest.mark.parametrize("k", [0, -1, 11, 2.0, True, None])
def test_bad_k_names_k_shape_and_range(k: object) -> None:
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 10\] for a matrix of shape \(20, 10\)"):
        top_singular(torch.zeros(20, 10), k)  # type: ignore[arg-type]


def test_non_matrix_is_refused() -> None:
    with pytest.raises(ValueError, match="`W` must be a 2-D floating-point tensor"):
        top_singular(torch.zeros(2, 3, 4), 1)
    with pytest.raises(ValueError, match="`W`"):
        top_singular(torch.zeros(3, 3, dtype=torch.int64), 1)
