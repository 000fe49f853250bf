"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

The field is the Mersenne prime 2^521 - 1, comfortably larger than any 32-byte secret. A
share is the evaluation of a random polynomial of degree t - 1 (constant term: the secret)
at the holder's index x in 1..n; any t shares give the secret back by Lagrange interpolation
at 0, and t - 1 shares reveal nothing about it. Coefficients come from :mod:`secrets`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

#: The field modulus, the Mersenne prime 2^521 - 1.
PRIME = (1 << 521) - 1
#: Bytes of one encoded share value (big-endian, fixed width).
SHARE_BYTES = 66
#: Bytes of the secrets this module shares.
SECRET_BYTES = 32


def split(secret: bytes, xs: Iterable[int], threshold: int) -> dict[int, bytes]:
    """Share ``secret`` among the indices ``xs``: any ``threshold`` shares recover it.

    Returns ``{x: share}`` with each share encoded in :data:`SHARE_BYTES` bytes.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    points = sorted(set(xs))
    if threshold < 1:
        raise ValueError("threshold must be >= 1")
    if len(points) < threshold:
        raise ValueError(f"{len(points)} share holders cannot meet threshold {threshold}")
    if points[0] < 1 or points[-1] >= PRIME:
        raise ValueError("share indices must be in [1, PRIME)")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares: dict[int, bytes] = {}
    for x in points:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = encode_share(y)
    return shares


def encode_share(y: int) -> bytes:
    """Fixed-width big-endian encoding of a field element."""
    return y.to_bytes(SHARE_BYTES, "big")


def decode_share(data: bytes) -> int:
    """Inverse of :func:`encode_share`; :class:`ValueError` on a wrong length or range."""
    if len(data) != SHARE_BYTES:
        raise ValueError(f"share must be {SHARE_BYTES} bytes, got {len(data)}")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise ValueError("share value is not a field element")
    return y


def _interpolate_at_zero(points: list[tuple[int, int]]) -> int:
    """Lagrange interpolation at 0 over GF(PRIME): O(t^2) multiplications, t inversions."""
    total = 0
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * xm % PRIME
                den = den * (xm - xj) % PRIME
        total = (total + yj * num * pow(den, -1, PRIME)) % PRIME
    return total


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """Recover the secret from at least ``threshold`` shares ``{x: share}``.

    With more than ``threshold`` shares, two different subsets are interpolated and must
    agree; a mismatch, or a result that is not a 32-byte value, raises :class:`ValueError`
    (a corrupted or inconsistent share).
    """
    if threshold < 1:
        raise ValueError("threshold must be >= 1")
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    points = sorted((x, decode_share(s)) for x, s in shares.items())
    if points[0][0] < 1 or points[-1][0] >= PRIME:
        raise ValueError("share indices must be in [1, PRIME)")
    secret = _interpolate_at_zero(points[:threshold])
    if len(points) > threshold and _interpolate_at_zero(points[-threshold:]) != secret:
        raise ValueError("shares are inconsistent (different subsets give different secrets)")
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ValueError("shares are inconsistent (the result is not a 32-byte secret)")
    return secret.to_bytes(SECRET_BYTES, "big")
