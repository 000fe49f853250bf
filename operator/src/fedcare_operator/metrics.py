"""Prometheus metrics of the operator: what it learns from the coordinators' status streams.

A coordinator's own ``/metrics`` (``fedcare_rounds_completed_total``, bytes, rejections, ...)
say how its rounds run. What only the status says is exported here, per job, from every status
the per-job daemon merges (and from the handlers' initial and invalid-spec statuses):

- ``fedcare_job_phase{namespace,job,phase}``: 1 for the job's current phase, 0 for the others;
- ``fedcare_job_completed_round{namespace,job}``: the last completed round;
- ``fedcare_job_round_metric{namespace,job,metric}``: the validation metrics of that round
  (sample-weighted across sites), e.g. ``metric="auroc"``;
- ``fedcare_job_epsilon_spent{namespace,job}`` and
  ``fedcare_participant_epsilon_spent{namespace,job,participant}``: differential-privacy spend.

The Helm chart serves them on ``FEDCARE_METRICS_PORT`` (``/metrics``) and its Grafana dashboard
plots them next to the coordinators' metrics. A deleted job's series are removed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from fedcare.spec import FederatedJobStatus, Phase


@dataclass
class _Series:
    """The label values one job has written (so they can be removed with the job)."""

    metrics: set[str] = field(default_factory=set)
    participants: set[str] = field(default_factory=set)
    epsilon: bool = False


class OperatorMetrics:
    """The operator's gauges, on a registry of their own (thread-safe)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        job = ["namespace", "job"]
        self.phase = Gauge(
            "fedcare_job_phase",
            "1 for the job's current phase, 0 for the others",
            [*job, "phase"],
            registry=self.registry,
        )
        self.completed_round = Gauge(
            "fedcare_job_completed_round",
            "Number of the job's last completed round",
            job,
            registry=self.registry,
        )
        self.round_metric = Gauge(
            "fedcare_job_round_metric",
            "Validation metric of the job's last completed round (sample-weighted across sites)",
            [*job, "metric"],
            registry=self.registry,
        )
        self.epsilon = Gauge(
            "fedcare_job_epsilon_spent",
            "Differential-privacy epsilon spent by the job",
            job,
            registry=self.registry,
        )
        self.participant_epsilon = Gauge(
            "fedcare_participant_epsilon_spent",
            "Differential-privacy epsilon spent by one site in the job",
            [*job, "participant"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}

    def observe(self, namespace: str, job: str, status: FederatedJobStatus) -> None:
        """Export what ``status`` (job ``namespace/job``'s ``.status``) says."""
        key = (namespace, job)
        with self._lock:
            series = self._series.setdefault(key, _Series())
            for phase in Phase:
                self.phase.labels(namespace, job, phase.value).set(
                    1.0 if status.phase is phase else 0.0
                )
            last = max(status.rounds, key=lambda r: r.round, default=None)
            self.completed_round.labels(namespace, job).set(last.round if last else 0)
            if last is not None:
                for name, value in last.metrics.items():
                    self.round_metric.labels(namespace, job, name).set(value)
                    series.metrics.add(name)
            if status.epsilon_spent is not None:
                self.epsilon.labels(namespace, job).set(status.epsilon_spent)
                series.epsilon = True
            for site in status.participants:
                if site.epsilon_spent is not None:
                    self.participant_epsilon.labels(namespace, job, site.name).set(
                        site.epsilon_spent
                    )
                    series.participants.add(site.name)

    def forget(self, namespace: str, job: str) -> None:
        """Remove every series of job ``namespace/job`` (it was deleted)."""
        with self._lock:
            series = self._series.pop((namespace, job), None)
            if series is None:
                return
            for phase in Phase:
                self.phase.remove(namespace, job, phase.value)
            self.completed_round.remove(namespace, job)
            for name in series.metrics:
                self.round_metric.remove(namespace, job, name)
            if series.epsilon:
                self.epsilon.remove(namespace, job)
            for site in series.participants:
                self.participant_epsilon.remove(namespace, job, site)

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; ``shutdown()`` stops it."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


__all__ = ["OperatorMetrics"]
