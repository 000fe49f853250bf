"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks").

FedProx changes the *local* objective, not the server step: each site minimises
``loss(w) + (mu / 2) * ||w - w_global||^2``, which keeps its model near the global one when
sites' data differ. That term lives in :func:`fedcare.training.train_local` (its
``proximal_mu`` argument; a trainer passes ``spec.strategy.proximal_mu``). On the server
FedProx aggregates exactly like FedAvg.
"""

from __future__ import annotations

import numpy as np

from fedcare.strategies.base import F32
from fedcare.strategies.fedavg import FedAvg


def proximal_term(weights: F32, anchor: F32, mu: float) -> float:
    """``(mu / 2) * ||weights - anchor||^2``: the penalty FedProx adds to the local loss."""
    diff = np.subtract(weights, anchor, dtype=np.float64)
    return 0.5 * mu * float(np.dot(diff, diff))


class FedProx(FedAvg):
    """FedAvg on the server; the trainers add the proximal term with weight :attr:`mu`."""

    name = "fedprox"

    def __init__(self, mu: float) -> None:
        if not mu > 0:
            raise ValueError(f"FedProx needs mu > 0, got {mu}")
        self.mu = float(mu)
