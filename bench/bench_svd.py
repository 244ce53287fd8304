"""Exact (Gram eigh) vs full vs randomized top-k SVD of one fp32 weight, gapless spectrum, 1 thread.

Default size 3584 x 18944 (a 7B model's MLP weight), k = 64. Prints, per method, the min and
median seconds of interleaved repeats, the speed-up of ``exact`` over the full SVD
(target >= 3x) and each method's projector error against a float64 full SVD
(target for ``exact``: <= 1e-4), then PASS or FAIL.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from safetax.weights.svd import top_singular

METHODS = ("full", "exact", "randomized")


def gapless_weight(m: int, n: int, spectrum: str, gen: torch.Generator) -> torch.Tensor:
    """``U diag(s) V^T`` in fp32 with a power-law (s_i = i^-1/2) or flat-ish (1..0.5 linear) spectrum."""
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64)).Q
    i = torch.arange(1, r + 1, dtype=torch.float64)
    s = i**-0.5 if spectrum == "power-law" else torch.linspace(1.0, 0.5, r, dtype=torch.float64)
    return ((U * s) @ V.T).float()


def projector_error(U: torch.Tensor, U_ref: torch.Tensor) -> float:
    """``||U U^T - U_ref U_ref^T||_F / ||U_ref U_ref^T||_F`` (the projectors formed: no cancellation)."""
    U = U.double()
    return float(torch.linalg.matrix_norm(U @ U.mT - U_ref @ U_ref.mT) / U_ref.shape[1] ** 0.5)


def main(m: int, n: int, k: int, repeats: int, spectrum: str) -> bool:
    torch.set_num_threads(1)
    W = gapless_weight(m, n, spectrum, torch.Generator().manual_seed(0))
    U_ref = torch.linalg.svd(W.double(), full_matrices=False)[0][:, :k]  # the float64 reference
    print(f"top-{k} SVD of one {m}x{n} fp32 weight, {spectrum} spectrum, torch threads: {torch.get_num_threads()}")
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    errors: dict[str, float] = {}
    for _ in range(repeats):  # interleaved: a load change on the machine hits every method alike
        for name in METHODS:
            t0 = time.perf_counter()
            U, _, _ = top_singular(W, k, svd=name)
            times[name].append(time.perf_counter() - t0)
            errors[name] = projector_error(U, U_ref)
    for name in METHODS:
        print(f"  {name:>10}: min {min(times[name]):7.2f}s  median {statistics.median(times[name]):7.2f}s  "
              f"projector error {errors[name]:.2e}")
    ratio_min = min(times["full"]) / min(times["exact"])
    ratio_med = statistics.median(times["full"]) / statistics.median(times["exact"])
    passed = ratio_med >= 3 and errors["exact"] <= 1e-4
    print(f"  exact vs full SVD: {ratio_min:.1f}x (min), {ratio_med:.1f}x (median); target >= 3x, error <= 1e-4: "
          + ("PASS" if passed else "FAIL"))
    return passed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--m", type=int, default=3584, help="rows (1024 for a quick run)")
    parser.add_argument("--n", type=int, default=18944, help="columns (4096 for a quick run)")
    parser.add_argument("--k", type=int, default=64, help="top singular directions")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per method (>= 3)")
    parser.add_argument("--spectrum", choices=("power-law", "flat"), default="power-law")
    args = parser.parse_args()
    raise SystemExit(0 if main(args.m, args.n, args.k, args.repeats, args.spectrum) else 1)
