"""The web dashboard without a browser: what the HTTP side serves, escaping, and
``fedcare run --dashboard`` (the browser test is tests/integration/test_dashboard.py)."""

from __future__ import annotations

import io
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fedcare.cli import main
from fedcare.monitoring import HttpSide
from fedcare.monitoring import dashboard as dash
from fedcare.monitoring.dashboard import CONTENT_SECURITY_POLICY, Dashboard, render_index
from fedcare.spec import FederatedJobStatus, Phase

ASSETS = ("static/dashboard.js", "static/dashboard.css", "static/favicon.svg")


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


@pytest.fixture
def side() -> Iterator[str]:
    """An HTTP side on a free port serving an empty status; yields its base URL."""
    http = HttpSide(
        "127.0.0.1",
        0,
        lambda: "{}",
        CollectorRegistry(),
        healthy=lambda: True,
        dashboard=Dashboard("readmission", "auroc"),
    )
    http.start()
    yield f"http://127.0.0.1:{http.port}/"
    http.stop()


def test_page_and_assets_come_from_the_coordinator_only(side: str) -> None:
    code, headers, page = _get(side)
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert b'<meta name="fedcare-job" content="readmission">' in page
    assert b'<meta name="fedcare-headline" content="auroc">' in page
    assert b"<style" not in page and b" style=" not in page  # CSP: no inline style
    assert b"<script>" not in page  # CSP: no inline script
    for asset in ASSETS:
        assert asset.encode() in page
        code, headers, body = _get(side + asset)
        assert code == 200 and len(body) > 100, asset
        assert headers["X-Content-Type-Options"] == "nosniff"
        # Nothing from the network: no CDN, no web font (the SVG namespace is only a name).
        text = body.replace(b"http://www.w3.org/2000/svg", b"")
        for needle in (b"http://", b"https://", b"@import", b"@font-face", b"url(//"):
            assert needle not in text, (asset, needle)
    assert _get(side + "static/dashboard.js")[1]["Content-Type"].startswith("text/javascript")
    assert _get(side + "index.html")[0] == 200


def test_everything_else_is_404_and_status_still_served(side: str) -> None:
    for path in ("static/", "static/../http.py", "static/index.html", "static/nope.js", "x"):
        assert _get(side + path)[0] == 404, path
    code, headers, body = _get(side + "status?x=1")
    assert (code, body) == (200, b"{}")
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert _get(side + "healthz")[0] == 200


def test_job_name_is_escaped_in_the_page() -> None:
    page = render_index('"><script>alert(1)</script>', "auroc").decode()
    assert "<script>alert" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{" not in render_index().decode()


def test_the_script_never_parses_text_as_markup() -> None:
    """The script renders with textContent only; no innerHTML, eval or document.write."""
    script = (Path(dash.__file__).parent / "static" / "dashboard.js").read_text()
    for needle in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "document.write"):
        assert needle not in script, needle
    assert 'fetch("status"' in script  # relative: works behind a path prefix (kubectl proxy)


# ------------------------------------------------------------------ fedcare run --dashboard
@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the local run: it reports HTTP port 45678 and succeeds at once."""
    seen: dict[str, Any] = {}

    def run(path: str, **kwargs: Any) -> FederatedJobStatus:
        seen.update(kwargs, path=path)
        if kwargs.get("on_http") is not None:
            kwargs["on_http"](kwargs.get("http_port") or 45678)
        return FederatedJobStatus(phase=Phase.SUCCEEDED, message="done")

    monkeypatch.setattr("fedcare.local.run", run)
    return seen


class Browser:
    """Records the URLs given to ``webbrowser.open`` (nothing is launched)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.called = threading.Event()

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.urls.append(url)
        self.called.set()
        return True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Browser:
    """A fake ``webbrowser.open``; a display is pretended."""
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    monkeypatch.setenv("DISPLAY", ":0")
    return browser


def test_run_dashboard_prints_the_url_and_opens_a_browser(
    fake_run: dict[str, Any], opened: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "job.yaml", "--dashboard"]) == 0
    assert "dashboard: http://127.0.0.1:45678/" in capsys.readouterr().err
    assert opened.called.wait(5)
    assert opened.urls == ["http://127.0.0.1:45678/"]
    assert fake_run["http_port"] == 0


def test_run_dashboard_port_and_no_browser(
    fake_run: dict[str, Any], opened: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "job.yaml", "--dashboard", "--dashboard-port", "8123", "--no-browser"]) == 0
    assert "dashboard: http://127.0.0.1:8123/" in capsys.readouterr().err
    assert fake_run["http_port"] == 8123
    assert opened.urls == []


def test_run_without_dashboard_opens_nothing(
    fake_run: dict[str, Any], opened: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "job.yaml", "--json"]) == 0
    out = capsys.readouterr()
    assert "dashboard" not in out.err and out.out.startswith("{")
    assert fake_run["on_http"] is None and opened.urls == []


def test_run_refuses_a_bad_port(
    fake_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "job.yaml", "--dashboard", "--dashboard-port", "70000"]) == 2
    assert "--dashboard-port" in capsys.readouterr().err
    assert fake_run == {}


def test_no_display_means_no_console_browser(
    monkeypatch: pytest.MonkeyPatch, opened: Browser
) -> None:
    monkeypatch.setattr(dash.sys, "platform", "linux")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    dash.announce("http://127.0.0.1:1/", open_browser=True, out=out)
    assert "no display found" in out.getvalue()
    assert opened.urls == []
