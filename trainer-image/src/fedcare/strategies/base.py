"""The Strategy interface: how the server turns the round's mean update into a new model."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class Strategy(ABC):
    """Server-side aggregation behind one interface.

    Trainers send *deltas* (local weights minus the global weights they started from). The
    coordinator folds them into a sample-weighted mean as they arrive (:class:`StreamingMean`),
    then calls :meth:`apply` once per round.
    """

    #: Registry name, as written in ``spec.strategy.name``.
    name: str = ""

    @abstractmethod
    def apply(self, global_weights: F32, mean_delta: F32) -> F32:
        """Return the next global weights from the current ones and the round's mean delta."""
