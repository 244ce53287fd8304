"""OrthoMerge and the orthogonality regularisers (Xue & Mirzasoleiman 2025, sections 5.1-5.2).

Safety LoRA updates ``dW`` that overlap little with the top singular subspaces of the
initial weight ``W_I`` cost less reasoning. Two ways to enforce that:

* after training, project the update out of those subspaces (**OrthoMerge**,
  :func:`ortho_merge`);
* during training, penalise the overlap (**Regularization-col / -both**,
  :class:`OrthoRegularizer`).

All functions are pure: float math in float32 (float64 for float64 input), results in
the input's dtype, and ``d x d`` projectors are never formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

from safetax.weights.svd import check_matrix, top_singular, working_dtype

MODES = ("col", "both")
MERGE_MODES = (*MODES, "none")
EPS = 1e-30  # keeps 0/0 at zero (LoRA's B starts at 0); far below any real ||dW||^2 in fp32


def lora_delta(A: Tensor, B: Tensor, alpha: float, rank: int) -> Tensor:
    """The LoRA update ``dW = (alpha / rank) * B @ A`` (PEFT shapes; not rsLoRA).

    Args:
        A: ``lora_A.weight``, ``rank x d_in``.
        B: ``lora_B.weight``, ``d_out x rank``.
        alpha: ``lora_alpha``.
        rank: ``r``.

    Returns:
        ``d_out x d_in`` in ``B``'s dtype.

    >>> lora_delta(torch.ones(2, 3), torch.ones(4, 2), alpha=4, rank=2).shape
    torch.Size([4, 3])
    >>> float(lora_delta(torch.ones(2, 3), torch.ones(4, 2), alpha=4, rank=2)[0, 0])
    4.0
    """
    check_matrix(A, "A")
    check_matrix(B, "B")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"`rank` must be a positive int, got {rank!r}")
    if A.shape[0] != rank or B.shape[1] != rank:
        raise ValueError(f"`rank`={rank} must equal A.shape[0] ({A.shape[0]}) and B.shape[1] ({B.shape[1]})")
    f = working_dtype(A, B)
    return ((alpha / rank) * (B.to(f) @ A.to(f))).to(B.dtype)


def _check_merge_args(W: Tensor, dW: Tensor, lam: float, mode: str, modes: tuple[str, ...]) -> None:
    check_matrix(W, "W")
    check_matrix(dW, "dW")
    if mode not in modes:
        raise ValueError(f"`mode` must be one of {list(modes)}, got {mode!r}")
    if isinstance(lam, bool) or not isinstance(lam, Real) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"`lam` must be a finite number > 0, got {lam!r}")
    if W.shape != dW.shape:
        raise ValueError(f"`dW` must have W's shape {tuple(W.shape)}, got {tuple(dW.shape)}")


def _check_basis(basis: tuple[Tensor, Tensor, Tensor], shape: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(basis, tuple) or len(basis) != 3:
        raise ValueError("`basis` must be a tuple (U_k, S_k, V_k) as top_singular returns")
    U, S, V = basis
    if U.ndim != 2 or V.ndim != 2 or U.shape[0] != shape[0] or V.shape[0] != shape[1] or U.shape[1] != V.shape[1]:
        raise ValueError(
            f"`basis` must hold U_k ({shape[0]} x k) and V_k ({shape[1]} x k) for a {tuple(shape)} weight, "
            f"got {tuple(U.shape)} and {tuple(V.shape)}"
        )
    return U, S, V


def ortho_merge(
    W: Tensor,
    dW: Tensor,
    k: int = 64,  # paper, section 5.1: top-64 singular vectors
    lam: float = 1.0,
    mode: str = "col",
    *,
    seed: int = 0,
    svd: str = "exact",
    basis: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """OrthoMerge: the update projected out of ``W``'s top-k singular subspaces.

    With ``U_k``, ``V_k`` the top-k left/right singular vectors of ``W``:

    * ``"col"`` (OrthoMerge-col): ``dW' = lam (I - U_k U_k^T) dW``, so ``U_k^T dW' = 0``;
    * ``"both"`` (OrthoMerge-both): ``dW' = lam (I - U_k U_k^T) dW (I - V_k V_k^T)``,
      so also ``dW' V_k = 0``.

    Computed in low-rank form, ``X = dW - U_k (U_k^T dW)``, then ``X - (X V_k) V_k^T``:
    ``O(d^2 k)`` time, no ``d x d`` projector.

    Args:
        W: the initial weight ``W_I``, ``d_out x d_in``.
        dW: the update (``lora_delta`` or ``W_tuned - W_I``), same shape.
        k: how many singular directions to project out.
        lam: scale of the projected update (the paper's lambda; 1 keeps it).
        mode: ``"col"`` or ``"both"``.
        seed: seed of the randomized SVD (``svd="randomized"`` only).
        svd: ``"exact"`` (default: the paper's exact top-k subspace), ``"randomized"`` or
            ``"full"`` (see :func:`~safetax.weights.svd.top_singular`).
        basis: precomputed ``(U_k, S_k, V_k)`` of ``W``, e.g. shared by several updates;
            ``k``, ``seed`` and ``svd`` are then unused.

    Returns:
        ``dW'`` (not ``W + dW'``; see :func:`merge_weight`) in ``dW``'s dtype.

    >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    >>> ortho_merge(W, torch.ones(3, 3), k=1).round(decimals=4) + 0.0  # + 0.0: no -0.
    tensor([[0., 0., 0.],
            [1., 1., 1.],
            [1., 1., 1.]])
    >>> ortho_merge(W, torch.ones(3, 3), k=1, mode="both").round(decimals=4) + 0.0
    tensor([[0., 0., 0.],
            [0., 1., 1.],
            [0., 1., 1.]])
    """
    _check_merge_args(W, dW, lam, mode, MODES)
    U, _, V = _check_basis(basis, tuple(W.shape)) if basis is not None else top_singular(W, k, svd=svd, seed=seed)
    f = working_dtype(W, dW, U)
    U, V = U.to(f), V.to(f)
    x = dW.to(f)
    x = x - U @ (U.mT @ x)
    if mode == "both":
        x = x - (x @ V) @ V.mT
    return (lam * x).to(dW.dtype)


def merge_weight(
    W: Tensor,
    dW: Tensor,
    k: int = 64,
    lam: float = 1.0,
    mode: str = "col",
    *,
    seed: int = 0,
    svd: str = "exact",
    basis: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """The merged weight ``W + ortho_merge(W, dW, ...)``, or ``W + dW`` for ``mode="none"``, in ``W``'s dtype.

    >>> merge_weight(torch.eye(2), torch.ones(2, 2), k=1, mode="none")
    tensor([[2., 1.],
            [1., 2.]])
    """
    _check_merge_args(W, dW, lam, mode, MERGE_MODES)
    delta = dW if mode == "none" else ortho_merge(W, dW, k, lam, mode, seed=seed, svd=svd, basis=basis)
    f = working_dtype(W, dW)
    return (W.to(f) + delta.to(f)).to(W.dtype)


@dataclass(frozen=True)
class OrthoRegularizer:
    """Orthogonality penalties of section 5.2 against one frozen weight ``W_I``.

    * Regularization-col: ``beta (||W_I^T dW||_F / (||W_I||_F ||dW||_F))^2``
    * Regularization-both: the col term plus ``beta (||W_I dW^T||_F / (||W_I||_F ||dW||_F))^2``.

    The paper prints the second term as ``||dW^T W_I||_F``; that is the transpose of
    ``W_I^T dW`` and so equals the first term. The row-space overlap it means,
    consistent with the paper's metric (3), is ``||W_I dW^T||_F``, which is what is
    implemented here.

    To save memory ``W_I`` is replaced by its rank-k truncated SVD ``U_k S_k V_k^T``:
    ``||W_I^T dW||_F ~= ||diag(S_k) U_k^T dW||_F`` and ``||W_I dW^T||_F ~=
    ||diag(S_k) V_k^T dW^T||_F`` (lower bounds; exact for rank-k ``W_I``), while the
    denominator keeps the full ``||W_I||_F``. Both penalties are differentiable in
    ``dW`` (gradients flow into LoRA's A and B), scale-invariant in ``dW``, and 0 with a
    finite (zero) gradient at ``dW = 0``.

    Attributes:
        U: ``d_out x k`` top left singular vectors of ``W_I``.
        S: ``k`` top singular values.
        V: ``d_in x k`` top right singular vectors.
        w_norm: ``||W_I||_F`` of the full matrix.
    """

    U: Tensor
    S: Tensor
    V: Tensor
    w_norm: float

    def __post_init__(self) -> None:
        k = self.U.shape[-1]
        if self.U.ndim != 2 or self.V.ndim != 2 or self.S.shape != (k,) or self.V.shape[1] != k:
            shapes = ", ".join(str(tuple(t.shape)) for t in (self.U, self.S, self.V))
            raise ValueError(f"`U`, `S`, `V` must be d_out x k, k, d_in x k; got {shapes}")
        if not math.isfinite(self.w_norm) or self.w_norm <= 0:
            raise ValueError(f"`w_norm` must be a finite number > 0, got {self.w_norm!r}")

    @classmethod
    def from_weight(cls, W: Tensor, k: int = 64, *, seed: int = 0, svd: str = "exact") -> OrthoRegularizer:
        """Build from a frozen weight: its top-k SVD (``svd`` as in :func:`~safetax.weights.svd.top_singular`) and its Frobenius norm."""
        U, S, V = top_singular(W, k, svd=svd, seed=seed)
        return cls(U, S, V, float(torch.linalg.matrix_norm(W.detach().to(U.dtype))))

    def to(self, device: torch.device | str) -> OrthoRegularizer:
        """The same regulariser with its factors on ``device``."""
        return OrthoRegularizer(self.U.to(device), self.S.to(device), self.V.to(device), self.w_norm)

    def penalty(self, dW: Tensor, mode: str = "col", beta: float = 1.0) -> Tensor:
        """``beta`` times the squared normalised overlap(s) of ``dW`` with ``W_I`` (see the class doc).

        >>> reg = OrthoRegularizer.from_weight(torch.diag(torch.tensor([2.0, 1.0, 0.0])), k=2)
        >>> float(reg.penalty(torch.zeros(3, 3)))
        0.0
        >>> round(float(reg.penalty(torch.eye(3)[:, [0, 0, 0]] * 5)), 4)  # (2/sqrt(5))^2
        0.8
        """
        _check_penalty_args(mode, beta)
        f = working_dtype(dW, self.U)
        x = dW.to(f)
        col = (self.S.to(f)[:, None] * (self.U.to(f).mT @ x)).square().sum()
        row = (x @ self.V.to(f) * self.S.to(f)).square().sum() if mode == "both" else None
        return self._combine(col, row, x.square().sum(), beta)

    def penalty_lora(self, A: Tensor, B: Tensor, scale: float, mode: str = "col", beta: float = 1.0) -> Tensor:
        """:meth:`penalty` of ``dW = scale * B @ A`` from the LoRA factors, never forming ``dW``.

        ``U_k^T dW = scale (U_k^T B) A``, ``dW V_k = scale B (A V_k)`` and
        ``||dW||_F^2 = scale^2 <B^T B, A A^T>``: memory ``O((d_in + d_out)(k + r))``.
        """
        _check_penalty_args(mode, beta)
        f = working_dtype(A, B, self.U)
        a, b, S = A.to(f), B.to(f), self.S.to(f)
        col = (S[:, None] * ((self.U.to(f).mT @ b) @ a)).square().sum() * scale**2
        row = (b @ (a @ self.V.to(f)) * S).square().sum() * scale**2 if mode == "both" else None
        sq = ((b.mT @ b) * (a @ a.mT)).sum().clamp_min(0) * scale**2
        return self._combine(col, row, sq, beta)

    def _combine(self, col: Tensor, row: Tensor | None, dw_sq: Tensor, beta: float) -> Tensor:
        denom = self.w_norm**2 * dw_sq + EPS
        total = col if row is None else col + row
        return beta * total / denom


def _check_penalty_args(mode: str, beta: float) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}")
    if isinstance(beta, bool) or not isinstance(beta, Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"`beta` must be a finite number >= 0, got {beta!r}")
