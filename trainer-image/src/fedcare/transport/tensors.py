"""Named float32 tensors as one flat vector plus a layout, and byte chunking for streams."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from math import prod

import numpy as np
import numpy.typing as npt

#: ``(name, shape)`` of each tensor, in the order their bytes are concatenated: sorted by name,
#: the order safetensors files use, so a layout read from a downloaded model is the canonical one.
TensorLayout = tuple[tuple[str, tuple[int, ...]], ...]

F32 = npt.NDArray[np.float32]


def layout_of(named: Mapping[str, npt.NDArray[np.generic]]) -> TensorLayout:
    """The canonical layout of ``named``: tensors sorted by name."""
    return tuple((name, tuple(int(d) for d in named[name].shape)) for name in sorted(named))


def layout_size(layout: TensorLayout) -> int:
    """Number of float32 values the layout holds."""
    return sum(prod(shape) for _, shape in layout)


def flatten(named: Mapping[str, npt.NDArray[np.generic]]) -> tuple[TensorLayout, F32]:
    """Concatenate tensors (as float32, sorted by name) into one contiguous vector."""
    layout = layout_of(named)
    out = np.empty(layout_size(layout), dtype=np.float32)
    offset = 0
    for name, _ in layout:
        arr = named[name]
        n = arr.size
        out[offset : offset + n] = np.asarray(arr, dtype=np.float32).reshape(-1)
        offset += n
    return layout, out


def unflatten(layout: TensorLayout, flat: F32) -> dict[str, F32]:
    """Views into ``flat`` shaped by ``layout`` (no copies)."""
    if flat.size != layout_size(layout):
        raise ValueError(f"vector has {flat.size} values, layout needs {layout_size(layout)}")
    out: dict[str, F32] = {}
    offset = 0
    for name, shape in layout:
        n = prod(shape)
        out[name] = flat[offset : offset + n].reshape(shape)
        offset += n
    return out


def iter_byte_chunks(data: bytes | memoryview, size: int) -> Iterator[bytes]:
    """``data`` in slices of at most ``size`` bytes."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


def frame(pieces: Iterable[bytes]) -> bytes:
    """Concatenate byte strings, each preceded by its length (4 bytes, little-endian)."""
    out = bytearray()
    for piece in pieces:
        out += len(piece).to_bytes(4, "little")
        out += piece
    return bytes(out)


def unframe(data: bytes) -> list[bytes]:
    """The byte strings of :func:`frame`; ValueError when the framing is broken."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated frame header")
        size = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if pos + size > len(data):
            raise ValueError("truncated frame")
        out.append(data[pos : pos + size])
        pos += size
    return out
