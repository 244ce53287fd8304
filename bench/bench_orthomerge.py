"""OrthoMerge with a randomized vs a full SVD of one 4096x4096 fp32 weight, k=64 (target: >= 10x, error < 1e-3 with a gap).

The default SVD is now ``exact`` (Gram eigendecomposition); it is timed and checked beside the two.
``bench/bench_svd.py`` compares the three SVDs alone at a 7B MLP shape.
"""

from __future__ import annotations

import argparse
import time

import torch

from safetax.weights.ortho import ortho_merge
from safetax.weights.svd import top_singular


def gapped_weight(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """``U diag(s) V^T``: top-k singular values 10..5, then a tail decaying 1..0.01 (a gap of 5x after k)."""
    U = torch.linalg.qr(torch.randn(n, n, generator=gen)).Q
    V = torch.linalg.qr(torch.randn(n, n, generator=gen)).Q
    s = torch.cat([torch.linspace(10, 5, k), torch.logspace(0, -2, n - k)])
    return (U * s) @ V.T


def timed_merge(
    W: torch.Tensor, dW: torch.Tensor, k: int, svd: str, niter: int = 4
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """OrthoMerge-both, SVD included: (dW', U_k, seconds)."""
    t0 = time.perf_counter()
    basis = top_singular(W, k, svd=svd, niter=niter)
    out = ortho_merge(W, dW, k, mode="both", basis=basis)
    return out, basis[0], time.perf_counter() - t0


def projection_error(U_exact: torch.Tensor, out: torch.Tensor) -> float:
    """``||U_k^T dW'||_F / ||dW'||_F`` against the exact top-k left singular vectors."""
    return float(torch.linalg.matrix_norm(U_exact.mT @ out) / torch.linalg.matrix_norm(out))


def main(size: int = 4096, k: int = 64) -> None:
    gen = torch.Generator().manual_seed(0)
    dW = 0.01 * torch.randn(size, size, generator=gen)
    cases = {"spectral gap": gapped_weight(size, k, gen), "Gaussian (no gap)": torch.randn(size, size, generator=gen)}
    print(f"OrthoMerge-both of one {size}x{size} fp32 weight, k={k}, torch threads: {torch.get_num_threads()}")
    passed = True
    for label, W in cases.items():
        ortho_merge(W[:256, :256], dW[:256, :256], 8)  # warm-up
        fast, _, t_fast = timed_merge(W, dW, k, svd="randomized")
        exact, U_exact, t_exact = timed_merge(W, dW, k, svd="full")  # the full SVD: run once per weight
        gram, _, t_gram = timed_merge(W, dW, k, svd="exact")
        err_fast, err_exact = projection_error(U_exact, fast), projection_error(U_exact, exact)
        diff = float(torch.linalg.matrix_norm(fast - exact) / torch.linalg.matrix_norm(exact))
        speedup = t_exact / t_fast
        print(f"[{label}] randomized: {t_fast:.2f}s   full SVD: {t_exact:.2f}s   speed-up: {speedup:.1f}x (target >= 10x)")
        print(f"[{label}] ||U_k^T dW'||/||dW'|| (exact U_k): randomized {err_fast:.2e}, full {err_exact:.2e}; "
              f"||dW'_rand - dW'_full||/||dW'_full|| = {diff:.2e}")
        gram_diff = float(torch.linalg.matrix_norm(gram - exact) / torch.linalg.matrix_norm(exact))
        print(f"[{label}] exact (Gram eigh, the default): {t_gram:.2f}s, error {projection_error(U_exact, gram):.2e}, "
              f"||dW'_exact - dW'_full||/||dW'_full|| = {gram_diff:.2e}")
        if label == "spectral gap":
            passed &= speedup >= 10 and err_fast < 1e-3
        else:
            more, _, t_more = timed_merge(W, dW, k, svd="randomized", niter=16)
            print(f"[{label}] with niter=16: {t_more:.2f}s, error {projection_error(U_exact, more):.2e} "
                  "(no gap: the top-k subspace is ill-defined; power iterations converge slowly)")
    print("PASS" if passed else "FAIL")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096, help="matrix side (1024 for a quick run)")
    parser.add_argument("--k", type=int, default=64, help="singular directions projected out")
    args = parser.parse_args()
    main(args.size, args.k)
