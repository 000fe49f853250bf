"""Krum and Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent").

With ``n`` updates of which at most ``f`` are Byzantine (``n >= 2f + 3``), each update's
score is the sum of its squared Euclidean distances to its ``n - f - 2`` nearest other
updates. Krum keeps the single update with the lowest score; Multi-Krum averages the ``m``
lowest-scored ones. Ties go to the earlier update. Unweighted by design.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedcare.strategies.base import F32, RobustStrategy, stack_updates


def krum_scores(deltas: Sequence[F32], byzantine: int) -> npt.NDArray[np.float64]:
    """Each update's Krum score: summed squared distance to its ``n - f - 2`` nearest others."""
    rows = stack_updates(deltas).astype(np.float64)
    n = rows.shape[0]
    if byzantine < 0:
        raise ValueError(f"byzantine must be >= 0, got {byzantine}")
    if n < 2 * byzantine + 3:
        raise ValueError(
            f"Krum with f={byzantine} needs at least 2f+3 = {2 * byzantine + 3} updates, got {n}"
        )
    dist = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        diff = rows - rows[i]
        dist[i] = np.einsum("ij,ij->i", diff, diff)
    nearest = n - byzantine - 2
    scores = np.empty(n, dtype=np.float64)
    for i in range(n):
        others = np.delete(dist[i], i)
        scores[i] = np.sort(others)[:nearest].sum()
    return scores


def krum_select(deltas: Sequence[F32], byzantine: int, select: int) -> list[int]:
    """Indices of the ``select`` lowest-scored updates, best first (ties: lower index)."""
    scores = krum_scores(deltas, byzantine)
    if not 1 <= select <= len(scores):
        raise ValueError(f"cannot select {select} of {len(scores)} updates")
    order = np.argsort(scores, kind="stable")
    return [int(i) for i in order[:select]]


def krum(deltas: Sequence[F32], byzantine: int) -> F32:
    """The single update with the lowest Krum score."""
    best = krum_select(deltas, byzantine, 1)[0]
    return np.asarray(deltas[best], dtype=np.float32).copy()


def multi_krum(deltas: Sequence[F32], byzantine: int, select: int | None = None) -> F32:
    """The unweighted mean of the ``select`` lowest-scored updates (default ``n - f``)."""
    m = len(deltas) - byzantine if select is None else select
    chosen = krum_select(deltas, byzantine, m)
    rows = np.stack([deltas[i] for i in chosen])
    out: F32 = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
    return out


class Krum(RobustStrategy):
    """Moves the global model by the one update Krum selects, tolerating :attr:`byzantine`."""

    name = "krum"

    def __init__(self, byzantine: int) -> None:
        if byzantine < 0:
            raise ValueError(f"byzantine must be >= 0, got {byzantine}")
        self.byzantine = int(byzantine)

    def aggregate(self, deltas: Sequence[F32]) -> F32:
        """The Krum-selected delta."""
        return krum(deltas, self.byzantine)


class MultiKrum(Krum):
    """Moves the global model by the mean of the ``select`` best-scored updates."""

    name = "multi-krum"

    def __init__(self, byzantine: int, select: int | None = None) -> None:
        super().__init__(byzantine)
        if select is not None and select < 1:
            raise ValueError(f"multi-krum must select at least 1 update, got {select}")
        self.select = select

    def aggregate(self, deltas: Sequence[F32]) -> F32:
        """Mean of the Multi-Krum selection (``select``, default ``n - byzantine``)."""
        return multi_krum(deltas, self.byzantine, self.select)
