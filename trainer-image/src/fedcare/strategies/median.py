"""Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed Learning").

Each coordinate of the aggregate is the median of that coordinate over the round's updates
(the mean of the two middle values when their number is even). Unweighted by design.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcare.strategies.base import F32, RobustStrategy, stack_updates


def coordinate_median(deltas: Sequence[F32]) -> F32:
    """The coordinate-wise median of ``deltas`` (unweighted)."""
    return np.median(stack_updates(deltas), axis=0).astype(np.float32, copy=False)


class Median(RobustStrategy):
    """Moves the global model by the coordinate-wise median of the updates."""

    name = "median"

    def aggregate(self, deltas: Sequence[F32]) -> F32:
        """Coordinate-wise median."""
        return coordinate_median(deltas)
