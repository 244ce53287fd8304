"""Stable rank and the four overlap metrics against direct numpy computations (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetax.weights.metrics import METRICS, analyze_updates, delta_norms, overlap_metrics, stable_rank

F64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def direct(W: np.ndarray, dW: np.ndarray, k: int) -> dict[str, float]:
    u, _, vt = np.linalg.svd(W)
    Uk, Vk = u[:, :k], vt[:k].T
    nw, nd = np.linalg.norm(W), np.linalg.norm(dW)
    return {
        "col_overlap": np.linalg.norm(W.T @ dW) / (nw * nd),
        "col_subspace": np.linalg.norm(Uk @ Uk.T @ dW) / nd,
        "row_overlap": np.linalg.norm(W @ dW.T) / (nw * nd),
        "row_subspace": np.linalg.norm(Vk @ Vk.T @ dW.T) / nd,
    }


def test_stable_rank_rank_one_orthogonal_and_zero() -> None:
    assert stable_rank(torch.outer(rand(9), rand(7, seed=1))) == pytest.approx(1.0, rel=1e-12)
    Q = torch.linalg.qr(rand(8, 8)).Q
    assert stable_rank(Q) == pytest.approx(8.0, rel=1e-12)
    assert stable_rank(torch.zeros(4, 3)) == 0.0
    low = rand(30, 3) @ rand(3, 20, seed=1)
    s = np.linalg.svd(low.numpy(), compute_uv=False)
    assert stable_rank(low) == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-10)
    assert 1.0 <= stable_rank(low.to(torch.bfloat16)) <= 3.01


def test_delta_norms() -> None:
    x = rand(12, 5)
    norms = delta_norms(x)
    assert norms["frobenius"] == pytest.approx(np.linalg.norm(x.numpy()), rel=1e-12)
    assert norms["spectral"] == pytest.approx(np.linalg.norm(x.numpy(), 2), rel=1e-12)


@pytest.mark.parametrize(("shape", "k"), [((24, 40), 16), ((40, 24), 16), ((30, 2100), 5)])  # 2100x2100 product: 5 blocks
def test_overlap_metrics_match_direct_computation(shape: tuple[int, int], k: int) -> None:
    W, dW = rand(*shape), rand(*shape, seed=1) + 0.5 * rand(*shape)  # dW correlated with W
    got = overlap_metrics(W, dW, k, svd="full")
    assert list(got) == list(METRICS)
    want = direct(W.numpy(), dW.numpy(), k)
    for name in METRICS:
        assert got[name] == pytest.approx(want[name], rel=1e-10), name


def test_randomized_metrics_match_on_a_gapped_weight() -> None:
    u, v = torch.linalg.qr(rand(48, 48)).Q, torch.linalg.qr(rand(32, 32, seed=1)).Q
    s = torch.cat([torch.linspace(10, 5, 16, dtype=F64), torch.full((16,), 0.01, dtype=F64)])
    W, dW = (u[:, :32] * s) @ v.T, rand(48, 32, seed=2)
    got, want = overlap_metrics(W, dW, 16), direct(W.numpy(), dW.numpy(), 16)
    for name in METRICS:
        assert got[name] == pytest.approx(want[name], rel=1e-8), name


def test_metrics_separate_column_and_row_overlap() -> None:
    """dW whose columns avoid W's column space but whose rows lie in W's row space."""
    W = torch.diag(torch.tensor([3.0, 2.0, 0.0, 0.0], dtype=F64))
    dW = torch.zeros(4, 4, dtype=F64)
    dW[2, 0] = dW[3, 1] = 1.0
    got = overlap_metrics(W, dW, 2, svd="full")
    assert got["col_overlap"] == got["col_subspace"] == 0.0
    assert got["row_subspace"] == pytest.approx(1.0)
    assert got["row_overlap"] == pytest.approx(np.sqrt(13) / (np.sqrt(13) * np.sqrt(2)))


def test_zero_update_and_float32_input() -> None:
    assert overlap_metrics(rand(6, 5), torch.zeros(6, 5), 2) == dict.fromkeys(METRICS, 0.0)
    got = overlap_metrics(rand(20, 10).float(), rand(20, 10, seed=1).to(torch.bfloat16), 3, svd="full")
    assert all(0.0 <= v <= 1.0 for v in got.values())


def test_overlap_metrics_errors() -> None:
    with pytest.raises(ValueError, match=r"`dW` must have W_I's shape \(6, 5\), got \(5, 6\)"):
        overlap_metrics(rand(6, 5), rand(5, 6))
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 5\]"):
        overlap_metrics(rand(6, 5), rand(6, 5), k=16)
    with pytest.raises(ValueError, match="`W_I`"):
        overlap_metrics(rand(6), rand(6, 5))


def test_analyze_updates_records() -> None:
    pairs = [("a.weight", rand(8, 6), rand(8, 6, seed=1)), ("b.weight", rand(4, 3), torch.zeros(4, 3, dtype=F64))]
    rows = list(analyze_updates(iter(pairs), k=4, svd="full"))
    assert [r["name"] for r in rows] == ["a.weight", "b.weight"]
    assert rows[0]["stable_rank"] == pytest.approx(stable_rank(pairs[0][2]))
    assert rows[0]["col_overlap"] == pytest.approx(overlap_metrics(pairs[0][1], pairs[0][2], 4, svd="full")["col_overlap"])
    assert rows[1]["stable_rank"] == 0.0 and rows[1]["row_subspace"] == 0.0  # k capped at 3, zero update
