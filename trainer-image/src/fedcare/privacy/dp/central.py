"""Central differential privacy (``privacy.dp.mode: central``): DP-FedAvg on the coordinator.

Each round the coordinator clips every site's update ``delta_i`` to L2 norm ``C``
(``maxGradNorm``), forms the weighted sum ``S = sum_i p_i * clip(delta_i)`` and adds
Gaussian noise of standard deviation ``sigma * C`` (``sigma`` = ``noiseMultiplier``) to
``S`` before dividing by the (public) total weight. After McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models" (DP-FedAvg).

**Privacy unit and sensitivity.** The unit is a *site*: neighbouring inputs differ in one
site's whole update, replaced by a zero update ("zero-out" adjacency, Kairouz et al. 2021;
equivalent to add/remove of a site when the set of participants is public, which it is: the
coordinator knows who connected). With weights ``p_i <= 1`` fixed before the round and each
update clipped to ``C``, changing one site's contribution moves ``S`` by at most
``max_i p_i * C``: that is the L2 sensitivity. Noise of standard deviation ``sigma * C``
therefore gives a Gaussian mechanism with noise multiplier at least ``sigma``; the accountant
assumes exactly ``sigma``, which is tight for ``p_i = 1`` (plain sum of clipped updates, the
recommended weighting) and conservative for sample-count weights ``p_i = n_i / N < 1``
(:func:`noise_std` returns the smallest standard deviation that keeps multiplier ``sigma``
for given weights). Under replace-one adjacency the sensitivity doubles, i.e. the effective
multiplier is ``sigma / 2``. The weights must not depend on the updates themselves.

**Accounting.** One Gaussian mechanism per round, composed over rounds by Rényi DP: at order
``alpha``, ``R`` rounds cost ``R * alpha / (2 sigma^2)`` when every site takes part
(``sample_rate = 1``), converted to ``(epsilon, delta)`` by Balle et al. 2020, Theorem 21
(Opacus' conversion, over Opacus' default orders). That case needs neither torch nor Opacus,
so the coordinator can run it without the ``train`` extra. A sample rate below 1
(amplification by subsampling: valid only if each site is included independently with that
probability and the draw is kept secret) and the PRV accountant use Opacus.

Central DP protects the *released models* (anyone who sees model versions, including other
sites); it does not hide an update from the coordinator, which clips and noises it. Combine
with secure aggregation for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedcare.privacy.dp.errors import DpError
from fedcare.spec.privacy import Accountant

__all__ = [
    "RDP_ORDERS",
    "CentralAccountant",
    "add_gaussian_noise",
    "clip_update",
    "gaussian_rdp_epsilon",
    "noise_std",
]

#: Rényi orders searched by the RDP-to-DP conversion (Opacus' ``RDPAccountant`` defaults).
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))

FloatArray = npt.NDArray[np.floating]


def clip_update(delta: FloatArray, max_norm: float) -> tuple[FloatArray, bool]:
    """``delta`` scaled down to L2 norm ``max_norm`` if longer; ``(clipped, was_clipped)``.

    The norm is computed in float64; the result keeps ``delta``'s dtype and is a new array
    (``delta`` is not modified). Raises ``ValueError`` for a non-finite update or a
    ``max_norm`` that is not a positive finite number.
    """
    if not (math.isfinite(max_norm) and max_norm > 0.0):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm}")
    flat = np.asarray(delta)
    norm = float(np.linalg.norm(flat.ravel().astype(np.float64, copy=False)))
    if not math.isfinite(norm):
        raise ValueError("cannot clip an update with non-finite values")
    if norm <= max_norm:
        return flat.copy(), False
    scaled = flat.astype(np.float64) * (max_norm / norm)
    return scaled.astype(flat.dtype, copy=False), True


def noise_std(sigma: float, max_norm: float, weights: Sequence[float] | None = None) -> float:
    """Standard deviation of the noise on ``sum_i p_i * clip(delta_i)`` for multiplier
    ``sigma``: ``sigma * max_norm * max_i p_i`` (``sigma * max_norm`` without weights).

    Raises ``ValueError`` for a weight outside ``(0, 1]``.
    """
    top = 1.0
    if weights is not None and len(weights) > 0:
        if any(not (0.0 < w <= 1.0) for w in weights):
            raise ValueError("central DP weights must lie in (0, 1]")
        top = max(weights)
    return sigma * max_norm * top


def add_gaussian_noise(
    sum_vector: FloatArray,
    sigma: float,
    max_norm: float,
    rng: np.random.Generator,
    max_weight: float = 1.0,
) -> FloatArray:
    """``sum_vector`` plus i.i.d. Gaussian noise of standard deviation
    ``sigma * max_norm * max_weight`` in every coordinate (a new array, same dtype).

    ``sum_vector`` is the sum of the clipped updates weighted by ``p_i <= max_weight <= 1``
    (see the module docstring for why that makes ``sigma`` the noise multiplier). ``rng``
    must be seeded from the OS (``np.random.default_rng()`` with no seed): noise from a seed
    anyone else knows can be subtracted again. The noise is drawn in float64.
    """
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    if not (0.0 < max_weight <= 1.0):
        raise ValueError(f"max_weight must lie in (0, 1], got {max_weight}")
    if not (math.isfinite(max_norm) and max_norm > 0.0):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm}")
    arr = np.asarray(sum_vector)
    std = sigma * max_norm * max_weight
    noisy = arr.astype(np.float64) + rng.normal(0.0, std, size=arr.shape)
    return noisy.astype(arr.dtype, copy=False)


def gaussian_rdp_epsilon(
    sigma: float, rounds: int, delta: float, orders: Sequence[float] = RDP_ORDERS
) -> float:
    """Epsilon at ``delta`` of ``rounds`` Gaussian mechanisms with noise multiplier ``sigma``
    (no subsampling): RDP ``rounds * alpha / (2 sigma^2)`` at each order, converted by Balle
    et al. 2020, Theorem 21, minimized over ``orders``. 0 for no rounds, ``inf`` for
    ``sigma == 0``."""
    if rounds <= 0:
        return 0.0
    if sigma <= 0.0:
        return math.inf
    best = math.inf
    for alpha in orders:
        rdp = rounds * alpha / (2.0 * sigma * sigma)
        eps = (
            rdp - (math.log(delta) + math.log(alpha)) / (alpha - 1) + math.log((alpha - 1) / alpha)
        )
        best = min(best, eps)
    return best


class CentralAccountant:
    """Epsilon of a job under central DP, one :meth:`step` per aggregated round."""

    def __init__(
        self,
        noise_multiplier: float,
        delta: float,
        accountant: Accountant | str = Accountant.RDP,
        sample_rate: float = 1.0,
    ) -> None:
        """Account for rounds with ``noise_multiplier`` at ``delta``.

        ``sample_rate`` is the default per-round probability that a given site takes part
        (1.0: every connected site does). Raises :class:`DpError` for parameters that give
        no privacy.
        """
        if not (math.isfinite(noise_multiplier) and noise_multiplier > 0.0):
            raise DpError(f"central DP needs a noise multiplier > 0, got {noise_multiplier}")
        if not (0.0 < delta < 1.0):
            raise DpError(f"delta must lie in (0, 1), got {delta}")
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.accountant = Accountant(accountant)
        self.sample_rate = self._check_rate(sample_rate)
        #: ``(noise_multiplier, sample_rate, rounds)`` runs, as Opacus' accountants keep them.
        self.history: list[tuple[float, float, int]] = []

    @staticmethod
    def _check_rate(rate: float) -> float:
        if not (0.0 < rate <= 1.0):
            raise DpError(f"sample rate must lie in (0, 1], got {rate}")
        return float(rate)

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return sum(k for _, _, k in self.history)

    def _extended(self, rounds: int, rate: float) -> list[tuple[float, float, int]]:
        history = list(self.history)
        if history and history[-1][:2] == (self.noise_multiplier, rate):
            history[-1] = (self.noise_multiplier, rate, history[-1][2] + rounds)
        elif rounds:
            history.append((self.noise_multiplier, rate, rounds))
        return history

    def step(self, sample_rate: float | None = None) -> None:
        """Account for one more noised aggregate (``sample_rate`` overrides the default)."""
        rate = self.sample_rate if sample_rate is None else self._check_rate(sample_rate)
        self.history = self._extended(1, rate)

    def _epsilon(self, history: list[tuple[float, float, int]]) -> float:
        if not history:
            return 0.0
        if self.accountant is Accountant.RDP and all(q == 1.0 for _, q, _ in history):
            sigma = history[0][0]  # one noise multiplier per accountant
            return gaussian_rdp_epsilon(sigma, sum(k for _, _, k in history), self.delta)
        from fedcare.privacy.dp._opacus import epsilon_of  # torch + Opacus: only when needed

        return epsilon_of(history, self.delta, self.accountant.value)

    def epsilon(self) -> float:
        """Epsilon at ``delta`` after the rounds accounted so far."""
        return self._epsilon(self.history)

    def epsilon_after_next_round(self, sample_rate: float | None = None) -> float:
        """What :meth:`epsilon` will be after one more :meth:`step`."""
        rate = self.sample_rate if sample_rate is None else self._check_rate(sample_rate)
        return self._epsilon(self._extended(1, rate))

    def next_round_cost(self, sample_rate: float | None = None) -> float:
        """The epsilon one more round adds (what each site's ledger records for it)."""
        return max(0.0, self.epsilon_after_next_round(sample_rate) - self.epsilon())
