"""Server and channel construction with mutual TLS and explicit message-size limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from fedcare.errors import PkiError
from fedcare.pki import identity_of
from fedcare.spec.config import TlsFiles

#: Model bytes travel in chunks of this size (streamed, so memory stays bounded).
CHUNK_BYTES = 1 << 20
#: Largest single message either side accepts: one chunk plus headroom for headers.
MAX_MESSAGE_BYTES = 8 << 20

GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
#: Clients ping every 20 s so a dead coordinator is noticed on idle task streams.
_CLIENT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
#: The server must accept those pings, or it answers GOAWAY "too many pings" (gRPC's default
#: minimum is 5 minutes between pings without data).
_SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise PkiError(f"{path}: cannot read TLS file: {err.strerror}") from None


def make_server(
    max_workers: int, interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = ()
) -> grpc.Server:
    """A gRPC server with fedcare's options; add ports with :func:`add_mtls_port`."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=list(interceptors),
        options=[*GRPC_OPTIONS, *_SERVER_OPTIONS],
        maximum_concurrent_rpcs=None,
    )


def add_mtls_port(server: grpc.Server, address: str, tls: TlsFiles) -> int:
    """Listen on ``address`` with TLS that requires a client certificate from the job's CA."""
    creds = grpc.ssl_server_credentials(
        [(_read(tls.key), _read(tls.cert))],
        root_certificates=_read(tls.ca),
        require_client_auth=True,
    )
    port = server.add_secure_port(address, creds)
    if port == 0:
        raise PkiError(f"cannot listen on {address}")
    return port


def add_tls_port(server: grpc.Server, address: str, cert: str, key: str) -> int:
    """Listen on ``address`` with server-authenticated TLS only (no client certificate).

    Only for enrollment, where the caller has no certificate yet and proves itself with a
    one-time token instead; every other service requires mutual TLS (:func:`add_mtls_port`).
    """
    creds = grpc.ssl_server_credentials([(_read(key), _read(cert))], require_client_auth=False)
    port = server.add_secure_port(address, creds)
    if port == 0:
        raise PkiError(f"cannot listen on {address}")
    return port


def make_tls_channel(target: str, ca: str, server_name: str) -> grpc.Channel:
    """A channel that checks the server against the job CA ``ca`` and presents no certificate
    (enrollment only)."""
    creds = grpc.ssl_channel_credentials(root_certificates=_read(ca))
    options: list[tuple[str, int | str]] = [
        *GRPC_OPTIONS,
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.enable_retries", 0),
    ]
    return grpc.secure_channel(target, creds, options=options)


def make_mtls_channel(target: str, tls: TlsFiles, server_name: str) -> grpc.Channel:
    """A channel that presents this process's certificate and checks the server's."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca),
        private_key=_read(tls.key),
        certificate_chain=_read(tls.cert),
    )
    options: list[tuple[str, int | str]] = [
        *GRPC_OPTIONS,
        *_CLIENT_OPTIONS,
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.enable_retries", 0),
    ]
    return grpc.secure_channel(target, creds, options=options)


def peer_identity(context: grpc.ServicerContext) -> tuple[str, str] | None:
    """``(common_name, role)`` of the verified client certificate, or ``None``."""
    auth: Mapping[str, Sequence[bytes]] = context.auth_context()  # type: ignore[assignment]
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None
    try:
        return identity_of(bytes(pems[0]))
    except PkiError:
        return None
