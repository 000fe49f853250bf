"""The coordinator's web dashboard: one HTML page, a stylesheet, a script and an icon.

The assets are package data (``fedcare/monitoring/static/``) served by :class:`HttpSide` at
``/`` and ``/static/...``; the page polls ``/status`` and draws it with inline SVG. Nothing is
fetched from anywhere else (no CDN, no web font), so it works in an air-gapped hospital, and the
Content-Security-Policy restricts every kind of resource to the coordinator itself.
"""

from __future__ import annotations

import html
import os
import sys
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TextIO

#: Sent with every response of the HTTP side: resources only from this origin, no inline
#: script or style, no framing, no form posts, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

#: URL path -> (file in ``static/``, content type). Nothing else under ``/static/`` is served.
_STATIC: dict[str, tuple[str, str]] = {
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_INDEX_PATHS = frozenset({"/", "/index.html"})
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Asset:
    """A response body and its content type."""

    content_type: str
    body: bytes


@cache
def _read_static(name: str) -> bytes:
    """A file from the package's ``static/`` folder (read once per process)."""
    return resources.files("fedcare.monitoring").joinpath("static", name).read_bytes()


def render_index(job: str = "", headline: str = "") -> bytes:
    """The dashboard page for ``job`` (HTML-escaped), charting ``headline`` first."""
    template = _read_static("index.html").decode("utf-8")
    values = {
        "job": job,
        "headline": headline,
        "title": f"{job} \u00b7 fedcare dashboard" if job else "fedcare dashboard",
        "job_heading": job or "Federated job",
    }
    page = template
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
    return page.encode("utf-8")


class Dashboard:
    """The dashboard's assets for one job; :meth:`get` answers a GET path or returns None."""

    def __init__(self, job: str = "", headline: str = "") -> None:
        self.job = job
        self.headline = headline
        self._index = render_index(job, headline)

    def get(self, path: str) -> Asset | None:
        """The asset served at ``path`` (query string already removed), or None."""
        if path in _INDEX_PATHS:
            return Asset(_HTML, self._index)
        entry = _STATIC.get(path)
        if entry is None:
            return None
        name, content_type = entry
        return Asset(content_type, _read_static(name))


def dashboard_url(port: int, host: str = "127.0.0.1") -> str:
    """The dashboard's URL on a local coordinator's HTTP port."""
    return f"http://{host}:{port}/"


def _has_display() -> bool:
    """Whether :func:`webbrowser.open` can reach a graphical browser.

    On Linux without a display, :mod:`webbrowser` falls back to console browsers (lynx, w3m)
    that would take over the terminal the run prints to; ``$BROWSER`` is the user's explicit
    choice and is respected.
    """
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))


def announce(url: str, open_browser: bool, out: TextIO | None = None) -> None:
    """Print the dashboard's URL and, when asked and possible, open it in a browser.

    The browser is started from a daemon thread so a slow or blocking launcher never holds up
    the run.
    """
    stream = out if out is not None else sys.stderr
    print(f"dashboard: {url}", file=stream, flush=True)
    if not open_browser:
        return
    if not _has_display():
        print("dashboard: no display found; open the URL in a browser", file=stream, flush=True)
        return
    import webbrowser

    threading.Thread(
        target=webbrowser.open, args=(url,), kwargs={"new": 2}, name="browser", daemon=True
    ).start()
