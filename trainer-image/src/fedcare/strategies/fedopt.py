"""Server-side adaptive optimizers: FedAdagrad, FedAdam, FedYogi.

After Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR), Algorithm 2. The round's
sample-weighted mean delta is a pseudo-gradient ``d`` (pointing downhill); the server keeps a
first moment ``m`` and a second moment ``v`` across rounds and steps

    m <- beta1 * m + (1 - beta1) * d
    v <- v + d^2                                         (FedAdagrad)
    v <- beta2 * v + (1 - beta2) * d^2                   (FedAdam)
    v <- v - (1 - beta2) * d^2 * sign(v - d^2)           (FedYogi)
    w <- w + eta * m / (sqrt(v) + tau)

with ``m`` and ``v`` starting at zero and no bias correction, as in the paper's Algorithm 2.
Defaults follow Flower's strategies of the same names. The step functions are pure: they
return new arrays and leave their inputs alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from fedcare.strategies.base import F32, Strategy


class MomentState(NamedTuple):
    """The server optimizer's state after a step: weights and both moments."""

    weights: F32
    m: F32
    v: F32


def _step(global_weights: F32, m: F32, v: F32, eta: float, tau: float) -> F32:
    out = global_weights + np.float32(eta) * m / (np.sqrt(v) + np.float32(tau))
    return out.astype(np.float32, copy=False)


def _first_moment(m: F32, delta: F32, beta1: float) -> F32:
    b1 = np.float32(beta1)
    return (b1 * m + (np.float32(1.0) - b1) * delta).astype(np.float32, copy=False)


def fedadagrad_step(
    global_weights: F32, delta: F32, m: F32, v: F32, *, eta: float, beta1: float, tau: float
) -> MomentState:
    """One FedAdagrad step: ``v`` accumulates the squared pseudo-gradients."""
    m1 = _first_moment(m, delta, beta1)
    v1 = (v + delta * delta).astype(np.float32, copy=False)
    return MomentState(_step(global_weights, m1, v1, eta, tau), m1, v1)


def fedadam_step(
    global_weights: F32,
    delta: F32,
    m: F32,
    v: F32,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> MomentState:
    """One FedAdam step: ``v`` is an exponential moving average of the squared deltas."""
    b2 = np.float32(beta2)
    m1 = _first_moment(m, delta, beta1)
    v1 = (b2 * v + (np.float32(1.0) - b2) * delta * delta).astype(np.float32, copy=False)
    return MomentState(_step(global_weights, m1, v1, eta, tau), m1, v1)


def fedyogi_step(
    global_weights: F32,
    delta: F32,
    m: F32,
    v: F32,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> MomentState:
    """One FedYogi step: ``v`` moves toward ``d^2`` by a fixed fraction of ``d^2`` (additive)."""
    m1 = _first_moment(m, delta, beta1)
    d2 = delta * delta
    v1 = (v - np.float32(1.0 - beta2) * d2 * np.sign(v - d2)).astype(np.float32, copy=False)
    return MomentState(_step(global_weights, m1, v1, eta, tau), m1, v1)


class FedOpt(Strategy):
    """Common state of the server optimizers: ``m`` and ``v`` live across rounds.

    The state (two model-sized float32 vectors and the step count) is held in memory and
    stored with every model version (:meth:`state`), so a coordinator restarted mid-job goes
    on with the moments it had; a new job starts from zero moments.
    """

    #: Flower's defaults for each optimizer; subclasses override.
    default_eta: float = 0.1
    default_beta1: float = 0.9
    default_beta2: float = 0.99
    default_tau: float = 1e-3

    def __init__(
        self,
        eta: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        tau: float | None = None,
    ) -> None:
        self.eta = self.default_eta if eta is None else float(eta)
        self.beta1 = self.default_beta1 if beta1 is None else float(beta1)
        self.beta2 = self.default_beta2 if beta2 is None else float(beta2)
        self.tau = self.default_tau if tau is None else float(tau)
        if not self.eta > 0 or not self.tau > 0:
            raise ValueError(f"{self.name}: eta and tau must be positive")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"{self.name}: beta1 and beta2 must lie in [0, 1)")
        self.m: F32 | None = None
        self.v: F32 | None = None
        self.rounds = 0

    def _update(self, global_weights: F32, delta: F32, m: F32, v: F32) -> MomentState:
        raise NotImplementedError

    def apply(self, global_weights: F32, mean_delta: F32) -> F32:
        """Step the server optimizer with the round's mean delta; keeps ``m`` and ``v``."""
        if mean_delta.shape != global_weights.shape:
            raise ValueError(
                f"delta of {mean_delta.size} values for a model of {global_weights.size}"
            )
        m = self.m if self.m is not None else np.zeros_like(mean_delta, dtype=np.float32)
        v = self.v if self.v is not None else np.zeros_like(mean_delta, dtype=np.float32)
        if m.shape != mean_delta.shape:
            raise ValueError(f"{self.name}: the model changed size between rounds")
        new, self.m, self.v = self._update(global_weights, mean_delta, m, v)
        self.rounds += 1
        return new

    def state(self) -> dict[str, F32]:
        """The moments and the step count (empty before the first step)."""
        if self.m is None or self.v is None:
            return {}
        return {"m": self.m, "v": self.v, "steps": np.array([self.rounds], dtype=np.float32)}

    def load_state(self, state: Mapping[str, F32]) -> None:
        """Take up stored moments (an empty state: zero moments, as at a job's start)."""
        if not state:
            self.m = self.v = None
            self.rounds = 0
            return
        if set(state) != {"m", "v", "steps"} or state["m"].shape != state["v"].shape:
            raise ValueError(f"{self.name}: malformed server optimizer state {sorted(state)}")
        self.m = np.ascontiguousarray(state["m"], dtype=np.float32).reshape(-1)
        self.v = np.ascontiguousarray(state["v"], dtype=np.float32).reshape(-1)
        self.rounds = int(state["steps"].reshape(-1)[0])


class FedAdagrad(FedOpt):
    """FedAdagrad: Adagrad on the server (Flower's defaults: eta 0.1, no momentum, tau 1e-3)."""

    name = "fedadagrad"
    default_eta = 0.1
    default_beta1 = 0.0

    def _update(self, global_weights: F32, delta: F32, m: F32, v: F32) -> MomentState:
        return fedadagrad_step(
            global_weights, delta, m, v, eta=self.eta, beta1=self.beta1, tau=self.tau
        )


class FedAdam(FedOpt):
    """FedAdam: Adam on the server (defaults eta 0.1, beta1 0.9, beta2 0.99, tau 1e-3)."""

    name = "fedadam"

    def _update(self, global_weights: F32, delta: F32, m: F32, v: F32) -> MomentState:
        return fedadam_step(
            global_weights,
            delta,
            m,
            v,
            eta=self.eta,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
        )


class FedYogi(FedOpt):
    """FedYogi: Yogi on the server (defaults eta 0.01, beta1 0.9, beta2 0.99, tau 1e-3)."""

    name = "fedyogi"
    default_eta = 0.01

    def _update(self, global_weights: F32, delta: F32, m: F32, v: F32) -> MomentState:
        return fedyogi_step(
            global_weights,
            delta,
            m,
            v,
            eta=self.eta,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
        )
