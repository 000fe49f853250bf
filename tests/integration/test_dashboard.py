"""The web dashboard in a real browser: headless Chromium (over the DevTools protocol) watches a
real local run, and the chart, the participants table and the model versions follow the rounds.

Skipped when no Chromium is installed (``apt-get install chromium``; ``scripts/setup.sh`` does it
when it runs as root). A screenshot of the finished job goes to ``test-artifacts/``.
"""

from __future__ import annotations

import io
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fedcare.local import LocalRun
from fedcare.monitoring import HttpSide
from fedcare.monitoring.dashboard import Dashboard
from fedcare.spec import CoordinatorConfig, FederatedJob, FederatedJobStatus, load_model
from tests.integration.actors import status as job_status
from tests.integration.conftest import JobFactory
from tests.support.chromium import Chromium, find_chromium

pytest.importorskip("websocket", reason="websocket-client (PyPI) drives Chromium")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROUNDS = 5

# DOM probes, evaluated in the page.
POINTS = "document.querySelectorAll('#charts .chart')[0].querySelectorAll('circle.pt').length"
SITE_ROWS = "document.querySelectorAll('#participants tbody tr').length"
SNAPSHOT = f"""JSON.stringify({{
  phase: document.body.dataset.phase,
  points: {POINTS},
  sites: {SITE_ROWS},
  versions: document.querySelectorAll('#versions tbody tr').length
}})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """One headless Chromium for the module (skips when Chromium is not installed)."""
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "Chromium is not installed: `apt-get install chromium` "
            "(scripts/setup.sh installs it when run as root with apt-get)"
        )
    with Chromium(exe, tmp_path_factory.mktemp("chromium") / "profile") as chromium:
        yield chromium


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def _start(manifest: Path, workdir: Path) -> LocalRun:
    """A local run whose coordinator keeps serving its final status for a minute."""
    run = LocalRun(job=load_model(FederatedJob, manifest), workdir=workdir)
    run.prepare()
    config = load_model(CoordinatorConfig, run.coordinator_config)
    config.linger_seconds = 60.0
    run.coordinator_config.write_text(json.dumps(config.to_json_dict()))
    run.start_coordinator()
    return run


def _check_png(data: bytes) -> None:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width == 1280 and image.height >= 700, image.size
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 50, "the screenshot is nearly uniform"
    assert len(data) > 20_000


def test_dashboard_follows_a_local_run(
    make_job: JobFactory, tmp_path: Path, browser: Chromium
) -> None:
    run = _start(
        make_job(
            name="readmission-dash",
            rounds=ROUNDS,
            training={"epochs": 20, "batchSize": 16, "optimizer": "adam", "learningRate": 0.05},
        ),
        tmp_path / "run",
    )
    try:
        url = f"http://127.0.0.1:{run.http_port}/"
        code, headers, body = _get(url)
        assert code == 200 and headers["Content-Type"].startswith("text/html")
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        assert b"http://" not in body and b"https://" not in body  # nothing from elsewhere
        assert _get(url + "static/dashboard.js")[0] == 200
        assert _get(url + "static/../cli.py")[0] == 404

        # Before any trainer: the page shows the job waiting, an empty chart, no versions.
        browser.navigate(url)
        assert browser.evaluate("document.getElementById('job').textContent") == (
            "readmission-dash"
        )
        browser.wait_until(
            "['Pending', 'WaitingForParticipants'].includes(document.body.dataset.phase)"
        )
        assert browser.evaluate(POINTS) == 0
        assert browser.evaluate("document.querySelector('#charts .placeholder') !== null")

        for p in run.job.spec.participants:
            run.start_trainer(p)
        # Mid-run: once a round is in, freeze one site (SIGSTOP). The next round waits for its
        # update, so the page can be checked while the job trains; then it is let go.
        frozen = run.processes["trainer-hospital-c"]
        deadline = time.monotonic() + 60
        while not job_status(run).rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        frozen.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 20
            while True:
                done = len(job_status(run).rounds)
                snap = json.loads(browser.evaluate(SNAPSHOT))
                if snap == {"phase": "Training", "points": done, "sites": 3, "versions": done}:
                    break
                assert time.monotonic() < deadline, f"page {snap}, {done} rounds done"
                time.sleep(0.1)
            assert 1 <= done < ROUNDS
            browser.screenshot(ARTIFACTS / "dashboard-training.png")
        finally:
            frozen.send_signal(signal.SIGCONT)

        browser.wait_until(
            f"document.body.dataset.phase === 'Succeeded' && {POINTS} === {ROUNDS}", timeout=60
        )
        status = job_status(run)
        assert [r.round for r in status.rounds] == list(range(1, ROUNDS + 1))
        dom = json.loads(
            browser.evaluate(
                """JSON.stringify({
              charts: [...document.querySelectorAll('#charts .chart')].map(c => ({
                metric: c.dataset.metric,
                rounds: [...c.querySelectorAll('circle.pt')].map(p => Number(p.dataset.round)),
              })),
              sites: [...document.querySelectorAll('#participants tbody tr')].map(tr =>
                [...tr.cells].map(td => td.textContent)),
              versions: [...document.querySelectorAll('#versions tbody tr')].map(tr =>
                tr.cells[1].textContent),
              latest: document.getElementById('latest').textContent,
              sha: document.getElementById('latest-sub').textContent,
            })"""
            )
        )
        # One chart per headline metric, the job's headline (AUROC) first; a point per round.
        assert dom["charts"][0]["metric"] == "auroc"
        assert all(c["rounds"] == list(range(1, ROUNDS + 1)) for c in dom["charts"]), dom
        # A row per site: name, state, samples, last round, epsilon.
        by_name = {p.name: p for p in status.participants}
        assert sorted(row[0] for row in dom["sites"]) == sorted(by_name)
        for name, _state, samples, last_round, _eps in dom["sites"]:
            assert samples == f"{by_name[name].samples:,}"
            assert last_round == str(ROUNDS)
        assert dom["versions"] == [r.model_version for r in reversed(status.rounds)]
        assert status.latest_model is not None
        assert dom["latest"] == status.latest_model.version
        assert status.latest_model.sha256[:12] in dom["sha"]

        assert browser.page_errors() == []
        _check_png(browser.screenshot(ARTIFACTS / "dashboard.png"))
    finally:
        run.stop()


HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def test_dashboard_escapes_every_text(browser: Chromium) -> None:
    """Names and messages are shown as text, never parsed as markup."""
    status = FederatedJobStatus.model_validate(
        {
            "phase": "Training",
            "message": HOSTILE,
            "currentRound": 1,
            "totalRounds": 3,
            "participants": [
                {"name": HOSTILE, "state": "Training", "samples": 10, "message": HOSTILE},
                {"name": "st-mary", "state": "Connected", "samples": 20},
            ],
            "conditions": [
                {"type": "Degraded", "status": "True", "reason": "Test", "message": HOSTILE}
            ],
        }
    )
    document = json.dumps(status.to_json_dict())
    side = HttpSide(
        "127.0.0.1",
        0,
        lambda: document,
        CollectorRegistry(),
        healthy=lambda: True,
        dashboard=Dashboard(job=f'"><script>window.pwned=3</script>{HOSTILE}', headline="auroc"),
    )
    side.start()
    try:
        browser.navigate(f"http://127.0.0.1:{side.port}/")
        browser.wait_until(f"{SITE_ROWS} === 2")
        result = json.loads(
            browser.evaluate(
                """JSON.stringify({
              pwned: window.pwned === undefined ? null : window.pwned,
              imgs: document.querySelectorAll('img').length,
              scripts: document.querySelectorAll('script').length,
              names: [...document.querySelectorAll('#participants td.name')].map(
                td => td.firstChild.textContent),
              message: document.getElementById('message').textContent,
              job: document.getElementById('job').textContent,
            })"""
            )
        )
        assert result["pwned"] is None
        assert result["imgs"] == 0 and result["scripts"] == 1  # only dashboard.js
        assert HOSTILE in result["names"]
        assert result["message"] == HOSTILE
        assert result["job"].endswith(HOSTILE)
        assert browser.page_errors() == []
    finally:
        side.stop()
