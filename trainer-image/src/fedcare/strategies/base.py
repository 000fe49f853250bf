"""The Strategy interface: how the server turns the round's mean update into a new model."""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence

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
