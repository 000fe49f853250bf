"""Encrypted vectors as chunked byte streams.

A vector of ``length`` float values is split into ``ceil(length / slots)`` chunks of
``slots = N/2`` values (the last one shorter), each encrypted as one CKKS ciphertext. On the
wire it is a sequence of byte strings (a *stream*), which any transport can carry one message
at a time:

- item 0, the header (:class:`VectorHeader`, 73 bytes): magic ``FCKV``, format version,
  number of summands, chunk count, slot count, vector length, key id, SEAL parameter id;
- items 1..chunk_count: ``FCKC`` + the chunk index (4 bytes, big endian) + one TenSEAL
  ``CKKSVector`` serialization (about 330 KB at N=8192).

Readers consume the stream chunk by chunk, so neither side needs the whole serialized vector
in memory at once. :func:`write_stream` / :func:`read_stream` store a stream in a file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from fedcare.privacy.ckks import _tenseal
from fedcare.privacy.ckks._tenseal import TENSEAL_ERRORS, CkksVectorT, TensealContext
from fedcare.privacy.ckks.context import (
    KEY_ID_BYTES,
    key_id,
    max_abs_value,
    require_secret_key,
    slot_count,
)
from fedcare.privacy.ckks.errors import CkksError

F32 = npt.NDArray[np.float32]

HEADER_MAGIC = b"FCKV"
CHUNK_MAGIC = b"FCKC"
FORMAT_VERSION = 1
#: magic, version, summands, chunk_count, slot_count, length, key_id, parms_id (4 x u64)
_HEADER = struct.Struct(">4sBIIIQ16s4Q")
_CHUNK = struct.Struct(">4sI")
#: Bytes of the header item, and of the frame before each ciphertext.
HEADER_SIZE = _HEADER.size
CHUNK_FRAME_SIZE = _CHUNK.size
_FILE_FRAME = struct.Struct(">Q")
#: Upper bound on one stored stream item (a ciphertext at N=32768 is about 6 MB).
_MAX_FILE_ITEM = 64 << 20

ParmsId = tuple[int, int, int, int]

#: :func:`decrypt_vector` rounds to multiples of 2**-20 by default (see there why).
DEFAULT_QUANTUM_BITS = 20


@dataclass(frozen=True)
class VectorHeader:
    """First item of a stream: what follows and what it was encrypted under."""

    #: Number of float values in the vector.
    length: int
    #: Number of ciphertext chunks that follow the header.
    chunk_count: int
    #: Values per chunk (N/2); the last chunk holds the remainder.
    slot_count: int
    #: How many encrypted vectors were added up (1 for a participant's own vector).
    summands: int
    #: :func:`~fedcare.privacy.ckks.key_id` of the secret context used to encrypt.
    key_id: bytes
    #: SEAL's identifier of the encryption parameters.
    parms_id: ParmsId

    def __post_init__(self) -> None:
        """Check the fields are consistent (so a parsed header can be trusted)."""
        if self.slot_count < 1:
            raise CkksError(f"header: slot count {self.slot_count} is not positive")
        if self.length < 1:
            raise CkksError(f"header: vector length {self.length} is not positive")
        expected = -(-self.length // self.slot_count)
        if self.chunk_count != expected:
            raise CkksError(
                f"header: {self.chunk_count} chunks announced, but {self.length} values "
                f"at {self.slot_count} per chunk need {expected}"
            )
        if self.summands < 1:
            raise CkksError(f"header: summand count {self.summands} is not positive")
        if len(self.key_id) != KEY_ID_BYTES:
            raise CkksError(f"header: key id of {len(self.key_id)} bytes, expected 16")

    def chunk_size(self, index: int) -> int:
        """Number of values in chunk ``index``."""
        return min(self.slot_count, self.length - index * self.slot_count)

    def to_bytes(self) -> bytes:
        """The header as the first stream item."""
        return _HEADER.pack(
            HEADER_MAGIC,
            FORMAT_VERSION,
            self.summands,
            self.chunk_count,
            self.slot_count,
            self.length,
            self.key_id,
            *self.parms_id,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VectorHeader:
        """Parse and validate a header item.

        Raises:
            CkksError: the bytes are not a header of this format.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CkksError(f"a stream item is bytes, got {type(data).__name__}")
        if len(data) != _HEADER.size or bytes(data[:4]) != HEADER_MAGIC:
            raise CkksError(
                f"not an encrypted-vector header ({len(data)} bytes; expected {_HEADER.size} "
                f"starting with {HEADER_MAGIC!r})"
            )
        magic, version, summands, chunks, slots, length, kid, *pid = _HEADER.unpack(data)
        del magic
        if version != FORMAT_VERSION:
            raise CkksError(f"encrypted-vector format version {version}, expected 1")
        return cls(
            length=length,
            chunk_count=chunks,
            slot_count=slots,
            summands=summands,
            key_id=kid,
            parms_id=(pid[0], pid[1], pid[2], pid[3]),
        )

    def check_context(self, ctx: TensealContext) -> None:
        """Raise :class:`CkksError` unless ``ctx`` has the parameters of this vector."""
        if self.parms_id != _tenseal.parms_id(ctx) or self.slot_count != slot_count(ctx):
            raise CkksError(
                "the vector was encrypted under other CKKS parameters than this context's"
            )


def header_for(ctx: TensealContext, length: int, kid: bytes, summands: int = 1) -> VectorHeader:
    """The header of a ``length``-value vector under ``ctx``."""
    slots = slot_count(ctx)
    return VectorHeader(
        length=length,
        chunk_count=-(-length // slots),
        slot_count=slots,
        summands=summands,
        key_id=kid,
        parms_id=_tenseal.parms_id(ctx),
    )


def chunk_item(index: int, ciphertext: CkksVectorT) -> bytes:
    """Stream item ``index + 1``: a framed ciphertext."""
    return _CHUNK.pack(CHUNK_MAGIC, index) + ciphertext.serialize()


def read_stream(
    chunks: Iterable[bytes],
) -> tuple[VectorHeader, Iterator[tuple[int, bytes]]]:
    """Parse the header now; iterate over ``(index, ciphertext bytes)`` lazily.

    The iterator checks the framing as it goes: each chunk carries its own index, and the
    stream must hold exactly ``chunk_count`` of them after the header.

    Raises:
        CkksError: empty stream, bad header; later, from the iterator: a missing, extra,
            misnumbered or unframed chunk.
    """
    items = iter(chunks)
    first = next(items, None)
    if first is None:
        raise CkksError("empty stream: no encrypted-vector header")
    header = VectorHeader.from_bytes(first)
    return header, _payloads(header, items)


def _payloads(header: VectorHeader, items: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    for index in range(header.chunk_count):
        item = next(items, None)
        if item is None:
            raise CkksError(
                f"stream ended after {index} of the {header.chunk_count} chunks announced"
            )
        if not isinstance(item, bytes | bytearray | memoryview):
            raise CkksError(f"chunk {index}: a stream item is bytes, got {type(item).__name__}")
        if len(item) <= _CHUNK.size or bytes(item[:4]) != CHUNK_MAGIC:
            raise CkksError(f"chunk {index}: not a framed ciphertext ({len(item)} bytes)")
        _, got = _CHUNK.unpack_from(item)
        if got != index:
            raise CkksError(f"chunk {index}: carries index {got} (chunks out of order)")
        yield index, bytes(item[_CHUNK.size :])
    if next(items, None) is not None:
        raise CkksError(f"more chunks than the {header.chunk_count} the header announces")


def load_chunk(
    ctx: TensealContext, header: VectorHeader, index: int, payload: bytes
) -> CkksVectorT:
    """Deserialize chunk ``index`` and check it holds the number of values it should.

    Raises:
        CkksError: the bytes are not a ciphertext valid for ``ctx``, or the size is wrong.
    """
    try:
        vec = _tenseal.ckks_vector_from(ctx, payload)
        size = vec.size()
    except TENSEAL_ERRORS as exc:
        raise CkksError(
            f"chunk {index}: not a CKKS ciphertext for this context ({len(payload)} bytes): {exc}"
        ) from exc
    if size != header.chunk_size(index):
        raise CkksError(f"chunk {index}: holds {size} values, expected {header.chunk_size(index)}")
    return vec


def _as_values(ctx: TensealContext, values: npt.ArrayLike) -> F32:
    """Validate what :func:`encrypt_vector` is given."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CkksError(f"expected a 1-D vector (flatten the model), got shape {arr.shape}")
    if arr.size == 0:
        raise CkksError("cannot encrypt an empty vector")
    if not np.issubdtype(arr.dtype, np.floating):
        raise CkksError(f"expected floating-point values, got dtype {arr.dtype}")
    arr32 = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr32).all():
        bad = int(np.flatnonzero(~np.isfinite(arr32))[0])
        raise CkksError(f"value {bad} is {arr32[bad]}: only finite values can be encrypted")
    bound = max_abs_value(ctx)
    peak = float(np.abs(arr32).max())
    if peak > bound:
        raise CkksError(f"a value of magnitude {peak:.3g} exceeds the CKKS bound {bound:.3g}")
    return arr32


def encrypt_to_chunks(secret_ctx: TensealContext, values: npt.ArrayLike) -> Iterator[bytes]:
    """Encrypt ``values`` and yield the stream one item at a time (bounded memory).

    Same bytes as ``encrypt_vector(secret_ctx, values).to_chunks()``, but each chunk is
    encrypted just before it is yielded, so only one ciphertext exists at a time. The input
    is validated before this returns.

    Raises:
        CkksError: no secret key in ``secret_ctx``; not a finite 1-D float vector.
    """
    require_secret_key(secret_ctx, "encrypt")
    arr = _as_values(secret_ctx, values)
    header = header_for(secret_ctx, int(arr.size), key_id(secret_ctx))
    return _encrypt_items(secret_ctx, header, arr)


def _encrypt_items(ctx: TensealContext, header: VectorHeader, arr: F32) -> Iterator[bytes]:
    yield header.to_bytes()
    for index, vec in _encrypt_chunks(ctx, header, arr):
        yield chunk_item(index, vec)


def _encrypt_chunks(
    ctx: TensealContext, header: VectorHeader, arr: F32
) -> Iterator[tuple[int, CkksVectorT]]:
    slots = header.slot_count
    for index in range(header.chunk_count):
        part = arr[index * slots : (index + 1) * slots].tolist()
        try:
            yield index, _tenseal.ckks_vector(ctx, part)
        except TENSEAL_ERRORS as exc:
            raise CkksError(f"chunk {index}: encryption failed: {exc}") from exc


class EncryptedVector:
    """An encrypted float vector held in memory as one ciphertext per chunk of N/2 values.

    Build it with :func:`encrypt_vector` (participant) or :meth:`from_chunks` (anyone holding
    a context with the same parameters); send it with :meth:`to_chunks`.
    """

    def __init__(self, header: VectorHeader, ciphertexts: list[CkksVectorT]) -> None:
        """Wrap ``ciphertexts`` described by ``header`` (use the functions above instead)."""
        if len(ciphertexts) != header.chunk_count:
            raise CkksError(
                f"{len(ciphertexts)} ciphertexts for {header.chunk_count} announced chunks"
            )
        self._header = header
        self._ciphertexts = ciphertexts

    @property
    def header(self) -> VectorHeader:
        """The stream header (length, chunk count, key id, ...)."""
        return self._header

    @property
    def length(self) -> int:
        """Number of encrypted values."""
        return self._header.length

    @property
    def chunk_count(self) -> int:
        """Number of ciphertext chunks."""
        return self._header.chunk_count

    def to_chunks(self) -> Iterator[bytes]:
        """The stream: the header, then one item per ciphertext, serialized lazily."""
        yield self._header.to_bytes()
        for index, vec in enumerate(self._ciphertexts):
            yield chunk_item(index, vec)

    @classmethod
    def from_chunks(cls, ctx: TensealContext, chunks: Iterable[bytes]) -> EncryptedVector:
        """Read a stream (from :meth:`to_chunks` or :func:`encrypt_to_chunks`) into memory.

        ``ctx`` may be the public context: reading needs the parameters only.

        Raises:
            CkksError: malformed stream, other parameters, garbage bytes.
        """
        header, payloads = read_stream(chunks)
        header.check_context(ctx)
        ciphertexts = [load_chunk(ctx, header, i, payload) for i, payload in payloads]
        return cls(header, ciphertexts)


def encrypt_vector(secret_ctx: TensealContext, values: npt.ArrayLike) -> EncryptedVector:
    """Encrypt a 1-D float vector chunk by chunk (N/2 values per ciphertext).

    Args:
        secret_ctx: the participants' context (holds the secret key).
        values: finite floating-point values, 1-D (float32 expected; others are cast).

    Raises:
        CkksError: no secret key; not a finite non-empty 1-D float vector; a value beyond
            :func:`~fedcare.privacy.ckks.context.max_abs_value`.
    """
    require_secret_key(secret_ctx, "encrypt")
    arr = _as_values(secret_ctx, values)
    header = header_for(secret_ctx, int(arr.size), key_id(secret_ctx))
    return EncryptedVector(header, [vec for _, vec in _encrypt_chunks(secret_ctx, header, arr)])


def decrypt_vector(
    secret_ctx: TensealContext,
    chunks: Iterable[bytes],
    *,
    length: int | None = None,
    quantum_bits: int | None = DEFAULT_QUANTUM_BITS,
) -> F32:
    """Decrypt a stream (a participant's vector or an aggregate) into a float32 array.

    Chunks are decrypted as they arrive into one preallocated array.

    CKKS decryption returns the values plus the ciphertext's noise, and whoever holds both a
    ciphertext and its exact decryption can solve for the secret key (Li and Micciancio,
    "On the security of homomorphic encryption on approximate numbers", Eurocrypt 2021). The
    coordinator holds the aggregate ciphertext, so the values are rounded to multiples of
    ``2**-quantum_bits`` (default 2**-20: at most 4.8e-7 off, against a noise of about 1e-8),
    which hides the noise except for values that land near a rounding boundary. This reduces
    the leak, it does not remove it: do not send decrypted aggregates to the coordinator
    unless that is accepted.

    Args:
        secret_ctx: the participants' context.
        chunks: the stream items.
        length: the expected vector length, if known (checked against the header).
        quantum_bits: round to multiples of ``2**-quantum_bits``; ``None``: raw values.

    Raises:
        CkksError: ``secret_ctx`` holds no secret key ("this context holds no secret key");
            the stream is malformed, under another key or parameters, or of another length.
    """
    require_secret_key(secret_ctx, "decrypt")
    header, payloads = read_stream(chunks)
    header.check_context(secret_ctx)
    if header.key_id != key_id(secret_ctx):
        raise CkksError("the vector was encrypted under another secret key than this context's")
    if length is not None and header.length != length:
        raise CkksError(f"vector of {header.length} values, expected {length}")
    if quantum_bits is not None and not 0 <= quantum_bits <= 52:
        raise CkksError(f"quantum_bits must be in 0..52 or None, got {quantum_bits}")
    scale = 2.0 ** (quantum_bits or 0)
    out = np.empty(header.length, dtype=np.float32)
    for index, payload in payloads:
        vec = load_chunk(secret_ctx, header, index, payload)
        try:
            plain = vec.decrypt()
        except TENSEAL_ERRORS as exc:
            raise CkksError(f"chunk {index}: decryption failed: {exc}") from exc
        values = np.asarray(plain, dtype=np.float64)
        if quantum_bits is not None:
            np.rint(values * scale, out=values)
            values /= scale
        start = index * header.slot_count
        out[start : start + values.size] = values
    return out


def write_stream(chunks: Iterable[bytes], fh: BinaryIO) -> int:
    """Write stream items to a binary file, each prefixed by its 8-byte length.

    Returns the number of bytes written. Read back with :func:`read_stream_file`.
    """
    written = 0
    for item in chunks:
        fh.write(_FILE_FRAME.pack(len(item)))
        fh.write(item)
        written += _FILE_FRAME.size + len(item)
    return written


def read_stream_file(fh: BinaryIO) -> Iterator[bytes]:
    """Yield the items :func:`write_stream` wrote, one at a time.

    Raises:
        CkksError: the file is truncated or not a stream file.
    """
    while True:
        prefix = fh.read(_FILE_FRAME.size)
        if not prefix:
            return
        if len(prefix) != _FILE_FRAME.size:
            raise CkksError("stream file truncated inside a length prefix")
        (size,) = _FILE_FRAME.unpack(prefix)
        if size > _MAX_FILE_ITEM:
            raise CkksError(f"stream file item of {size} bytes: not a stream file")
        item = fh.read(size)
        if len(item) != size:
            raise CkksError(f"stream file truncated: item of {size} bytes, {len(item)} present")
        yield item
