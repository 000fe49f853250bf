"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the local models."""

from __future__ import annotations

import numpy as np

from fedcare.strategies.base import F32, Strategy


def fedavg_step(global_weights: F32, mean_delta: F32) -> F32:
    """Weighted mean of local models == global + weighted mean of their deltas."""
    return np.add(global_weights, mean_delta, dtype=np.float32)


class FedAvg(Strategy):
    """Sample-weighted federated averaging."""

    name = "fedavg"

    def apply(self, global_weights: F32, mean_delta: F32) -> F32:
        """Global weights moved by the mean delta."""
        return fedavg_step(global_weights, mean_delta)
