"""Dynamic frozen ratio (RPSA, section 4): freeze more when reasoning and safety gradients conflict.

At each step the conflict ``c`` is the share of non-zero-Fisher entries where the reasoning
gradient ``g_R`` and the safety gradient ``g_S`` point in opposite directions; the frozen
ratio ``k`` follows ``c`` relative to its recent history::

    k = clip((c - mean_W) / (2 * std_W) + 0.5, 0, 1)

with ``mean_W``/``std_W`` the mean and (population) standard deviation of the past ``W``
values of ``c``, the current one excluded (the paper's Eq. 7: "the past W conflict values
... serve as a baseline" against which the current one is normalised): ``k = 0.5`` at the
recent mean, 1 at one standard deviation above it or more, 0 at one below it or less.
The first ``W`` measurements, before ``W`` past values exist, give ``k = 0.5``.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor


def conflict_counts(g_reasoning: dict[str, Tensor], g_safety: dict[str, Tensor], nonzero: dict[str, Tensor]) -> tuple[int, int]:
    """(conflicting entries, non-zero-Fisher entries): the numerator and denominator of
    :func:`gradient_conflict`. Under FSDP each rank counts on its shards and the counts are summed."""
    conflicts = total = 0
    for name, m in nonzero.items():
        total += int(m.sum())
        if name not in g_reasoning or name not in g_safety:
            continue
        opposite = (torch.sign(g_reasoning[name]) * torch.sign(g_safety[name])) < 0
        conflicts += int((opposite & m.to(opposite.device)).sum())
    return conflicts, total


def gradient_conflict(g_reasoning: dict[str, Tensor], g_safety: dict[str, Tensor],
                      nonzero: dict[str, Tensor]) -> float:
    """Share of non-zero-Fisher entries whose reasoning and safety gradients have opposite signs.

    Counted over the entries where ``nonzero[name]`` is ``True`` (names absent from ``nonzero``
    are ignored). An entry where either gradient is exactly 0, or a parameter that got no
    gradient at all (absent from ``g_reasoning`` or ``g_safety``), counts as not conflicting
    (it is still in the denominator).

    >>> import torch
    >>> gr, gs = {"w": torch.tensor([1.0, -1.0, 2.0, 0.0])}, {"w": torch.tensor([-1.0, -3.0, -1.0, 5.0])}
    >>> gradient_conflict(gr, gs, {"w": torch.tensor([True, True, False, True])})
    0.3333333333333333

    Raises:
        ValueError: if no entry is non-zero.
    """
    conflicts, total = conflict_counts(g_reasoning, g_safety, nonzero)
    if total == 0:
        raise ValueError("gradient_conflict: no non-zero-Fisher entry to count over")
    return conflicts / total


class DynamicRatio:
    """Frozen ratio ``k`` from the conflict history (see module doc).

    ``update(c)`` returns ``initial`` while fewer than ``window`` past values exist (the
    first ``window`` calls), else ``clip((c - mean) / (2 std) + 0.5, 0, 1)`` over the past
    ``window`` values, ``c`` excluded (population std; ``k = 0.5`` when ``std == 0``); then
    it appends ``c`` to the window. ``history`` keeps ``(step, c, k)``.

    >>> r = DynamicRatio(window=3)
    >>> [round(r.update(c), 4) for c in (0.2, 0.4, 0.6, 0.5)]
    [0.5, 0.5, 0.5, 0.8062]
    """

    def __init__(self, window: int = 20, initial: float = 0.5) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0.0 <= initial <= 1.0:
            raise ValueError(f"initial must be in [0, 1], got {initial}")
        self.window = window
        self.initial = initial
        self._values: deque[float] = deque(maxlen=window)
        self.history: list[tuple[int, float, float]] = []

    def update(self, c: float, step: int | None = None) -> float:
        """Record conflict ``c`` (at ``step``, default: the number of earlier updates) and return ``k``."""
        if len(self._values) < self.window:  # warm-up: W past values do not exist yet
            k = self.initial
        else:  # the baseline is the past W values; c joins the window only afterwards
            mean = sum(self._values) / len(self._values)
            std = math.sqrt(sum((v - mean) ** 2 for v in self._values) / len(self._values))
            k = 0.5 if std == 0 else min(1.0, max(0.0, (c - mean) / (2 * std) + 0.5))
        self._values.append(float(c))
        self.history.append((len(self.history) if step is None else step, float(c), k))
        return k
