"""gRPC transport: the one place where servers and channels are built (mutual TLS; only
enrollment, where the caller has no certificate yet, is server-authenticated)."""

from fedcare.transport.channel import (
    CHUNK_BYTES,
    GRPC_OPTIONS,
    MAX_MESSAGE_BYTES,
    add_mtls_port,
    add_tls_port,
    make_mtls_channel,
    make_server,
    make_tls_channel,
    peer_identity,
)
from fedcare.transport.tensors import (
    TensorLayout,
    flatten,
    iter_byte_chunks,
    layout_of,
    unflatten,
)

__all__ = [
    "CHUNK_BYTES",
    "GRPC_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "TensorLayout",
    "add_mtls_port",
    "add_tls_port",
    "flatten",
    "iter_byte_chunks",
    "layout_of",
    "make_mtls_channel",
    "make_server",
    "make_tls_channel",
    "peer_identity",
    "unflatten",
]
