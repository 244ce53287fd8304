"""OrthoMerge and the orthogonality regulariser against brute-force projector math (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safetax.weights.metrics import overlap_metrics
from safetax.weights.ortho import OrthoRegularizer, lora_delta, merge_weight, ortho_merge
from safetax.weights.svd import top_singular

F64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def low_rank_weight(m: int = 20, n: int = 12, rank: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A rank-``rank`` W_I and orthonormal bases of its column and row spaces' complements."""
    qc = torch.linalg.qr(rand(m, m, seed=seed)).Q
    qr = torch.linalg.qr(rand(n, n, seed=seed + 1)).Q
    W = qc[:, :rank] @ torch.diag(torch.linspace(5, 1, rank, dtype=F64)) @ qr[:, :rank].T
    return W, qc[:, rank:], qr[:, rank:]


def test_lora_delta_is_scaled_b_at_a() -> None:
    A, B = rand(4, 12, seed=1), rand(20, 4, seed=2)
    np.testing.assert_allclose(lora_delta(A, B, alpha=8, rank=4).numpy(), 2.0 * B.numpy() @ A.numpy(), rtol=1e-12)
    assert lora_delta(A.float(), B.to(torch.bfloat16), 8, 4).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="`rank`=3"):
        lora_delta(A, B, alpha=8, rank=3)


def test_both_matches_projectors_and_kills_both_subspaces() -> None:
    W, dW, k = rand(20, 12), rand(20, 12, seed=3), 4
    out = ortho_merge(W, dW, k, mode="both", basis=top_singular(W, k, svd="full"))
    u, _, vt = np.linalg.svd(W.numpy())
    Pu, Pv = np.eye(20) - u[:, :k] @ u[:, :k].T, np.eye(12) - vt[:k].T @ vt[:k]
    np.testing.assert_allclose(out.numpy(), Pu @ dW.numpy() @ Pv, atol=1e-12)
    assert np.abs(u[:, :k].T @ out.numpy()).max() < 1e-12
    assert np.abs(out.numpy() @ vt[:k].T).max() < 1e-12


def test_col_kills_column_subspace_only() -> None:
    W, dW, k = rand(20, 12), rand(20, 12, seed=3), 4
    out = ortho_merge(W, dW, k, mode="col")  # randomized basis: W is Gaussian, so use niter's accuracy loosely
    u, _, vt = np.linalg.svd(W.numpy())
    exact = ortho_merge(W, dW, k, mode="col", basis=top_singular(W, k, svd="full"))
    np.testing.assert_allclose(exact.numpy(), (np.eye(20) - u[:, :k] @ u[:, :k].T) @ dW.numpy(), atol=1e-12)
    assert np.abs(u[:, :k].T @ exact.numpy()).max() < 1e-12
    assert np.linalg.norm(exact.numpy() @ vt[:k].T) > 0.3 * np.linalg.norm(dW.numpy() @ vt[:k].T)
    assert np.linalg.norm(out.numpy() - exact.numpy()) < 0.2 * np.linalg.norm(exact.numpy())


@pytest.mark.parametrize("mode", ["col", "both"])
def test_lam_scales_linearly(mode: str) -> None:
    W, dW = rand(16, 10), rand(16, 10, seed=4)
    one = ortho_merge(W, dW, 3, 1.0, mode)
    np.testing.assert_allclose(ortho_merge(W, dW, 3, 2.5, mode).numpy(), 2.5 * one.numpy(), rtol=1e-12)


def test_dtype_and_merge_weight() -> None:
    W, dW = rand(16, 10).to(torch.bfloat16), rand(16, 10, seed=4).float()
    assert ortho_merge(W, dW, 3).dtype == torch.float32
    merged = merge_weight(W, dW, 3, mode="both")
    assert merged.dtype == torch.bfloat16
    expected = W.float() + ortho_merge(W, dW, 3, mode="both")
    torch.testing.assert_close(merged, expected.to(torch.bfloat16))
    torch.testing.assert_close(merge_weight(W, dW, mode="none"), (W.float() + dW).to(torch.bfloat16))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "row"}, r"`mode` must be one of \['col', 'both'\], got 'row'"),
        ({"lam": 0.0}, "`lam` must be a finite number > 0, got 0.0"),
        ({"lam": -1}, "`lam`"),
        ({"lam": math.nan}, "`lam`"),
        ({"lam": math.inf}, "`lam`"),
        ({"k": 0}, r"`k` must be an int in \[1, 10\] for a matrix of shape \(16, 10\), got 0"),
        ({"k": 11}, r"`k` must be an int in \[1, 10\]"),
        ({"basis": (torch.zeros(10, 2), torch.zeros(2), torch.zeros(16, 2))}, "`basis` must hold"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ortho_merge(rand(16, 10), rand(16, 10), **kwargs)


def test_shape_mismatch_and_merge_modes() -> None:
    with pytest.raises(ValueError, match=r"`dW` must have W's shape \(16, 10\), got \(10, 16\)"):
        ortho_merge(rand(16, 10), rand(10, 16))
    with pytest.raises(ValueError, match=r"`mode` must be one of \['col', 'both', 'none'\]"):
        merge_weight(rand(16, 10), rand(16, 10), mode="rows")


def brute_penalty(W: np.ndarray, dW: np.ndarray, mode: str) -> float:
    denom = (np.linalg.norm(W) * np.linalg.norm(dW)) ** 2
    col = np.linalg.norm(W.T @ dW) ** 2 / denom
    return col + (np.linalg.norm(W @ dW.T) ** 2 / denom if mode == "both" else 0.0)


@pytest.mark.parametrize("mode", ["col", "both"])
def test_penalty_is_exact_at_full_rank_and_truncated_below(mode: str) -> None:
    W, dW = rand(20, 12), rand(20, 12, seed=5)
    full = OrthoRegularizer.from_weight(W, 12, svd="full")
    assert float(full.penalty(dW, mode)) == pytest.approx(brute_penalty(W.numpy(), dW.numpy(), mode), rel=1e-10)
    assert float(full.penalty(dW, mode, beta=0.3)) == pytest.approx(0.3 * brute_penalty(W.numpy(), dW.numpy(), mode), rel=1e-10)
    reg = OrthoRegularizer.from_weight(W, 4, svd="full")
    u, s, vt = np.linalg.svd(W.numpy())
    W4 = u[:, :4] @ np.diag(s[:4]) @ vt[:4]  # numerator from the rank-4 W, denominator from the full one
    expected = brute_penalty(W4, dW.numpy(), mode) * (np.linalg.norm(W4) / np.linalg.norm(W.numpy())) ** 2
    assert float(reg.penalty(dW, mode)) == pytest.approx(expected, rel=1e-10)


def test_penalty_zero_for_updates_orthogonal_to_w() -> None:
    W, col_perp, row_perp = low_rank_weight()
    reg = OrthoRegularizer.from_weight(W, 6)
    dW_col = col_perp @ rand(col_perp.shape[1], 12, seed=6)  # columns outside W's column space
    assert float(reg.penalty(dW_col, "col")) < 1e-20
    assert float(reg.penalty(dW_col, "both")) > 0.01  # its rows still meet W's row space
    dW_both = col_perp @ rand(col_perp.shape[1], row_perp.shape[1], seed=7) @ row_perp.T
    assert float(reg.penalty(dW_both, "both")) < 1e-20


def test_both_row_term_is_w_dw_transposed() -> None:
    """A dW with W^T dW = 0 but W dW^T != 0: the paper's printed ||dW^T W|| would be 0 here."""
    W, col_perp, _ = low_rank_weight()
    dW = col_perp @ rand(col_perp.shape[1], 12, seed=8)
    assert np.linalg.norm(dW.T.numpy() @ W.numpy()) < 1e-12
    reg = OrthoRegularizer.from_weight(W, 6, svd="full")
    expected_row = (np.linalg.norm(W.numpy() @ dW.numpy().T) / (np.linalg.norm(W.numpy()) * np.linalg.norm(dW.numpy()))) ** 2
    assert expected_row > 0.01
    assert float(reg.penalty(dW, "both")) == pytest.approx(expected_row, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_penalty_at_b_zero_is_zero_with_finite_gradients(dtype: torch.dtype) -> None:
    reg = OrthoRegularizer.from_weight(rand(20, 12).to(dtype), 4)
    A = rand(4, 12).to(dtype).requires_grad_()
    B = torch.zeros(20, 4, dtype=dtype, requires_grad=True)
    for value in (reg.penalty(2.0 * B @ A, "both"), reg.penalty_lora(A, B, 2.0, "both")):
        A.grad = B.grad = None
        value.backward()
        assert float(value.detach()) == 0.0
        assert torch.isfinite(A.grad).all() and torch.isfinite(B.grad).all()


def test_penalty_lora_matches_dense_penalty_and_gradients() -> None:
    W = rand(20, 12)
    reg = OrthoRegularizer.from_weight(W, 5, svd="full")
    A, B = rand(3, 12, seed=1).requires_grad_(), rand(20, 3, seed=2).requires_grad_()
    dense = reg.penalty(1.5 * B @ A, "both")
    grads = torch.autograd.grad(dense, (A, B))
    factored = reg.penalty_lora(A, B, 1.5, "both")
    assert float(factored.detach()) == pytest.approx(float(dense.detach()), rel=1e-10)
    for g, h in zip(grads, torch.autograd.grad(factored, (A, B)), strict=True):
        torch.testing.assert_close(g, h)


def test_gradient_descent_on_lora_factors_reduces_overlap() -> None:
    u, v = torch.linalg.qr(rand(32, 32, seed=9)).Q, torch.linalg.qr(rand(24, 24, seed=10)).Q
    W = (u[:, :24] * torch.logspace(1, -1, 24, dtype=F64)) @ v.T  # decaying spectrum, as trained weights have
    reg = OrthoRegularizer.from_weight(W, 8)
    A = (0.1 * rand(4, 24, seed=11)).requires_grad_()
    B = (0.1 * rand(32, 4, seed=12)).requires_grad_()
    before = overlap_metrics(W, (B @ A).detach(), k=8, svd="full")
    start = float(reg.penalty_lora(A, B, 2.0, "both").detach())
    for _ in range(100):  # plain gradient descent on the penalty alone
        gA, gB = torch.autograd.grad(reg.penalty_lora(A, B, 2.0, "both"), (A, B))
        with torch.no_grad():
            A -= 0.2 * gA
            B -= 0.2 * gB
    after = overlap_metrics(W, (B @ A).detach(), k=8, svd="full")
    assert float(reg.penalty_lora(A, B, 2.0, "both").detach()) < 0.1 * start
    for name in ("col_overlap", "row_overlap", "col_subspace", "row_subspace"):
        assert after[name] < 0.5 * before[name], name


def test_regularizer_validation() -> None:
    reg = OrthoRegularizer.from_weight(rand(8, 6), 2)
    with pytest.raises(ValueError, match=r"`mode` must be one of \['col', 'both'\]"):
        reg.penalty(rand(8, 6), "row")
    with pytest.raises(ValueError, match="`beta` must be a finite number >= 0"):
        reg.penalty(rand(8, 6), beta=-1.0)
    with pytest.raises(ValueError, match="`w_norm`"):
        OrthoRegularizer(reg.U, reg.S, reg.V, 0.0)
    with pytest.raises(ValueError, match="`U`, `S`, `V`"):
        OrthoRegularizer(reg.U, reg.S[:1], reg.V, 1.0)
