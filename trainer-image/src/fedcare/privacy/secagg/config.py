"""Round parameters that every client and the server of one secure-aggregation round share."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fedcare.spec.privacy import SecureAggregationSpec

#: Domain-separation prefix of every hash, KDF and signature input of this protocol version.
DOMAIN = b"fedcare/secagg/v1"
#: Longest participant identity, in UTF-8 bytes (identities are certificate common names).
MAX_ID_BYTES = 1024
MIN_MODULUS_BITS = 16
MAX_MODULUS_BITS = 62


def check_participant_id(participant: str) -> None:
    """Raise :class:`ValueError` unless ``participant`` is a usable identity string."""
    if not isinstance(participant, str) or not participant:
        raise ValueError("participant id must be a non-empty string")
    if len(participant.encode("utf-8")) > MAX_ID_BYTES:
        raise ValueError(f"participant id longer than {MAX_ID_BYTES} bytes")
    if any(ord(ch) < 0x20 for ch in participant):
        raise ValueError(f"participant id {participant!r} contains control characters")


def default_threshold(num_participants: int) -> int:
    """A strict majority of the participants (at least 2): the spec's default threshold."""
    return max(2, num_participants // 2 + 1)


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one masking round; clients and server must build identical configs.

    ``participants`` is the round's selected participant set (it is stored sorted: the
    1-based position in that order is each participant's Shamir share index). Every key
    derivation, associated data and signature includes :attr:`digest`, so a client whose
    config differs from its peers' fails authentication instead of producing garbage.
    """

    #: FederatedJob name.
    job_id: str
    #: Training round number (masks and keys are fresh per round).
    round_number: int
    #: The selected participants of this round (any order; stored sorted).
    participants: tuple[str, ...]
    #: Number of float values in each participant's update vector.
    vector_length: int
    #: Shamir threshold t: survivors needed at every step (2 <= t <= n).
    threshold: int
    #: Values are clipped to [-clip_range, clip_range] before quantization.
    clip_range: float = 1.0
    #: The masked sum lives in Z_(2^modulus_bits).
    modulus_bits: int = 32
    _digest: bytes = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate every field and sort the participants."""
        if not self.job_id:
            raise ValueError("job_id must be non-empty")
        if self.round_number < 0:
            raise ValueError("round_number must be >= 0")
        participants = tuple(sorted(self.participants))
        for p in participants:
            check_participant_id(p)
        if len(set(participants)) != len(participants):
            raise ValueError("participants contain duplicates")
        n = len(participants)
        if n < 2:
            raise ValueError("secure aggregation needs at least 2 participants")
        if not 2 <= self.threshold <= n:
            raise ValueError(f"threshold must be in [2, {n}] for {n} participants")
        if self.vector_length < 1:
            raise ValueError("vector_length must be >= 1")
        if not (math.isfinite(self.clip_range) and self.clip_range > 0):
            raise ValueError("clip_range must be a positive finite number")
        if not MIN_MODULUS_BITS <= self.modulus_bits <= MAX_MODULUS_BITS:
            raise ValueError(f"modulus_bits must be in [{MIN_MODULUS_BITS}, {MAX_MODULUS_BITS}]")
        if ((1 << self.modulus_bits) - 1) // n < 1:
            raise ValueError(f"2^{self.modulus_bits} is too small for {n} participants")
        object.__setattr__(self, "participants", participants)
        object.__setattr__(self, "_index", {p: i + 1 for i, p in enumerate(participants)})
        context = b"".join(
            [
                DOMAIN,
                b"/config",
                _lp(self.job_id.encode("utf-8")),
                struct.pack(">QI", self.round_number, n),
                *(_lp(p.encode("utf-8")) for p in participants),
                struct.pack(
                    ">IBdQ", self.threshold, self.modulus_bits, self.clip_range, self.vector_length
                ),
            ]
        )
        object.__setattr__(self, "_digest", hashlib.sha256(context).digest())

    @classmethod
    def from_spec(
        cls,
        spec: SecureAggregationSpec,
        *,
        job_id: str,
        round_number: int,
        participants: Iterable[str],
        vector_length: int,
    ) -> SecAggConfig:
        """Build the config of one round from ``spec.privacy.secureAggregation``.

        The threshold defaults to a strict majority of ``participants`` (the spec's default);
        a spec threshold larger than the number of participants raises :class:`ValueError`.
        """
        chosen = tuple(participants)
        threshold = (
            spec.threshold if spec.threshold is not None else default_threshold(len(set(chosen)))
        )
        return cls(
            job_id=job_id,
            round_number=round_number,
            participants=chosen,
            vector_length=vector_length,
            threshold=threshold,
            clip_range=spec.clip_range,
            modulus_bits=spec.modulus_bits,
        )

    @property
    def num_participants(self) -> int:
        """n, the number of selected participants (the most inputs a sum can hold)."""
        return len(self.participants)

    @property
    def levels(self) -> int:
        """L = floor((2^k - 1) / n): quantized values lie in [0, L], so n of them never wrap."""
        return ((1 << self.modulus_bits) - 1) // self.num_participants

    @property
    def quantum(self) -> float:
        """Width of one quantization step, 2 * clip_range / L."""
        return 2.0 * self.clip_range / self.levels

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """Little-endian element type on the wire: uint32 for k <= 32, else uint64."""
        return np.dtype("<u4") if self.modulus_bits <= 32 else np.dtype("<u8")

    @property
    def digest(self) -> bytes:
        """SHA-256 over a canonical encoding of every field: binds messages to this round."""
        return self._digest

    @property
    def is_majority_threshold(self) -> bool:
        """Whether t > n/2 (needed against a coordinator that lies about who dropped)."""
        return 2 * self.threshold > self.num_participants

    def index_of(self, participant: str) -> int:
        """The 1-based Shamir share index (x coordinate) of ``participant``."""
        try:
            return self._index[participant]
        except KeyError:
            raise ValueError(f"unknown participant {participant!r}") from None

    def check_member(self, participant: str, what: str = "participant") -> None:
        """Raise :class:`ValueError` unless ``participant`` is one of the round's participants."""
        if participant not in self._index:
            raise ValueError(f"{what} {participant!r} is not a participant of this round")
