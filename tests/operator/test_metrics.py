"""The operator's Prometheus metrics (what the Helm chart's Grafana dashboard plots besides the
coordinators' own), the settings that turn them on, and the start-up hook that serves them."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path
from typing import Any

import kopf
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fedcare.pki import ROLE_OBSERVER, create_ca, issue_client_cert, issue_server_cert
from fedcare.spec import FederatedJobStatus, ParticipantState, ParticipantStatus, Phase, TlsFiles
from fedcare.transport import make_mtls_channel
from fedcare_operator import handlers
from fedcare_operator.metrics import OperatorMetrics
from fedcare_operator.settings import OperatorSettings, SettingsError
from fedcare_operator.status_daemon import JobGone, StatusFollower
from tests.operator.test_status import _Coordinator, _MemorySink, _reported, _serve
from tests.support.operator import free_port


def _text(metrics: OperatorMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(name, labels) -> value`` of every sample in an exposition text."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


JOB = {"namespace": "cardiology", "job": "readmission"}


def _status() -> FederatedJobStatus:
    status = _reported(Phase.TRAINING, [1, 2], epsilon_spent=1.5)
    status.participants = [
        ParticipantStatus(name="st-mary", state=ParticipantState.TRAINING, epsilon_spent=1.25),
        ParticipantStatus(name="city-general", state=ParticipantState.CONNECTED),
    ]
    return status


def test_a_status_becomes_phase_round_metrics_and_privacy_spend() -> None:
    metrics = OperatorMetrics()
    metrics.observe("cardiology", "readmission", _status())
    got = _samples(_text(metrics))
    assert got[_key("fedcare_job_phase", **JOB, phase="Training")] == 1.0
    assert got[_key("fedcare_job_phase", **JOB, phase="Pending")] == 0.0
    assert got[_key("fedcare_job_completed_round", **JOB)] == 2.0
    assert got[_key("fedcare_job_round_metric", **JOB, metric="auroc")] == 0.7
    assert got[_key("fedcare_job_epsilon_spent", **JOB)] == 1.5
    assert got[_key("fedcare_participant_epsilon_spent", **JOB, participant="st-mary")] == 1.25
    # No DP spend reported for a site: no series for it.
    assert _key("fedcare_participant_epsilon_spent", **JOB, participant="city-general") not in got
    # The next status moves the phase; one series per phase stays.
    metrics.observe("cardiology", "readmission", _reported(Phase.SUCCEEDED, [1, 2, 3]))
    got = _samples(_text(metrics))
    assert got[_key("fedcare_job_phase", **JOB, phase="Succeeded")] == 1.0
    assert got[_key("fedcare_job_phase", **JOB, phase="Training")] == 0.0
    assert got[_key("fedcare_job_completed_round", **JOB)] == 3.0
    assert len([k for k in got if k[0] == "fedcare_job_phase"]) == len(Phase)


def test_a_deleted_job_leaves_no_series() -> None:
    metrics = OperatorMetrics()
    metrics.observe("cardiology", "readmission", _status())
    metrics.observe("oncology", "survival", FederatedJobStatus())
    metrics.forget("cardiology", "readmission")
    metrics.forget("cardiology", "never-seen")
    text = _text(metrics)
    assert "readmission" not in text
    got = _samples(text)
    assert got[_key("fedcare_job_phase", namespace="oncology", job="survival", phase="Pending")]


def test_metrics_are_served_over_http() -> None:
    metrics = OperatorMetrics()
    metrics.observe("default", "j", _status())
    server = metrics.serve(0, "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    got = _samples(body)
    assert got[_key("fedcare_job_round_metric", namespace="default", job="j", metric="auroc")]


def test_settings_read_the_metrics_port_and_cluster_scanning() -> None:
    settings = OperatorSettings.from_env({})
    assert (settings.metrics_port, settings.cluster_scanning) == (0, True)
    settings = OperatorSettings.from_env(
        {"FEDCARE_METRICS_PORT": "9090", "FEDCARE_CLUSTER_SCANNING": "false"}
    )
    assert (settings.metrics_port, settings.cluster_scanning) == (9090, False)
    for env, field in (
        ({"FEDCARE_METRICS_PORT": "http"}, "FEDCARE_METRICS_PORT"),
        ({"FEDCARE_METRICS_PORT": "70000"}, "FEDCARE_METRICS_PORT"),
        ({"FEDCARE_CLUSTER_SCANNING": "maybe"}, "FEDCARE_CLUSTER_SCANNING"),
    ):
        with pytest.raises(SettingsError, match=field):
            OperatorSettings.from_env(env)


class _NoApi:
    """Stands in for :class:`fedcare_operator.kube.Kube` (no API server in this test)."""

    def close(self) -> None:
        """Nothing to release."""


def test_the_startup_hook_serves_metrics_and_follows_the_scanning_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setattr(handlers, "Kube", _NoApi)
    monkeypatch.setenv("FEDCARE_METRICS_PORT", str(port))
    monkeypatch.setenv("FEDCARE_CLUSTER_SCANNING", "false")
    settings = kopf.OperatorSettings()
    memo = kopf.Memo()
    handlers.configure(settings=settings, memo=memo)
    try:
        assert settings.scanning.disabled is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        handlers.close(memo=memo)
    monkeypatch.delenv("FEDCARE_METRICS_PORT")
    monkeypatch.delenv("FEDCARE_CLUSTER_SCANNING")
    settings = kopf.OperatorSettings()
    memo = kopf.Memo()
    handlers.configure(settings=settings, memo=memo)
    assert settings.scanning.disabled is False and "metrics_server" not in memo


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TlsFiles, TlsFiles]:
    ca = create_ca(tmp_path, "j")
    server = issue_server_cert(ca, tmp_path / "s", sans=("j-coordinator.default.svc",))
    observer = issue_client_cert(ca, tmp_path / "o", "fedcare-operator", role=ROLE_OBSERVER)
    return (
        TlsFiles(ca=str(ca.cert), cert=str(server.cert), key=str(server.key)),
        TlsFiles(ca=str(ca.cert), cert=str(observer.cert), key=str(observer.key)),
    )


class _GoneSink(_MemorySink):
    def read_job(self) -> FederatedJobStatus:
        raise JobGone("deleted")


def test_the_follower_reports_every_merged_status_and_a_deleted_job(
    pki: tuple[TlsFiles, TlsFiles],
) -> None:
    server_tls, observer_tls = pki
    port = free_port()
    coordinator = _Coordinator([_reported(Phase.TRAINING, [1]), _reported(Phase.SUCCEEDED, [1, 2])])
    server = _serve(coordinator, port, server_tls)
    seen: list[FederatedJobStatus] = []
    gone: list[bool] = []

    def channel() -> Any:
        return make_mtls_channel(f"127.0.0.1:{port}", observer_tls, "j-coordinator.default.svc")

    try:
        follower = StatusFollower(
            _MemorySink(), channel, on_status=seen.append, on_gone=lambda: gone.append(True)
        )
        assert follower.run(threading.Event()) is Phase.SUCCEEDED
        assert [s.phase for s in seen] == [Phase.TRAINING, Phase.SUCCEEDED]
        assert [r.round for r in seen[-1].rounds] == [1, 2] and not gone
        follower = StatusFollower(
            _GoneSink(), channel, on_status=seen.append, on_gone=lambda: gone.append(True)
        )
        assert follower.run(threading.Event()) is None
        assert gone == [True]
    finally:
        coordinator.release.set()
        server.stop(grace=None)
