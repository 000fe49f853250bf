"""The Strategy interface: how the server turns the round's mean update into a new model."""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class Strategy(ABC):  # noqa: B024 - each subclass implements one of the two methods
    """Server-side aggregation behind one interface.

    Trainers send *deltas* (local weights minus the global weights they started from). The
    coordinator folds them into a sample-weighted mean as they arrive (:class:`StreamingMean`),
    then calls :meth:`apply` once per round.
    """

    #: Registry name, as written in ``spec.strategy.name``.
    name: str = ""
    #: Robust strategies (median, trimmed mean, Krum) look at every update, so the coordinator
    #: keeps them all (memory O(participants x model)) and calls :meth:`apply_individual`;
    #: the others get the streaming weighted mean and :meth:`apply`.
    needs_individual_updates: bool = False

    def apply(self, global_weights: F32, mean_delta: F32) -> F32:
        """Return the next global weights from the current ones and the round's mean delta."""
        raise NotImplementedError(f"{self.name} aggregates individual updates")

    def apply_individual(
        self, global_weights: F32, deltas: Sequence[F32], weights: Sequence[float]
    ) -> F32:
        """Return the next global weights from every accepted delta and its sample weight."""
        raise NotImplementedError(f"{self.name} aggregates a streaming mean")

    def state(self) -> dict[str, F32]:
        """What the strategy carries from round to round (stored with each model version, so
        that a restarted coordinator goes on with it); stateless strategies carry nothing."""
        return {}

    def load_state(self, state: Mapping[str, F32]) -> None:
        """Take up a :meth:`state` stored with the version a restarted coordinator resumes."""
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")


def stack_updates(deltas: Sequence[F32]) -> npt.NDArray[np.float32]:
    """The deltas as rows of one ``(n, size)`` float32 matrix, after checking they agree."""
    if not deltas:
        raise ValueError("no updates to aggregate")
    size = deltas[0].size
    for i, d in enumerate(deltas):
        if d.ndim != 1 or d.size != size:
            raise ValueError(f"update {i} has shape {d.shape}, expected ({size},)")
    return np.stack(deltas).astype(np.float32, copy=False)


class RobustStrategy(Strategy):
    """Base of the robust (Byzantine-tolerant) strategies: median, trimmed mean, Krum.

    They look at every update separately and are **unweighted by design**: a site's sample
    count is self-reported, so weighting by it would let one liar outvote everyone by claiming
    many samples. Subclasses implement :meth:`aggregate` (the robust delta); the next global
    weights are the current ones moved by it.
    """

    needs_individual_updates = True

    def aggregate(self, deltas: Sequence[F32]) -> F32:
        """The robust aggregate of the deltas."""
        raise NotImplementedError

    def apply_individual(
        self, global_weights: F32, deltas: Sequence[F32], weights: Sequence[float]
    ) -> F32:
        """Global weights moved by the robust aggregate; ``weights`` are ignored (unweighted)."""
        if len(weights) != len(deltas):
            raise ValueError(f"{len(deltas)} updates but {len(weights)} weights")
        agg = self.aggregate(deltas)
        if agg.shape != global_weights.shape:
            raise ValueError(f"updates of {agg.size} values for a model of {global_weights.size}")
        return np.add(global_weights, agg, dtype=np.float32)
