"""Headless Chromium driven over the Chrome DevTools protocol (CDP), for browser tests.

Only the few CDP commands the dashboard test needs: open a page, evaluate JavaScript, wait for a
condition, take a screenshot, and collect the page's errors (exceptions, console errors and
Content-Security-Policy violations). The websocket client is PyPI ``websocket-client``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

#: Names of a Chromium executable, tried in this order after ``$FEDCARE_CHROMIUM``.
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """The Chromium executable to use, or None when none is installed."""
    explicit = os.environ.get("FEDCARE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    """A CDP command failed, or the page threw."""


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(
        self, executable: str, profile: Path, width: int = 1280, height: int = 900
    ) -> None:
        self.executable = executable
        self.profile = profile
        self.width = width
        self.height = height
        #: Every CDP event received, in order (method, params).
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._session = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: Any = None

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start the browser and attach to a fresh page."""
        import websocket  # websocket-client

        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        log = open(self.profile.parent / f"{self.profile.name}.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                self.executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CdpError(f"chromium exited with {self._proc.returncode} at start-up")
            with contextlib.suppress(OSError):
                lines = port_file.read_text().split()
            if len(lines) >= 2:
                break
            time.sleep(0.05)
        else:
            self.close()
            raise CdpError(f"chromium did not open its DevTools port within {timeout:g}s")
        self._ws = websocket.create_connection(
            f"ws://127.0.0.1:{lines[0]}{lines[1]}", timeout=30, suppress_origin=True
        )
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.resize(self.width, self.height)

    def close(self) -> None:
        """Close the browser (politely, then by force)."""
        if self._ws is not None:
            import websocket

            quiet = (OSError, websocket.WebSocketException)
            # No reply is awaited: the browser may be gone before it sends one.
            with contextlib.suppress(*quiet):
                self._ws.send(json.dumps({"id": next(self._ids), "method": "Browser.close"}))
            with contextlib.suppress(*quiet):
                self._ws.close()
            self._ws = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    # ------------------------------------------------------------- protocol
    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command (to the page's session once attached) and return its result."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if self._session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append((reply["method"], reply.get("params", {})))

    def resize(self, width: int, height: int) -> None:
        """Set the page's viewport (CSS pixels, scale 1)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        """Load ``url`` and wait until the document is complete."""
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigate {url}: {result['errorText']}")
        self.wait_until("document.readyState === 'complete'", timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page; its value, JSON-converted."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_until(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {expression} (last {value!r})"
        )

    def screenshot(self, path: Path, full_page: bool = True) -> bytes:
        """A PNG of the page (the whole document when ``full_page``), written to ``path``."""
        height = self.height
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            content = metrics.get("cssContentSize") or metrics["contentSize"]
            height = max(self.height, int(content["height"]) + 1)
            self.resize(self.width, height)
        try:
            shot = self.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": False,
                    "clip": {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1},
                },
            )
        finally:
            if full_page:
                self.resize(self.width, self.height)
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def page_errors(self) -> list[str]:
        """Uncaught exceptions, console errors and log errors (CSP violations among them)."""
        self.send("Runtime.evaluate", {"expression": "0"})  # drain pending events
        errors: list[str] = []
        for method, params in self.events:
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(f"exception: {details.get('exception', details)}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(f"console.error: {params.get('args')}")
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    errors.append(f"{entry.get('source')}: {entry.get('text')}")
        return errors
