"""The protocol's messages: frozen dataclasses with ``to_bytes()`` / ``from_bytes()``.

Transport-agnostic: the coordinator relays these as opaque bytes (one gRPC ``bytes`` field
is enough; :func:`decode_message` tells the type from the header). Constructors and
``from_bytes`` validate the format (lengths, identities, duplicates) and raise
:class:`ValueError` with the reason; whether a sender belongs to the round is checked by
:class:`~fedcare.privacy.secagg.SecAggClient` and :class:`~fedcare.privacy.secagg.SecAggServer`.

=====  ==================  =========================  ========================================
step   message             direction                  content
=====  ==================  =========================  ========================================
0      AdvertiseKeys       client -> server           two X25519 public keys (+ signature)
0      KeyAdverts          server -> every client     all adverts received
1      ShareBundle         client -> server           one EncryptedShare per other participant
1      MaskingRequest      server -> each client      survivors U2 + the shares addressed to it
2      MaskedInput         client -> server           the masked, quantized update
2      UnmaskRequest       server -> every survivor   survivors U3 and dropped U2 - U3
3      UnmaskResponse      client -> server           b shares of U3, s_sk shares of U2 - U3
=====  ==================  =========================  ========================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from fedcare.privacy.secagg._codec import Reader, Writer, peek_kind
from fedcare.privacy.secagg.config import (
    MAX_MODULUS_BITS,
    MIN_MODULUS_BITS,
    check_participant_id,
)
from fedcare.privacy.secagg.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES
from fedcare.privacy.secagg.prg import UIntArray, word_dtype
from fedcare.privacy.secagg.shamir import SHARE_BYTES

#: Plaintext of an encrypted share: the s_sk share then the b share.
SHARE_PLAINTEXT_BYTES = 2 * SHARE_BYTES
#: Ciphertext (with tag) of an encrypted share.
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + TAG_BYTES
#: Longest accepted advert signature (Ed25519: 64 bytes; DER ECDSA P-256: up to 72).
MAX_SIGNATURE_BYTES = 256

_ADVERTISE, _ADVERTS, _SHARE, _BUNDLE, _MASKING, _MASKED, _UNMASK_REQ, _UNMASK_RESP = range(1, 9)


def _check_ids(ids: Sequence[str], what: str) -> None:
    for participant in ids:
        check_participant_id(participant)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} contains duplicates")


def _check_len(data: bytes, size: int, what: str) -> None:
    if not isinstance(data, bytes):
        raise ValueError(f"{what} must be bytes")
    if len(data) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(data)}")


@dataclass(frozen=True)
class AdvertiseKeys:
    """Step 0, client -> server: a participant's channel and seed public keys for this round."""

    sender: str
    #: X25519 public key for share encryption.
    c_public: bytes
    #: X25519 public key for pairwise mask seeds.
    s_public: bytes
    #: Optional signature over :func:`~fedcare.privacy.secagg.keys.advert_payload`.
    signature: bytes = b""

    def __post_init__(self) -> None:
        """Validate identity and key lengths."""
        check_participant_id(self.sender)
        _check_len(self.c_public, KEY_BYTES, "c_public")
        _check_len(self.s_public, KEY_BYTES, "s_public")
        if not isinstance(self.signature, bytes) or len(self.signature) > MAX_SIGNATURE_BYTES:
            raise ValueError(f"signature must be bytes of at most {MAX_SIGNATURE_BYTES}")
        if self.c_public == self.s_public:
            raise ValueError("c_public and s_public must be different keys")

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_ADVERTISE)
        w.text(self.sender)
        w.blob(self.c_public)
        w.blob(self.s_public)
        w.blob(self.signature)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AdvertiseKeys:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _ADVERTISE, "AdvertiseKeys")
        msg = cls(r.text(), r.blob(), r.blob(), r.blob())
        r.done()
        return msg


@dataclass(frozen=True)
class KeyAdverts:
    """Step 0, server -> every client: the adverts of all participants that sent one (U1)."""

    adverts: tuple[AdvertiseKeys, ...]

    def __post_init__(self) -> None:
        """Validate: no participant twice."""
        object.__setattr__(self, "adverts", tuple(self.adverts))
        if not all(isinstance(a, AdvertiseKeys) for a in self.adverts):
            raise ValueError("adverts must be AdvertiseKeys")
        _check_ids([a.sender for a in self.adverts], "adverts")

    @property
    def senders(self) -> tuple[str, ...]:
        """The advertising participants, U1."""
        return tuple(a.sender for a in self.adverts)

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_ADVERTS)
        w.blobs(a.to_bytes() for a in self.adverts)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyAdverts:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _ADVERTS, "KeyAdverts")
        msg = cls(tuple(AdvertiseKeys.from_bytes(b) for b in r.blobs()))
        r.done()
        return msg


@dataclass(frozen=True)
class EncryptedShare:
    """Step 1: ``sender``'s Shamir shares for ``receiver``, AES-GCM encrypted end to end."""

    sender: str
    receiver: str
    nonce: bytes
    #: AES-256-GCM(s_sk share || b share) with its 16-byte tag.
    ciphertext: bytes

    def __post_init__(self) -> None:
        """Validate identities and lengths."""
        check_participant_id(self.sender)
        check_participant_id(self.receiver)
        if self.sender == self.receiver:
            raise ValueError("an encrypted share cannot be addressed to its sender")
        _check_len(self.nonce, NONCE_BYTES, "nonce")
        _check_len(self.ciphertext, SHARE_CIPHERTEXT_BYTES, "ciphertext")

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_SHARE)
        w.text(self.sender)
        w.text(self.receiver)
        w.blob(self.nonce)
        w.blob(self.ciphertext)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedShare:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _SHARE, "EncryptedShare")
        msg = cls(r.text(), r.text(), r.blob(), r.blob())
        r.done()
        return msg


def _check_shares_from(shares: Sequence[EncryptedShare], sender: str) -> None:
    if not all(isinstance(s, EncryptedShare) for s in shares):
        raise ValueError("shares must be EncryptedShare")
    for s in shares:
        if s.sender != sender:
            raise ValueError(f"share from {s.sender!r} in the bundle of {sender!r}")
    _check_ids([s.receiver for s in shares], "share receivers")


@dataclass(frozen=True)
class ShareBundle:
    """Step 1, client -> server: one encrypted share for every other advertising participant."""

    sender: str
    shares: tuple[EncryptedShare, ...]

    def __post_init__(self) -> None:
        """Validate: every share is from ``sender``, one per receiver."""
        check_participant_id(self.sender)
        object.__setattr__(self, "shares", tuple(self.shares))
        _check_shares_from(self.shares, self.sender)

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_BUNDLE)
        w.text(self.sender)
        w.blobs(s.to_bytes() for s in self.shares)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareBundle:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _BUNDLE, "ShareBundle")
        msg = cls(r.text(), tuple(EncryptedShare.from_bytes(b) for b in r.blobs()))
        r.done()
        return msg


@dataclass(frozen=True)
class MaskingRequest:
    """Step 1, server -> one client: who completed step 1 (U2) and the shares addressed to it."""

    receiver: str
    #: U2: the participants whose share bundles arrived (includes ``receiver``).
    survivors: tuple[str, ...]
    shares: tuple[EncryptedShare, ...]

    def __post_init__(self) -> None:
        """Validate: shares addressed to ``receiver``, one per sender."""
        check_participant_id(self.receiver)
        object.__setattr__(self, "survivors", tuple(self.survivors))
        object.__setattr__(self, "shares", tuple(self.shares))
        _check_ids(self.survivors, "survivors")
        if not all(isinstance(s, EncryptedShare) for s in self.shares):
            raise ValueError("shares must be EncryptedShare")
        for s in self.shares:
            if s.receiver != self.receiver:
                raise ValueError(f"share for {s.receiver!r} in the request of {self.receiver!r}")
        _check_ids([s.sender for s in self.shares], "share senders")

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_MASKING)
        w.text(self.receiver)
        w.texts(self.survivors)
        w.blobs(s.to_bytes() for s in self.shares)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskingRequest:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _MASKING, "MaskingRequest")
        msg = cls(r.text(), r.texts(), tuple(EncryptedShare.from_bytes(b) for b in r.blobs()))
        r.done()
        return msg


@dataclass(frozen=True)
class MaskedInput:
    """Step 2, client -> server: the masked quantized update, little-endian words mod 2^k."""

    sender: str
    modulus_bits: int
    #: ``vector_length`` words of uint32 (k <= 32) or uint64, little-endian.
    data: bytes

    def __post_init__(self) -> None:
        """Validate the identity, the modulus and that the data is whole words."""
        check_participant_id(self.sender)
        if not MIN_MODULUS_BITS <= self.modulus_bits <= MAX_MODULUS_BITS:
            raise ValueError(f"modulus_bits {self.modulus_bits} out of range")
        if not isinstance(self.data, bytes):
            raise ValueError("data must be bytes")
        itemsize = word_dtype(self.modulus_bits).itemsize
        if not self.data or len(self.data) % itemsize:
            raise ValueError(
                f"data of {len(self.data)} bytes is not a vector of {itemsize}-byte words"
            )

    @classmethod
    def from_vector(cls, sender: str, modulus_bits: int, vector: UIntArray) -> MaskedInput:
        """Wrap a masked vector (converted to the little-endian wire word type)."""
        return cls(
            sender, modulus_bits, vector.astype(word_dtype(modulus_bits), copy=False).tobytes()
        )

    def vector(self) -> UIntArray:
        """The words as a read-only numpy view (no copy)."""
        return np.frombuffer(self.data, dtype=word_dtype(self.modulus_bits))

    @property
    def length(self) -> int:
        """Number of words."""
        return len(self.data) // word_dtype(self.modulus_bits).itemsize

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_MASKED)
        w.text(self.sender)
        w.u8(self.modulus_bits)
        w.blob(self.data)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedInput:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _MASKED, "MaskedInput")
        msg = cls(r.text(), r.u8(), r.blob())
        r.done()
        return msg


@dataclass(frozen=True)
class UnmaskRequest:
    """Step 2, server -> every survivor: whose self masks and whose seed keys to reveal.

    The format allows a participant in both lists so that a client can see and refuse it
    (:class:`~fedcare.privacy.secagg.SecAggRefused`).
    """

    #: U3: participants whose masked input arrived (their b shares are requested).
    survivors: tuple[str, ...]
    #: U2 - U3: participants that dropped before their masked input (s_sk shares requested).
    dropped: tuple[str, ...]

    def __post_init__(self) -> None:
        """Validate identities and duplicates within each list."""
        object.__setattr__(self, "survivors", tuple(self.survivors))
        object.__setattr__(self, "dropped", tuple(self.dropped))
        _check_ids(self.survivors, "survivors")
        _check_ids(self.dropped, "dropped")

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_UNMASK_REQ)
        w.texts(self.survivors)
        w.texts(self.dropped)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnmaskRequest:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _UNMASK_REQ, "UnmaskRequest")
        msg = cls(r.texts(), r.texts())
        r.done()
        return msg


def _write_shares(w: Writer, shares: Mapping[str, bytes]) -> None:
    w.u32(len(shares))
    for owner, share in sorted(shares.items()):
        w.text(owner)
        w.blob(share)


def _read_shares(r: Reader) -> dict[str, bytes]:
    pairs = [(r.text(), r.blob()) for _ in range(r.count())]
    shares = dict(pairs)
    if len(shares) != len(pairs):
        raise ValueError("UnmaskResponse: a participant appears twice in one share list")
    return shares


def _check_share_map(shares: Mapping[str, bytes], what: str) -> None:
    for owner, share in shares.items():
        check_participant_id(owner)
        _check_len(share, SHARE_BYTES, f"{what} share of {owner!r}")


@dataclass(frozen=True)
class UnmaskResponse:
    """Step 3, client -> server: the Shamir shares the client holds, as requested."""

    sender: str
    #: Owner -> the sender's share of the owner's self-mask seed b (owners in U3).
    self_mask_shares: Mapping[str, bytes]
    #: Owner -> the sender's share of the owner's seed private key s_sk (owners in U2 - U3).
    key_shares: Mapping[str, bytes]

    def __post_init__(self) -> None:
        """Validate identities and share lengths."""
        check_participant_id(self.sender)
        object.__setattr__(self, "self_mask_shares", dict(self.self_mask_shares))
        object.__setattr__(self, "key_shares", dict(self.key_shares))
        _check_share_map(self.self_mask_shares, "self-mask")
        _check_share_map(self.key_shares, "key")

    def to_bytes(self) -> bytes:
        """Binary encoding."""
        w = Writer(_UNMASK_RESP)
        w.text(self.sender)
        _write_shares(w, self.self_mask_shares)
        _write_shares(w, self.key_shares)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnmaskResponse:
        """Decode and validate; :class:`ValueError` on any malformation."""
        r = Reader(data, _UNMASK_RESP, "UnmaskResponse")
        msg = cls(r.text(), _read_shares(r), _read_shares(r))
        r.done()
        return msg


#: Any protocol message.
Message: TypeAlias = (
    AdvertiseKeys
    | KeyAdverts
    | EncryptedShare
    | ShareBundle
    | MaskingRequest
    | MaskedInput
    | UnmaskRequest
    | UnmaskResponse
)

_BY_KIND: dict[int, type[Message]] = {
    _ADVERTISE: AdvertiseKeys,
    _ADVERTS: KeyAdverts,
    _SHARE: EncryptedShare,
    _BUNDLE: ShareBundle,
    _MASKING: MaskingRequest,
    _MASKED: MaskedInput,
    _UNMASK_REQ: UnmaskRequest,
    _UNMASK_RESP: UnmaskResponse,
}


def decode_message(data: bytes) -> Message:
    """Decode any message, choosing the class from the header's type byte."""
    kind = peek_kind(data)
    try:
        cls = _BY_KIND[kind]
    except KeyError:
        raise ValueError(f"unknown message type {kind}") from None
    return cls.from_bytes(data)
