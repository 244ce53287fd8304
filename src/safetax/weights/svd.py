"""Top-k singular triplets of a weight matrix: exact by default, randomized on request.

OrthoMerge, the orthogonality regulariser and the overlap metrics (Xue & Mirzasoleiman
2025, sections 5.1-5.3) need only the top ``k`` (64, 16) singular vectors of a weight.
The paper specifies the exact rank-k subspace; LLM weights have no spectral gap after
``k``, where a randomized SVD is measurably off (below), so ``"exact"`` is the default.
"""

from __future__ import annotations

import torch
from torch import Tensor

OVERSAMPLING = 8  # extra random probes beyond k; Halko et al. advise k + 5..10
SVD_METHODS = ("exact", "randomized", "full")


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


def check_svd(method: object, name: str = "svd") -> str:
    """Validate an SVD method name; returns it.

    >>> check_svd("lanczos")
    Traceback (most recent call last):
    ...
    ValueError: `svd` must be one of 'exact', 'randomized', 'full', got 'lanczos'
    """
    if method not in SVD_METHODS:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, SVD_METHODS))}, got {method!r}")
    return str(method)


def check_matrix(x: object, name: str) -> Tensor:
    """Raise a ValueError naming ``name`` unless ``x`` is a 2-D floating-point tensor."""
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        what = f"a {x.ndim}-D {x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a 2-D floating-point tensor, got {what}")
    return x


def gram_top_singular(W: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Exact top-k triplets from the eigendecomposition of the smaller Gram matrix, in float64.

    For a wide ``W`` (``m <= n``): ``W W^T = U diag(S^2) U^T`` (``m x m``), then
    ``V_k = W^T U_k / S_k``; a tall ``W`` goes through ``W^T``. Squaring the matrix squares
    its condition number, so float64 is what keeps the top-k subspace within ~1e-10 of a
    full SVD's (float32 would lose it on a gapless spectrum); the cost is one
    ``m x m x n`` product and one ``m x m`` eigendecomposition instead of an SVD of ``W``.
    """
    x = W.detach().to(torch.float64)
    wide = x.shape[0] <= x.shape[1]
    a = x if wide else x.mT
    evals, evecs = torch.linalg.eigh(a @ a.mT)  # ascending
    U = evecs[:, -k:].flip(-1)
    S = evals[-k:].flip(-1).clamp_min(0).sqrt()
    # V = A^T U / S. A zero singular value has no defined V: zero that column and let a
    # Householder QR (whose Q is orthonormal whatever R is) complete the basis.
    null = S <= S[0] * 1e-12
    V = (a.mT @ U) / torch.where(null, 1.0, S)
    if bool(null.any()):
        V = torch.linalg.qr(V.masked_fill(null, 0.0)).Q
    return (U, S, V) if wide else (V, S, U)


def top_singular(
    W: Tensor, k: int, *, svd: str = "exact", seed: int = 0, niter: int = 4, oversampling: int = OVERSAMPLING
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` singular triplets ``W ~= U_k diag(S_k) V_k^T``.

    ``svd`` selects the method:

    * ``"exact"`` (default): :func:`gram_top_singular`, the eigendecomposition of the smaller
      Gram matrix in float64. Its projector is within 1e-7 of a float64 full SVD's on
      power-law and flat spectra (float32 output rounding included); at 3584 x 18944,
      k = 64 (a 7B MLP weight), one thread: 28-64 s against the full SVD's 278-296 s
      (``bench/bench_svd.py``: 10x min, 4.6x median, on a shared 2-core machine).
    * ``"randomized"``: ``torch.svd_lowrank(W, q=k + oversampling, niter=niter)`` with its
      probes drawn under ``seed`` in a forked RNG (reproducible; the caller's RNG state is
      left alone). Accurate with a spectral gap after ``k`` (the error shrinks like
      ``(s_{q+1} / s_k)^(2 niter + 1)``), but without one, as in LLM weights, its projector
      is far off the exact one (``bench/bench_svd.py``, k = 64, relative Frobenius error of
      the projector: 0.19-0.27 on power-law spectra s_i = i^-1/2 from 512 x 2048 to
      3584 x 18944, 0.86 on a flat one; the issue measured 0.12-0.13 at s_i = i^-1).
      Fastest (1.8-4.6 s at 3584 x 18944); for quick looks only.
    * ``"full"``: ``torch.linalg.svd`` of ``W`` in the working precision (the reference).

    Args:
        W: a ``d_out x d_in`` matrix (any float dtype).
        k: how many triplets, ``1 <= k <= min(W.shape)``.
        svd: ``"exact"``, ``"randomized"`` or ``"full"``.
        seed: seed of the random probes (randomized only).
        niter: subspace (power) iterations (randomized only).
        oversampling: extra probes beyond ``k`` (randomized only).

    Returns:
        ``(U_k, S_k, V_k)``: ``d_out x k`` and ``d_in x k`` with orthonormal columns and
        ``S_k`` descending, in the working precision (float32, or float64 for float64
        input), not ``W``'s dtype: bf16 singular vectors would not be orthonormal.

    Raises:
        ValueError: if ``W`` is not a 2-D float tensor, ``k`` is out of range or ``svd``
            is unknown.

    >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    >>> U, S, V = top_singular(W, 2)
    >>> S.round(decimals=4)
    tensor([3., 2.])
    >>> U.shape, V.shape
    (torch.Size([3, 2]), torch.Size([3, 2]))
    """
    check_matrix(W, "W")
    check_rank(k, tuple(W.shape))
    check_svd(svd)
    f = working_dtype(W)
    if svd == "exact":
        return tuple(t.to(f) for t in gram_top_singular(W, k))  # type: ignore[return-value]
    x = W.detach().to(f)
    if svd == "full":
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
