"""Weight-update analysis (Xue & Mirzasoleiman 2025, section 5.1, Figures 1 and 4).

How a fine-tuning update ``dW`` sits relative to the initial weight ``W_I``: its stable
rank, and four overlaps with ``W_I``'s column (output) and row (input) spaces. All
values are plain floats, computed in float32 (float64 for float64 input).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from safetax.weights.svd import check_matrix, check_rank, top_singular, working_dtype

BLOCK_ELEMENTS = 2**20  # scratch of _frobenius_of_product: one 4 MiB fp32 block, whatever the matrix size
METRICS = ("col_overlap", "col_subspace", "row_overlap", "row_subspace")


def stable_rank(dW: Tensor) -> float:
    """Stable rank ``||dW||_F^2 / ||dW||_2^2``, in ``[1, rank(dW)]``; 0 for a zero matrix (by convention).

    >>> round(stable_rank(torch.outer(torch.arange(1.0, 4.0), torch.ones(5))), 6)  # rank 1
    1.0
    >>> stable_rank(torch.eye(4, dtype=torch.float64))
    4.0
    >>> stable_rank(torch.zeros(3, 2))
    0.0
    """
    norms = delta_norms(dW)
    return 0.0 if norms["spectral"] == 0 else norms["frobenius"] ** 2 / norms["spectral"] ** 2


def delta_norms(dW: Tensor) -> dict[str, float]:
    """Frobenius and spectral norm of an update: ``{"frobenius": ||dW||_F, "spectral": ||dW||_2}``.

    >>> delta_norms(torch.diag(torch.tensor([3.0, 4.0])))
    {'frobenius': 5.0, 'spectral': 4.0}
    """
    x = check_matrix(dW, "dW").detach().to(working_dtype(dW))
    return {
        "frobenius": float(torch.linalg.matrix_norm(x)),
        "spectral": float(torch.linalg.matrix_norm(x, ord=2)),
    }


def _frobenius_of_product(X: Tensor, Y: Tensor, block_elements: int = BLOCK_ELEMENTS) -> float:
    """``||X @ Y||_F`` a block of ``Y``'s columns at a time, so ``X @ Y`` is never held whole."""
    block = max(1, block_elements // X.shape[0])
    total = 0.0  # sum of squares in Python's float64
    for j in range(0, Y.shape[1], block):
        total += float(torch.linalg.vector_norm(X @ Y[:, j : j + block])) ** 2
    return math.sqrt(total)


def overlap_metrics(
    W_I: Tensor, dW: Tensor, k: int = 16, *, seed: int = 0, svd: str = "exact"
) -> dict[str, float]:
    """The four overlaps of an update with the initial weight (section 5.1).

    1. ``col_overlap  = ||W_I^T dW||_F / (||W_I||_F ||dW||_F)``
    2. ``col_subspace = ||U_k U_k^T dW||_F / ||dW||_F``
    3. ``row_overlap  = ||W_I dW^T||_F / (||W_I||_F ||dW||_F)``
    4. ``row_subspace = ||V_k V_k^T dW^T||_F / ||dW||_F``

    ``U_k``, ``V_k``: top-k left/right singular vectors of ``W_I`` (the paper uses k=16),
    from :func:`~safetax.weights.svd.top_singular`. (1) and (3) use the exact ``W_I``, in
    column blocks so no ``d x d`` product is held whole. All four lie in ``[0, 1]``; they
    are 0 when ``dW`` or ``W_I`` is zero (by convention).

    Args:
        W_I: initial weight, ``d_out x d_in``.
        dW: update, same shape.
        k: number of singular directions for (2) and (4).
        seed: seed of the randomized SVD (``svd="randomized"`` only).
        svd: how (2) and (4) find ``U_k``, ``V_k``: ``"exact"`` (default), ``"randomized"``
            or ``"full"`` (see :func:`~safetax.weights.svd.top_singular`).

    Returns:
        ``{"col_overlap": ..., "col_subspace": ..., "row_overlap": ..., "row_subspace": ...}``.

    >>> m = overlap_metrics(torch.diag(torch.tensor([2.0, 1.0, 0.0])), torch.eye(3)[:, [2, 2, 2]], k=1)
    >>> {name: round(v, 4) for name, v in m.items()}
    {'col_overlap': 0.0, 'col_subspace': 0.0, 'row_overlap': 0.5774, 'row_subspace': 0.5774}
    """
    check_matrix(W_I, "W_I")
    check_matrix(dW, "dW")
    if W_I.shape != dW.shape:
        raise ValueError(f"`dW` must have W_I's shape {tuple(W_I.shape)}, got {tuple(dW.shape)}")
    check_rank(k, tuple(W_I.shape))
    f = working_dtype(W_I, dW)
    w, d = W_I.detach().to(f), dW.detach().to(f)
    w_norm, d_norm = float(torch.linalg.matrix_norm(w)), float(torch.linalg.matrix_norm(d))
    if w_norm == 0 or d_norm == 0:
        return dict.fromkeys(METRICS, 0.0)
    U, _, V = top_singular(w, k, svd=svd, seed=seed)
    return {
        "col_overlap": _frobenius_of_product(w.mT, d) / (w_norm * d_norm),
        "col_subspace": float(torch.linalg.matrix_norm(U.mT @ d)) / d_norm,  # ||U U^T dW|| = ||U^T dW||
        "row_overlap": _frobenius_of_product(w, d.mT) / (w_norm * d_norm),
        "row_subspace": float(torch.linalg.matrix_norm(d @ V)) / d_norm,  # ||V V^T dW^T|| = ||dW V||
    }


def analyze_updates(
    pairs: Iterable[tuple[str, Tensor, Tensor]], k: int = 16, *, seed: int = 0, svd: str = "exact"
) -> Iterator[dict[str, float | str]]:
    """Per matrix ``{"name", "stable_rank", "frobenius", "spectral", *overlap metrics}`` for ``(name, W_I, dW)`` pairs.

    Lazy: with :func:`~safetax.weights.io.iter_lora_deltas` (or the differences of
    :func:`~safetax.weights.io.iter_matrix_pairs`) only one pair is in memory at a time.
    ``k`` is capped at ``min(W_I.shape)`` for small matrices.
    """
    for name, W_I, dW in pairs:
        norms = delta_norms(dW)
        srank = 0.0 if norms["spectral"] == 0 else norms["frobenius"] ** 2 / norms["spectral"] ** 2
        overlaps = overlap_metrics(W_I, dW, min(k, *W_I.shape), seed=seed, svd=svd)
        yield {"name": name, "stable_rank": srank, **norms, **overlaps}
