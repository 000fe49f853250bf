"""Reading and checking the bytes of an uploaded update (no round state here)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt

from fedcare.transport import TensorLayout
from fedcare.transport.tensors import F32


@dataclass(frozen=True)
class Rejected(Exception):
    """An RPC refused with a gRPC status code, a metric reason and a human detail."""

    code: grpc.StatusCode
    reason: str
    detail: str


#: Refusals that say the update itself is bad (as opposed to arriving at the wrong time).
CONTENT_REASONS = frozenset(
    {"wrong_shape", "wrong_size", "non_finite", "bad_sample_count", "malformed", "wrong_encoding"}
)


def read_exact(chunks: Iterator[bytes], nbytes: int) -> npt.NDArray[np.uint8]:
    """Copy streamed bytes into one buffer of exactly ``nbytes`` (refusing more or fewer)."""
    out = np.empty(nbytes, dtype=np.uint8)
    raw = out.data.cast("B")
    filled = 0
    for chunk in chunks:
        end = filled + len(chunk)
        if end > nbytes:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "wrong_size",
                f"update is larger than the expected {nbytes} bytes",
            )
        raw[filled:end] = chunk
        filled = end
    if filled != nbytes:
        raise Rejected(
            grpc.StatusCode.INVALID_ARGUMENT,
            "wrong_size",
            f"update has {filled} bytes, {nbytes} expected",
        )
    return out


def read_vector(chunks: Iterator[bytes], layout: TensorLayout, size: int) -> F32:
    """Read a little-endian float32 delta of ``size`` values and refuse NaN/Inf."""
    vector = read_exact(chunks, size * 4).view("<f4")
    if not np.isfinite(vector).all():
        raise Rejected(
            grpc.StatusCode.INVALID_ARGUMENT,
            "non_finite",
            f"update contains NaN or Inf (first in tensor {first_non_finite(layout, vector)!r})",
        )
    return vector.astype(np.float32, copy=False)


def first_non_finite(layout: TensorLayout, vector: F32) -> str:
    """Name of the tensor holding the first NaN/Inf of ``vector``."""
    index = int(np.flatnonzero(~np.isfinite(vector))[0])
    offset = 0
    for name, shape in layout:
        offset += math.prod(shape)
        if index < offset:
            return name
    return "?"


def layout_diff(want: TensorLayout, got: TensorLayout) -> str:
    """A human description of how an update's tensors differ from the model's."""
    wd, gd = dict(want), dict(got)
    for name, shape in want:
        if name not in gd:
            return f"update lacks tensor {name!r}"
        if gd[name] != shape:
            return f"tensor {name!r} has shape {list(gd[name])}, the model's is {list(shape)}"
    extra = [n for n in gd if n not in wd]
    if extra:
        return f"update has unknown tensor {extra[0]!r}"
    return "tensors are not in the model's order"


def payload_digest(payload: object) -> tuple[str, int]:
    """sha256 and size of an update's bytes as the coordinator received them (audit trail)."""
    pieces: list[bytes] | list[memoryview]
    if isinstance(payload, np.ndarray):
        pieces = [payload.data.cast("B")]
    elif isinstance(payload, bytes):
        pieces = [payload]
    else:
        assert isinstance(payload, list)
        pieces = payload
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest(), sum(len(p) for p in pieces)
