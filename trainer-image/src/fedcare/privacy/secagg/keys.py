"""Key agreement, key derivation, share encryption and advert signatures.

Each participant holds two X25519 key pairs per round (Bonawitz et al. 2017, section 4):

- ``c`` (channel) keys: ``HKDF-SHA256(X25519(c_u, c_v))`` is an AES-256-GCM key that encrypts the
  Shamir shares ``u`` sends to ``v`` through the coordinator; the associated data binds
  sender, receiver, job, round and the config digest, so a share cannot be replayed to another
  receiver, reflected back, or moved to another round.
- ``s`` (seed) keys: ``HKDF-SHA256(X25519(s_u, s_v))`` is the 32-byte seed of the pairwise mask
  shared by ``u`` and ``v``.

Every HKDF ``info`` carries the domain string, the purpose, the config digest and the two
public keys (in sorted order, so both ends derive the same key).

Adverts can be signed with the participant's long-term key (Ed25519, or the ECDSA P-256 key
of its mTLS certificate): that is the mitigation of Bonawitz's active variant against a
coordinator that substitutes public keys. Without signatures the protocol assumes a
semi-honest coordinator that relays adverts faithfully.
"""

from __future__ import annotations

import os
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedcare.privacy.secagg.config import DOMAIN, SecAggConfig

#: Raw X25519 public/private key length.
KEY_BYTES = 32
#: AES-GCM nonce length.
NONCE_BYTES = 12
#: AES-GCM tag length.
TAG_BYTES = 16

#: Long-term keys that may sign adverts.
SigningKey: TypeAlias = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
#: Their public halves, which verify adverts.
VerifyKey: TypeAlias = Ed25519PublicKey | ec.EllipticCurvePublicKey


def generate_key() -> X25519PrivateKey:
    """A fresh X25519 private key."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte private key of ``key`` (what is Shamir-shared for ``s``)."""
    return key.private_bytes_raw()


def load_private(data: bytes) -> X25519PrivateKey:
    """Load a raw 32-byte X25519 private key; :class:`ValueError` on a wrong length."""
    if len(data) != KEY_BYTES:
        raise ValueError(f"X25519 private key must be {KEY_BYTES} bytes, got {len(data)}")
    return X25519PrivateKey.from_private_bytes(data)


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    if len(peer_public) != KEY_BYTES:
        raise ValueError(f"X25519 public key must be {KEY_BYTES} bytes, got {len(peer_public)}")
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # low-order point: the shared secret would be all zeros
        raise ValueError("peer X25519 public key is a low-order point") from None


def _derive(
    purpose: bytes, config: SecAggConfig, private: X25519PrivateKey, peer_public: bytes
) -> bytes:
    shared = _agree(private, peer_public)
    low, high = sorted((public_bytes(private), peer_public))
    info = b"".join([DOMAIN, b"/", purpose, config.digest, low, high])
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def channel_key(config: SecAggConfig, c_private: X25519PrivateKey, peer_c_public: bytes) -> bytes:
    """The AES-256-GCM key shared with the peer whose channel public key is ``peer_c_public``."""
    return _derive(b"share-key", config, c_private, peer_c_public)


def mask_seed(config: SecAggConfig, s_private: X25519PrivateKey, peer_s_public: bytes) -> bytes:
    """The 32-byte PRG seed of the pairwise mask with the peer whose seed key is given."""
    return _derive(b"mask-seed", config, s_private, peer_s_public)


def share_associated_data(config: SecAggConfig, sender: str, receiver: str) -> bytes:
    """AEAD associated data of the shares ``sender`` sends ``receiver`` in this round."""
    return b"".join(
        [
            DOMAIN,
            b"/share",
            _lp(config.job_id.encode("utf-8")),
            config.round_number.to_bytes(8, "big"),
            config.digest,
            _lp(sender.encode("utf-8")),
            _lp(receiver.encode("utf-8")),
        ]
    )


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM with a random 96-bit nonce; returns ``(nonce, ciphertext || tag)``.

    The channel key is the same in both directions of a pair, so the nonce must be random
    (two messages per key per round: a collision chance of 2^-96).
    """
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Open an :func:`encrypt` result; :class:`ValueError` if it is forged or misaddressed."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        raise ValueError(
            "ciphertext failed authentication (wrong key, tampered or misrouted)"
        ) from None


def advert_payload(config: SecAggConfig, sender: str, c_public: bytes, s_public: bytes) -> bytes:
    """The bytes an advert signature covers: domain, config digest, sender and both keys."""
    return b"".join(
        [DOMAIN, b"/advert", config.digest, _lp(sender.encode("utf-8")), c_public, s_public]
    )


def sign(key: SigningKey, payload: bytes) -> bytes:
    """Sign ``payload`` with Ed25519, or ECDSA-SHA256 for an elliptic-curve key."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(payload)
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def verify(key: VerifyKey, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature over ``payload``."""
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
