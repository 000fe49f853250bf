"""Streaming weighted mean: memory O(model size), whatever the number of participants."""

from __future__ import annotations

import warnings

import numpy as np

from fedcare.strategies.base import F32


class StreamingMean:
    """Running sum of ``weight * vector``; :meth:`mean` divides by the total weight."""

    def __init__(self, size: int) -> None:
        self._acc = np.zeros(size, dtype=np.float32)
        self.total_weight = 0.0
        self.count = 0

    @property
    def size(self) -> int:
        """Length of the vectors folded in."""
        return int(self._acc.size)

    def fold(self, vector: F32, weight: float) -> None:
        """Add ``weight * vector`` to the running sum (vector must already be validated)."""
        if vector.shape != self._acc.shape:
            raise ValueError(f"vector of {vector.size} values, aggregate holds {self._acc.size}")
        if not weight > 0:
            raise ValueError("weight must be positive")
        # One fused pass, acc += w * v with no temporary: torch's add_ with alpha, on the same
        # memory (torch.from_numpy shares it). numpy needs a multiply and an add (two passes,
        # or blocks of a temporary: 0.5x the throughput of ``acc += v`` in bench/aggregate.py).
        import torch  # the coordinator imports torch anyway (models); not at module import

        with warnings.catch_warnings():
            # An upload's buffer may be read-only; add_ only reads it.
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            source = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
        torch.from_numpy(self._acc).add_(source, alpha=float(np.float32(weight)))
        self.total_weight += float(weight)
        self.count += 1

    def take_mean(self) -> F32:
        """The weighted mean, computed in place in the accumulator, which is handed over: no
        second model-sized array, and the instance takes no further folds (a closed round)."""
        if self.count == 0:
            raise ValueError("no vectors folded")
        acc = self._acc
        self._acc = np.zeros(0, dtype=np.float32)
        acc /= np.float32(self.total_weight)
        return acc

    def mean(self) -> F32:
        """The weighted mean of everything folded so far."""
        if self.count == 0:
            raise ValueError("no vectors folded")
        return (self._acc / np.float32(self.total_weight)).astype(np.float32, copy=False)
