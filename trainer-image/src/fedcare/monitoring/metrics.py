"""Prometheus metrics of a coordinator, on a registry of its own (one per coordinator)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CoordinatorMetrics:
    """The coordinator's counters, gauges and histograms."""

    def __init__(self, job: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["job"]
        self.rounds_completed = Counter(
            "fedcare_rounds_completed",
            "Rounds closed with a new model version",
            labels,
            registry=self.registry,
        ).labels(job)
        self.round_duration = Histogram(
            "fedcare_round_duration_seconds",
            "Wall time of a round, training to stored version",
            labels,
            registry=self.registry,
            buckets=(0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800),
        ).labels(job)
        self.bytes_in = Counter(
            "fedcare_bytes_received",
            "Model-update bytes received from participants",
            labels,
            registry=self.registry,
        ).labels(job)
        self.bytes_out = Counter(
            "fedcare_bytes_sent",
            "Model bytes sent to participants",
            labels,
            registry=self.registry,
        ).labels(job)
        self.participants_connected = Gauge(
            "fedcare_participants_connected",
            "Participants with a live session",
            labels,
            registry=self.registry,
        ).labels(job)
        self._rejected = Counter(
            "fedcare_updates_rejected",
            "Updates refused, by reason",
            ["job", "reason"],
            registry=self.registry,
        )
        self.updates_accepted = Counter(
            "fedcare_updates_accepted",
            "Updates folded into a round's aggregate",
            labels,
            registry=self.registry,
        ).labels(job)
        self.current_round = Gauge(
            "fedcare_current_round",
            "Round in progress (or last completed)",
            labels,
            registry=self.registry,
        ).labels(job)
        self._job = job

    def rejected(self, reason: str) -> None:
        """Count one refused update with ``reason`` (a short snake_case word)."""
        self._rejected.labels(self._job, reason).inc()
