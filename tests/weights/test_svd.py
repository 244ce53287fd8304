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
    U, S, V = top_singular(W, 5, svd="randomized")
    u, s, vt = np.linalg.svd(W.numpy())
    np.testing.assert_allclose(S.numpy(), s[:5], rtol=1e-8)
    # singular vectors are defined up to sign: compare the projectors
    np.testing.assert_allclose((U @ U.T).numpy(), u[:, :5] @ u[:, :5].T, atol=1e-8)
    np.testing.assert_allclose((V @ V.T).numpy(), vt[:5].T @ vt[:5], atol=1e-8)


def test_exact_matches_numpy_and_is_orthonormal() -> None:
    W = torch.randn(30, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    U, S, V = top_singular(W, 7, svd="full")
    assert U.shape == (30, 7) and S.shape == (7,) and V.shape == (50, 7)
    np.testing.assert_allclose(S.numpy(), np.linalg.svd(W.numpy(), compute_uv=False)[:7], rtol=1e-10)
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(7), atol=1e-10)
    np.testing.assert_allclose((U @ torch.diag(S) @ V.T).numpy(), (U @ U.T @ W).numpy(), atol=1e-10)


def test_seeded_and_leaves_global_rng_alone() -> None:
    W = torch.randn(50, 50, generator=torch.Generator().manual_seed(2))  # no gap: the seed matters
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = top_singular(W, 4, seed=7, niter=0, svd="randomized")
    assert torch.equal(torch.rand(3), expected)
    again = top_singular(W, 4, seed=7, niter=0, svd="randomized")
    other = top_singular(W, 4, seed=8, niter=0, svd="randomized")
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[1], other[1])


def gapless(m: int, n: int, spectrum: str, seed: int = 0) -> torch.Tensor:
    """``U diag(s) V^T`` without a gap: power law s_i = i^-1/2, or flat-ish linear 1..0.5."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64)).Q
    i = torch.arange(1, r + 1, dtype=torch.float64)
    s = i**-0.5 if spectrum == "power-law" else torch.linspace(1.0, 0.5, r, dtype=torch.float64)
    return (U * s) @ V.T


def projector_error(U: torch.Tensor, U_ref: torch.Tensor) -> float:
    U = U.double()
    return float(torch.linalg.matrix_norm(U @ U.T - U_ref @ U_ref.T)) / U_ref.shape[1] ** 0.5


@pytest.mark.parametrize("spectrum", ["power-law", "flat"])
@pytest.mark.parametrize("shape", [(96, 400), (400, 96)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_is_the_exact_subspace_on_gapless_spectra(spectrum: str, shape: tuple[int, int], dtype: torch.dtype) -> None:
    """Issue 16: the default must be the exact top-k subspace (today's randomized one is ~10 % off)."""
    W = gapless(*shape, spectrum).to(dtype)
    u, s, vt = torch.linalg.svd(W.double(), full_matrices=False)  # float64 reference
    U, S, V = top_singular(W, 32)
    assert U.dtype == S.dtype == V.dtype == dtype
    assert projector_error(U, u[:, :32]) <= 1e-4
    assert projector_error(V, vt[:32].T) <= 1e-4
    np.testing.assert_allclose(S.double().numpy(), s[:32].numpy(), rtol=1e-5)
    np.testing.assert_allclose((U.T.double() @ U.double()).numpy(), np.eye(32), atol=1e-5)
    np.testing.assert_allclose((V.T.double() @ V.double()).numpy(), np.eye(32), atol=1e-5)


def test_randomized_is_measurably_off_without_a_gap() -> None:
    W = gapless(96, 400, "power-law")
    u = torch.linalg.svd(W, full_matrices=False)[0][:, :32]
    assert projector_error(top_singular(W, 32, svd="randomized")[0], u) > 1e-2


def test_exact_on_a_rank_deficient_weight_keeps_v_orthonormal() -> None:
    W = torch.diag(torch.tensor([3.0, 2.0, 0.0, 0.0], dtype=torch.float64))[:, :3]  # 4 x 3, rank 2
    U, S, V = top_singular(W, 3)
    np.testing.assert_allclose(S.numpy(), [3.0, 2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose((V.T @ V).numpy(), np.eye(3), atol=1e-12)
    np.testing.assert_allclose((U.T @ U).numpy(), np.eye(3), atol=1e-12)


def test_unknown_svd_method_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`svd` must be one of 'exact', 'randomized', 'full', got 'lanczos'"):
        top_singular(torch.eye(3), 1, svd="lanczos")


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
