"""The trainer's side of the wire: calls with retry while the coordinator is not reachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from safetensors.numpy import load as load_safetensors

from fedcare.transport import CHUNK_BYTES, TensorLayout, iter_byte_chunks
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger("fedcare.trainer")

T = TypeVar("T")

#: Codes worth retrying: the coordinator is starting, restarting or briefly overloaded.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ConnectTimeout(Exception):
    """The coordinator stayed unreachable for the whole retry budget."""


def with_retry(call: Callable[[], T], budget_seconds: float, what: str) -> T:
    """Run ``call``, retrying retryable errors with exponential backoff (0.2 s .. 5 s)."""
    deadline = time.monotonic() + budget_seconds
    delay = 0.2
    while True:
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or time.monotonic() + delay > deadline:
                if err.code() in RETRYABLE:
                    raise ConnectTimeout(
                        f"{what}: coordinator unreachable for {budget_seconds:g}s ({err.details()})"
                    ) from None
                raise
            log.info(
                "%s: coordinator not reachable (%s); retrying in %.1fs",
                what,
                err.code().name,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def download(
    stub: pb_grpc.CoordinatorStub, session_id: str, version: str
) -> dict[str, npt.NDArray[np.float32]]:
    """Fetch a model version (safetensors, chunked) as named float32 arrays."""
    buf = bytearray()
    for chunk in stub.DownloadModel(pb.ModelRequest(session_id=session_id, model_version=version)):
        if chunk.total_bytes and not buf:
            buf = bytearray()
        buf += chunk.data
    return {k: v.astype(np.float32, copy=False) for k, v in load_safetensors(bytes(buf)).items()}


def update_messages(
    header: pb.UpdateHeader,
    layout: TensorLayout,
    payload: npt.NDArray[np.float32] | bytes | Iterator[bytes],
) -> Iterator[pb.UpdateChunk]:
    """The client stream of an update: header (with the tensor layout), then byte chunks.

    ``payload`` is the float32 delta, already-encoded bytes (a masked input), or an iterator
    of pieces that each travel as one message (CKKS ciphertexts).
    """
    header.tensors.extend(pb.TensorInfo(name=n, shape=list(s)) for n, s in layout)
    yield pb.UpdateChunk(header=header)
    if isinstance(payload, Iterator):
        for piece in payload:
            yield pb.UpdateChunk(data=piece)
        return
    if isinstance(payload, bytes):
        view = memoryview(payload)
    else:
        view = np.ascontiguousarray(payload, dtype="<f4").data.cast("B")
    for piece in iter_byte_chunks(view, CHUNK_BYTES):
        yield pb.UpdateChunk(data=piece)
