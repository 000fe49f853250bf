"""The coordinator's side: add encrypted vectors without ever decrypting them."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import BinaryIO

from fedcare.privacy.ckks import _tenseal
from fedcare.privacy.ckks._tenseal import TENSEAL_ERRORS, CkksVectorT, TensealContext
from fedcare.privacy.ckks.context import KEY_ID_BYTES, slot_count
from fedcare.privacy.ckks.errors import CkksError
from fedcare.privacy.ckks.vector import (
    CHUNK_FRAME_SIZE,
    HEADER_SIZE,
    VectorHeader,
    chunk_item,
    header_for,
    load_chunk,
    read_stream,
    read_stream_file,
    write_stream,
)

_ROLLBACK_ERRORS: tuple[type[BaseException], ...] = (OSError, CkksError, *TENSEAL_ERRORS)


class CiphertextSum:
    """Running homomorphic sum of participants' encrypted vectors.

    Holds one ciphertext per chunk (memory: one encrypted model, about 100 MB per 1M values
    at N=8192, whatever the number of participants). Each :meth:`add` reads one
    participant's stream chunk by chunk and adds every ciphertext in place (``add_``; no
    ``copy()``). The public context is enough: nothing here decrypts.

    :meth:`add` is atomic: if the stream turns out malformed halfway, or the transport fails
    mid-upload (the iterator raises), the chunks already added are subtracted again and the
    sum is exactly what it was before (CKKS addition is exact modular arithmetic). To do so
    the ciphertext bytes of the upload in progress are spooled to an anonymous temporary file
    (in ``spool_dir``, default the system temporary directory), never kept in memory. The
    first participant needs no spool. Calls are serialized by a lock; the lock is held while
    the stream is consumed, so a slow uploader delays the others (receive uploads to files
    first with :func:`~fedcare.privacy.ckks.write_stream` if that matters).

    Args:
        public_ctx: a context with the parameters (the coordinator's public context).
        length: number of values of every vector added.
        key_id: the expected :func:`~fedcare.privacy.ckks.key_id`, if known; otherwise the
            first vector added fixes it, and later vectors under another key are refused.
        spool_dir: directory of the rollback spool file.
    """

    def __init__(
        self,
        public_ctx: TensealContext,
        length: int,
        *,
        key_id: bytes | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Start an empty sum of ``length``-value vectors."""
        if length < 1:
            raise CkksError(f"vector length must be positive, got {length}")
        if key_id is not None and len(key_id) != KEY_ID_BYTES:
            raise CkksError(f"key id of {len(key_id)} bytes, expected {KEY_ID_BYTES}")
        self._ctx = public_ctx
        self._length = length
        self._slots = slot_count(public_ctx)
        self._parms_id = _tenseal.parms_id(public_ctx)
        self._key_id = key_id
        self._spool_dir = spool_dir
        self._acc: list[CkksVectorT] | None = None
        self._count = 0
        self._broken: str | None = None
        self._lock = threading.Lock()

    @property
    def length(self) -> int:
        """Number of values of each vector."""
        return self._length

    @property
    def count(self) -> int:
        """Number of vectors added so far."""
        return self._count

    @property
    def key_id(self) -> bytes | None:
        """Key id of the vectors added (``None`` until known)."""
        return self._key_id

    def add(self, chunks: Iterable[bytes]) -> int:
        """Fold one participant's encrypted vector (its stream) into the sum.

        Returns the number of stream bytes read.

        Raises:
            CkksError: wrong length, other parameters or key, mismatched chunk count,
                garbage bytes. The sum is unchanged. An exception raised by ``chunks``
                itself (e.g. the transport's) propagates unchanged, the sum also unchanged.
        """
        with self._lock:
            self._check_usable()
            header, payloads = read_stream(chunks)
            self._check_header(header)
            received = HEADER_SIZE
            if self._acc is None:
                acc: list[CkksVectorT] = []
                for index, payload in payloads:
                    acc.append(load_chunk(self._ctx, header, index, payload))
                    received += len(payload) + CHUNK_FRAME_SIZE
                self._acc = acc
            else:
                received += self._fold(header, payloads, self._acc)
            if self._key_id is None:
                self._key_id = header.key_id
            self._count += 1
            return received

    def _fold(
        self,
        header: VectorHeader,
        payloads: Iterator[tuple[int, bytes]],
        acc: list[CkksVectorT],
    ) -> int:
        """Add every chunk into ``acc`` in place; undo them all if anything fails."""
        received = 0
        added = 0
        try:
            spool_file = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise CkksError(f"cannot create the rollback spool file: {exc}") from exc
        with spool_file as spool:
            try:
                for index, payload in payloads:
                    vec = load_chunk(self._ctx, header, index, payload)
                    write_stream([payload], spool)
                    try:
                        acc[index].add_(vec)
                    except TENSEAL_ERRORS as exc:
                        raise CkksError(f"chunk {index}: cannot be added: {exc}") from exc
                    added += 1
                    received += len(payload) + CHUNK_FRAME_SIZE
            except BaseException:
                self._rollback(header, spool, acc, added)
                raise
        return received

    def _rollback(
        self, header: VectorHeader, spool: BinaryIO, acc: list[CkksVectorT], added: int
    ) -> None:
        """Subtract the first ``added`` spooled chunks from ``acc``."""
        try:
            spool.flush()
            spool.seek(0)
            for index, payload in enumerate(islice(read_stream_file(spool), added)):
                acc[index].sub_(load_chunk(self._ctx, header, index, payload))
        except _ROLLBACK_ERRORS as exc:
            self._broken = f"rolling back a failed add failed ({exc})"
            raise CkksError(f"the aggregate is unusable: {self._broken}") from exc

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise CkksError(f"the aggregate is unusable: {self._broken}")

    def _check_header(self, header: VectorHeader) -> None:
        if header.parms_id != self._parms_id or header.slot_count != self._slots:
            raise CkksError(
                "the vector was encrypted under other CKKS parameters than this context's"
            )
        if header.length != self._length:
            raise CkksError(f"vector of {header.length} values, this aggregate sums {self._length}")
        if header.summands != 1:
            raise CkksError(
                f"the stream is already a sum of {header.summands} vectors, not one update"
            )
        if self._key_id is not None and header.key_id != self._key_id:
            raise CkksError("the vector was encrypted under another key than the aggregate's")

    def header(self) -> VectorHeader:
        """Header of the aggregate stream (``summands`` = :attr:`count`).

        Raises:
            CkksError: nothing was added yet.
        """
        if self._acc is None or self._key_id is None:
            raise CkksError("the aggregate is empty: no vector was added")
        return header_for(self._ctx, self._length, self._key_id, summands=self._count)

    def to_chunks(self) -> Iterator[bytes]:
        """The encrypted sum as a stream, serialized one chunk at a time.

        Decrypt it with :func:`~fedcare.privacy.ckks.decrypt_vector`. Do not :meth:`add`
        while a stream is being consumed (the chunks not yet serialized would include it).

        Raises:
            CkksError: nothing was added yet (raised before the first item).
        """
        with self._lock:
            self._check_usable()
            header = self.header()
            acc = self._acc or []
        return self._items(header, acc)

    @staticmethod
    def _items(header: VectorHeader, acc: list[CkksVectorT]) -> Iterator[bytes]:
        yield header.to_bytes()
        for index, vec in enumerate(acc):
            yield chunk_item(index, vec)
