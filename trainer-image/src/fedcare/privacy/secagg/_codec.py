"""Compact binary framing of the protocol messages (private to :mod:`.messages`).

A message is ``b"FSA" | version (u8) | kind (u8)`` followed by its fields: unsigned
big-endian integers, strings as u16 length + UTF-8, byte strings as u32 length + bytes,
sequences as u32 count + items. Decoding rejects a wrong header, truncation and trailing
bytes with :class:`ValueError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

MAGIC = b"FSA"
VERSION = 1
_HEADER = struct.Struct(">3sBB")
#: Upper bound on decoded sequence counts (more participants than any round would have).
MAX_ITEMS = 1 << 20


class Writer:
    """Accumulates the fields of one message."""

    def __init__(self, kind: int) -> None:
        """Start a message of type ``kind``."""
        self._parts: list[bytes] = [_HEADER.pack(MAGIC, VERSION, kind)]

    def u8(self, value: int) -> None:
        """Append an unsigned byte."""
        self._parts.append(struct.pack(">B", value))

    def u32(self, value: int) -> None:
        """Append an unsigned 32-bit integer."""
        self._parts.append(struct.pack(">I", value))

    def blob(self, data: bytes) -> None:
        """Append a length-prefixed byte string."""
        self._parts.append(struct.pack(">I", len(data)))
        self._parts.append(data)

    def text(self, value: str) -> None:
        """Append a length-prefixed UTF-8 string."""
        encoded = value.encode("utf-8")
        self._parts.append(struct.pack(">H", len(encoded)))
        self._parts.append(encoded)

    def texts(self, values: Iterable[str]) -> None:
        """Append a counted sequence of strings."""
        items = list(values)
        self.u32(len(items))
        for item in items:
            self.text(item)

    def blobs(self, values: Iterable[bytes]) -> None:
        """Append a counted sequence of byte strings."""
        items = list(values)
        self.u32(len(items))
        for item in items:
            self.blob(item)

    def getvalue(self) -> bytes:
        """The encoded message."""
        return b"".join(self._parts)


class Reader:
    """Reads the fields of one message, checking every length."""

    def __init__(self, data: bytes, kind: int, name: str) -> None:
        """Check the header of ``data`` against message type ``kind`` (named ``name``)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"{name}: expected bytes, got {type(data).__name__}")
        self._view = memoryview(data)
        self._pos = 0
        self._name = name
        if len(self._view) < _HEADER.size:
            raise ValueError(f"{name}: truncated message ({len(self._view)} bytes)")
        magic, version, got = _HEADER.unpack_from(self._view, 0)
        if magic != MAGIC:
            raise ValueError(f"{name}: not a secure-aggregation message (bad magic)")
        if version != VERSION:
            raise ValueError(f"{name}: unsupported protocol version {version}")
        if got != kind:
            raise ValueError(f"{name}: message of type {got}, expected {kind}")
        self._pos = _HEADER.size

    def _take(self, size: int) -> memoryview:
        end = self._pos + size
        if end > len(self._view):
            raise ValueError(f"{self._name}: truncated message")
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        """Read an unsigned byte."""
        return int(self._take(1)[0])

    def u32(self) -> int:
        """Read an unsigned 32-bit integer."""
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def count(self) -> int:
        """Read a sequence count, bounded by :data:`MAX_ITEMS`."""
        n = self.u32()
        if n > MAX_ITEMS:
            raise ValueError(f"{self._name}: sequence of {n} items is too long")
        return n

    def blob(self) -> bytes:
        """Read a length-prefixed byte string."""
        return bytes(self._take(self.u32()))

    def text(self) -> str:
        """Read a length-prefixed UTF-8 string."""
        (size,) = struct.unpack(">H", self._take(2))
        try:
            return str(self._take(size), "utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self._name}: string is not valid UTF-8") from None

    def texts(self) -> tuple[str, ...]:
        """Read a counted sequence of strings."""
        return tuple(self.text() for _ in range(self.count()))

    def blobs(self) -> tuple[bytes, ...]:
        """Read a counted sequence of byte strings."""
        return tuple(self.blob() for _ in range(self.count()))

    def done(self) -> None:
        """Raise :class:`ValueError` if bytes are left over."""
        if self._pos != len(self._view):
            raise ValueError(f"{self._name}: {len(self._view) - self._pos} trailing bytes")


def peek_kind(data: bytes) -> int:
    """The message type byte of ``data`` (after checking magic and version)."""
    if len(data) < _HEADER.size:
        raise ValueError("truncated message")
    magic, version, kind = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError("not a secure-aggregation message (bad magic)")
    if version != VERSION:
        raise ValueError(f"unsupported protocol version {version}")
    result: int = kind
    return result
