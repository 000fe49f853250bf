"""Coordinate-wise trimmed mean (Yin et al. 2018, "Byzantine-Robust Distributed Learning").

For each coordinate, the ``k = floor(beta * n)`` largest and ``k`` smallest of the ``n``
values are dropped and the rest averaged. Unweighted by design.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedcare.strategies.base import F32, RobustStrategy, stack_updates


def trimmed_count(n: int, beta: float) -> int:
    """How many values are dropped at *each* end: ``floor(beta * n)``."""
    return math.floor(beta * n + 1e-9)  # 0.2 * 5 == 1.0000000000000002; 0.29 * 100 < 29


def trimmed_mean(deltas: Sequence[F32], beta: float) -> F32:
    """The coordinate-wise ``beta``-trimmed mean of ``deltas`` (0 <= beta < 0.5)."""
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"trim fraction must lie in [0, 0.5), got {beta}")
    rows = stack_updates(deltas)
    n = rows.shape[0]
    k = trimmed_count(n, beta)
    kept = np.sort(rows, axis=0)[k : n - k]
    out: F32 = kept.mean(axis=0, dtype=np.float64).astype(np.float32)
    return out


class TrimmedMean(RobustStrategy):
    """Moves the global model by the coordinate-wise trimmed mean of the updates."""

    name = "trimmed-mean"

    def __init__(self, beta: float) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError(f"trim fraction must lie in [0, 0.5), got {beta}")
        self.beta = float(beta)

    def aggregate(self, deltas: Sequence[F32]) -> F32:
        """Coordinate-wise trimmed mean with fraction :attr:`beta` at each end."""
        return trimmed_mean(deltas, self.beta)
