"""Record every request message a server receives, post-TLS, for privacy audits.

With ``captureDir`` set in the coordinator's config, each received message is appended to
``<dir>/received.bin`` as its serialized protobuf bytes, each preceded by a line
``#<rpc> <call> <length>`` (``call`` numbers the RPC calls, so the messages of concurrent
client streams can be told apart). It shows exactly what left the sites: an auditor (or a
test) can search it for record values. Off by default.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc


class CaptureInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """A server interceptor that tees request messages into a file."""

    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self._dir / "received.bin", "ab")  # noqa: SIM115 - lives with the server
        self._lock = threading.Lock()
        self._calls = itertools.count(1)

    def _record(self, method: str, call: int, message: Any) -> None:
        data = message.SerializeToString()
        with self._lock:
            self._file.write(f"\n#{method} {call} {len(data)}\n".encode())
            self._file.write(data)
            self._file.flush()

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        """Wrap the handler so its requests are recorded before the servicer sees them."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)

        def tee(requests: Iterator[Any]) -> Iterator[Any]:
            call = next(self._calls)
            for msg in requests:
                self._record(method, call, msg)
                yield msg

        if handler.request_streaming:
            inner = handler.stream_unary or handler.stream_stream

            def streaming(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                return inner(tee(requests), context)

            factory = (
                grpc.stream_unary_rpc_method_handler
                if handler.stream_unary
                else grpc.stream_stream_rpc_method_handler
            )
            return factory(
                streaming,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_unary = handler.unary_unary or handler.unary_stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            self._record(method, next(self._calls), request)
            return inner_unary(request, context)

        factory_u = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.unary_stream_rpc_method_handler
        )
        return factory_u(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
