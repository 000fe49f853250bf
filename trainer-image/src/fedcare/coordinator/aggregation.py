"""How one round's updates are folded, by privacy mode.

- :class:`PlainAggregation`: float32 deltas, a streaming sample-weighted mean (or every update
  kept, for robust strategies).
- :class:`MaskedAggregation`: secure aggregation by masking; the coordinator only ever holds the
  masked sum, and learns the (weighted) sum after the unmasking step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import grpc
import numpy as np

from fedcare.coordinator.uploads import Rejected, read_exact, read_vector
from fedcare.privacy.ckks import CiphertextSum, CkksError
from fedcare.privacy.dp.central import add_gaussian_noise, clip_update
from fedcare.privacy.secagg import MaskedInput, SecAggConfig, SecAggServer
from fedcare.strategies import Strategy, StreamingMean
from fedcare.transport import TensorLayout
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport.tensors import F32


class RoundAggregation(ABC):
    """Receives one round's updates: ``read`` runs outside the engine's lock, ``accept`` in it."""

    #: The ``UpdateEncoding`` this aggregation takes.
    encoding: int = pb.PLAIN_F32

    @abstractmethod
    def read(self, chunks: Iterator[bytes]) -> object:
        """Read and check one update's bytes (refusing it with :class:`Rejected`)."""

    @abstractmethod
    def accept(self, participant: str, payload: object, samples: float) -> None:
        """Fold a checked update into the round."""


class PlainAggregation(RoundAggregation):
    """Float32 deltas in the clear."""

    encoding = pb.PLAIN_F32

    def __init__(
        self, strategy: Strategy, layout: TensorLayout, size: int, clip_norm: float | None = None
    ) -> None:
        self._strategy = strategy
        self._layout = layout
        self._size = size
        self._mean = None if strategy.needs_individual_updates else StreamingMean(size)
        self._individual: list[tuple[F32, float]] = []
        #: central DP: every update is clipped to this L2 norm before it is folded
        self._clip_norm = clip_norm
        self._max_weight = 0.0

    def read(self, chunks: Iterator[bytes]) -> F32:
        """A finite float32 vector of the model's size (clipped under central DP)."""
        vector = read_vector(chunks, self._layout, self._size)
        if self._clip_norm is not None:
            vector, _ = clip_update(vector, self._clip_norm)
        return vector

    def accept(self, participant: str, payload: object, samples: float) -> None:
        """Fold into the running mean, or keep it for a robust strategy."""
        assert isinstance(payload, np.ndarray)
        self._max_weight = max(self._max_weight, samples)
        if self._mean is None:
            self._individual.append((payload, samples))
        else:
            self._mean.fold(payload, samples)

    def candidate(self, global_weights: F32) -> F32:
        """The next global weights."""
        if self._mean is None:
            deltas = [v for v, _ in self._individual]
            weights = [w for _, w in self._individual]
            self._individual = []
            return self._strategy.apply_individual(global_weights, deltas, weights)
        # take_mean: the accumulator becomes the mean (the round is closed; no copy kept).
        return self._strategy.apply(global_weights, self._mean.take_mean())

    def noisy_candidate(
        self, global_weights: F32, noise_multiplier: float, rng: np.random.Generator
    ) -> F32:
        """Central DP: the weighted mean of the clipped updates plus Gaussian noise.

        The mean is ``sum_i p_i * clip(delta_i)`` with ``p_i = n_i / sum n``; replacing one
        site's update moves it by at most ``max p_i * C``, so the noise std is
        ``sigma * C * max p_i`` (the sensitivity argument of :mod:`fedcare.privacy.dp.central`).
        """
        assert self._mean is not None and self._clip_norm is not None
        weight = self._max_weight / self._mean.total_weight
        mean = self._mean.take_mean()
        noisy = add_gaussian_noise(mean, noise_multiplier, self._clip_norm, rng, max_weight=weight)
        return self._strategy.apply(global_weights, noisy.astype(np.float32, copy=False))


class MaskedAggregation(RoundAggregation):
    """Secure aggregation by masking (Bonawitz et al. 2017) for one round."""

    encoding = pb.MASKED

    def __init__(self, config: SecAggConfig, weights: dict[str, float]) -> None:
        self.config = config
        self.server = SecAggServer(config)
        #: each site's share of the round's samples; sites weight their own update with it
        self.weights = weights

    def read(self, chunks: Iterator[bytes]) -> bytes:
        """The masked ring elements: exactly ``vector_length`` words."""
        nbytes = self.config.vector_length * np.dtype(self.config.dtype).itemsize
        return read_exact(chunks, nbytes).tobytes()

    def accept(self, participant: str, payload: object, samples: float) -> None:
        """Add the masked input to the running masked sum (mod 2^k)."""
        assert isinstance(payload, bytes)
        try:
            self.server.add_masked_input(
                MaskedInput(sender=participant, modulus_bits=self.config.modulus_bits, data=payload)
            )
        except (ValueError, RuntimeError) as err:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(err)) from None


class CkksAggregation(RoundAggregation):
    """CKKS homomorphic aggregation: the coordinator adds ciphertexts it cannot decrypt."""

    encoding = pb.CKKS

    def __init__(self, total: CiphertextSum, weights: dict[str, float], max_chunks: int) -> None:
        self.total = total
        self.weights = weights
        self._max_chunks = max_chunks

    def read(self, chunks: Iterator[bytes]) -> list[bytes]:
        """The encrypted update: a header and one ciphertext per message (bounded count)."""
        out: list[bytes] = []
        for chunk in chunks:
            out.append(chunk)
            if len(out) > self._max_chunks:
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "wrong_size",
                    f"encrypted update has more than {self._max_chunks} chunks",
                )
        return out

    def accept(self, participant: str, payload: object, samples: float) -> None:
        """Add the ciphertexts to the encrypted sum (all or nothing)."""
        assert isinstance(payload, list)
        try:
            self.total.add(iter(payload))
        except CkksError as err:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(err)) from None
