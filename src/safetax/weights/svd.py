"""Top-k singular triplets of a weight matrix, randomized (Halko et al. 2009) or exact.

OrthoMerge and the orthogonality regulariser (Xue & Mirzasoleiman 2025, sections
5.1-5.2) need only the top ``k`` (64, 16) singular vectors of a ``d x d`` weight;
a randomized SVD finds them in ``O(d^2 k)`` instead of the ``O(d^3)`` of a full SVD.
"""

from __future__ import annotations

import torch
from torch import Tensor

OVERSAMPLING = 8  # extra random probes beyond k; Halko et al. advise k + 5..10


def working_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: the precision the weight math runs in.

    >>> working_dtype(torch.zeros(1, dtype=torch.bfloat16))
    torch.float32
    >>> working_dtype(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
    torch.float64
    """
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_rank(k: object, shape: tuple[int, ...], name: str = "k") -> int:
    """Validate a truncation rank: an int with ``1 <= k <= min(shape)``; returns it.

    >>> check_rank(0, (8, 4))
    Traceback (most recent call last):
    ...
    ValueError: `k` must be an int in [1, 4] for a matrix of shape (8, 4), got 0
    """
    upper = min(shape)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= upper:
        raise ValueError(f"`{name}` must be an int in [1, {upper}] for a matrix of shape {tuple(shape)}, got {k!r}")
    return k


def check_matrix(x: object, name: str) -> Tensor:
    """Raise a ValueError naming ``name`` unless ``x`` is a 2-D floating-point tensor."""
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        what = f"a {x.ndim}-D {x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a 2-D floating-point tensor, got {what}")
    return x


def top_singular(
    W: Tensor, k: int, *, seed: int = 0, niter: int = 4, exact: bool = False, oversampling: int = OVERSAMPLING
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` singular triplets ``W ~= U_k diag(S_k) V_k^T``.

    Randomized: ``torch.svd_lowrank(W, q=k + oversampling, niter=niter)`` with its random
    probes drawn under ``seed`` in a forked RNG, so the result is reproducible and the
    caller's global RNG state is left as it was; then truncated to ``k``. Its subspace is
    accurate when ``W`` has a spectral gap after ``k`` (the error shrinks like
    ``(s_{q+1} / s_k)^(2 niter + 1)``); on a flat spectrum the top-k vectors are
    ill-defined for any method. ``exact=True`` runs ``torch.linalg.svd`` instead.

    Args:
        W: a ``d_out x d_in`` matrix (any float dtype; the SVD runs in float32, or
            float64 for float64 input).
        k: how many triplets, ``1 <= k <= min(W.shape)``.
        seed: seed of the random probes (randomized only).
        niter: subspace (power) iterations; 4 is ample for a gap, more helps without one.
        exact: full SVD instead of the randomized one.
        oversampling: extra probes beyond ``k`` (randomized only).

    Returns:
        ``(U_k, S_k, V_k)``: ``d_out x k`` and ``d_in x k`` with orthonormal columns and
        ``S_k`` descending, in the working precision (float32 or float64), not ``W``'s dtype:
        bf16 singular vectors would not be orthonormal.

    Raises:
        ValueError: if ``W`` is not a 2-D float tensor or ``k`` is out of range.

    >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    >>> U, S, V = top_singular(W, 2)
    >>> S.round(decimals=4)
    tensor([3., 2.])
    >>> U.shape, V.shape
    (torch.Size([3, 2]), torch.Size([3, 2]))
    """
    check_matrix(W, "W")
    check_rank(k, tuple(W.shape))
    x = W.detach().to(working_dtype(W))
    if exact:
        U, S, Vh = torch.linalg.svd(x, full_matrices=False)
        return U[:, :k], S[:k], Vh[:k].mT
    q = min(k + oversampling, min(x.shape))
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices, device_type=x.device.type if x.is_cuda else None):
        # Seed only the generator svd_lowrank draws from: torch.manual_seed would also
        # (lazily) reseed every CUDA device, outside what fork_rng restores.
        gen = torch.cuda.default_generators[devices[0]] if x.is_cuda else torch.random.default_generator
        gen.manual_seed(seed)
        U, S, V = torch.svd_lowrank(x, q=q, niter=niter)
    return U[:, :k], S[:k], V[:, :k]
