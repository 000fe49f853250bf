"""Pseudo-random generator: a 32-byte seed -> a vector over Z_(2^k).

The keystream of AES-256-CTR (key: the seed, initial counter block: zero) is read as
little-endian uint32 (k <= 32) or uint64 words; reduced mod 2^k they are uniform in
Z_(2^k). AES-CTR is a standard PRF-based PRG, runs at memory speed with AES-NI (about 1 ms
per million uint32 words here, see ``bench/secagg.py``) and is deterministic across machines.

Masks are added block by block (:data:`BLOCK` words at a time), so applying a mask to a
vector costs one cache-sized scratch buffer, not a second vector.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: Words per keystream block: 64 Ki words (256 KiB of uint32) stays in the L2 cache.
BLOCK = 1 << 16
#: Seed length (an AES-256 key).
SEED_BYTES = 32
_AES_BLOCK = 16

UIntArray = npt.NDArray[np.unsignedinteger]


def word_dtype(modulus_bits: int) -> np.dtype[np.unsignedinteger]:
    """The little-endian word type for Z_(2^modulus_bits): uint32 up to 32 bits, else uint64."""
    if not 1 <= modulus_bits <= 64:
        raise ValueError("modulus_bits must be in [1, 64]")
    return np.dtype("<u4") if modulus_bits <= 32 else np.dtype("<u8")


def reduce(vector: UIntArray, modulus_bits: int) -> None:
    """Reduce ``vector`` mod 2^modulus_bits in place (no-op for a full-width word)."""
    if modulus_bits < vector.dtype.itemsize * 8:
        np.bitwise_and(vector, vector.dtype.type((1 << modulus_bits) - 1), out=vector)


class _Keystream:
    """AES-256-CTR keystream read block by block into one reusable buffer."""

    def __init__(self, seed: bytes, dtype: np.dtype[np.unsignedinteger], block: int) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
        cipher = Cipher(algorithms.AES(seed), modes.CTR(bytes(_AES_BLOCK)))
        self._enc = cipher.encryptor()
        self._dtype = dtype
        nbytes = block * dtype.itemsize
        self._zeros = memoryview(bytes(nbytes))
        self._out = bytearray(nbytes + _AES_BLOCK - 1)

    def next(self, words: int) -> UIntArray:
        """The next ``words`` words of keystream (a view valid until the next call)."""
        nbytes = words * self._dtype.itemsize
        self._enc.update_into(self._zeros[:nbytes], self._out)
        return np.frombuffer(self._out, dtype=self._dtype, count=words)


def expand(seed: bytes, length: int, modulus_bits: int) -> UIntArray:
    """The PRG output: ``length`` words uniform in Z_(2^modulus_bits)."""
    dtype = word_dtype(modulus_bits)
    out = np.zeros(length, dtype=dtype)
    add_mask(out, seed, modulus_bits, sign=1)
    reduce(out, modulus_bits)
    return out


def add_mask(vector: UIntArray, seed: bytes, modulus_bits: int, sign: int) -> None:
    """``vector += sign * PRG(seed)`` in place, mod the word size (``sign`` is +1 or -1).

    The word size is a multiple of 2^modulus_bits, so the result is correct mod 2^k; call
    :func:`reduce` once after the last mask.
    """
    if sign not in (1, -1):
        raise ValueError("sign must be +1 or -1")
    if vector.ndim != 1 or vector.dtype != word_dtype(modulus_bits):
        raise ValueError(f"vector must be 1-D {word_dtype(modulus_bits)}")
    op = np.add if sign == 1 else np.subtract
    stream = _Keystream(seed, vector.dtype, min(BLOCK, max(vector.size, 1)))
    for start in range(0, vector.size, BLOCK):
        stop = min(start + BLOCK, vector.size)
        part = vector[start:stop]
        op(part, stream.next(stop - start), out=part)
