"""The coordinator's HTTP side: ``/status`` (JSON), ``/healthz``, ``/metrics`` and the web
dashboard at ``/`` (see :mod:`fedcare.monitoring.dashboard`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fedcare.monitoring.dashboard import SECURITY_HEADERS, Dashboard


class HttpSide:
    """A small threaded HTTP server; ``status_json`` is called on every ``GET /status``.

    ``dashboard`` serves the web dashboard at ``/`` (a page without a job name by default).
    """

    def __init__(
        self,
        host: str,
        port: int,
        status_json: Callable[[], str],
        registry: CollectorRegistry,
        healthy: Callable[[], bool],
        dashboard: Dashboard | None = None,
    ) -> None:
        side = self
        pages = dashboard if dashboard is not None else Dashboard()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/status":
                    side._send(self, 200, "application/json", status_json().encode())
                elif path == "/healthz":
                    ok = healthy()
                    side._send(self, 200 if ok else 503, "text/plain", b"ok" if ok else b"down")
                elif path == "/metrics":
                    side._send(self, 200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif (asset := pages.get(path)) is not None:
                    side._send(self, 200, asset.content_type, asset.body)
                else:
                    side._send(self, 404, "text/plain", b"not found")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        # A short poll: stop() waits for serve_forever to notice (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="http", daemon=True
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
