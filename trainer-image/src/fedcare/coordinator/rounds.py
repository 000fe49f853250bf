"""State of one training round, of one federated evaluation and of one secure-aggregation step;
checking a site's answer against them, and the failure that ends the job."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc

from fedcare.coordinator.aggregation import RoundAggregation
from fedcare.coordinator.sessions import Session
from fedcare.coordinator.uploads import Rejected
from fedcare.errors import FedcareError


class JobFailure(FedcareError):
    """The job cannot go on; ``reason`` becomes the Failed condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class TrainRound:
    """One round's bookkeeping: who was asked, who answered, the running aggregate."""

    number: int
    base_version: str
    deadline: float
    aggregation: RoundAggregation
    #: participant -> session id that was sent the task
    selected: dict[str, str]
    received: dict[str, int] = field(default_factory=dict)
    #: participants whose update was refused for its content: done for this round
    refused: dict[str, str] = field(default_factory=dict)
    #: secure modes: each selected site's share of the round's samples
    weights: dict[str, float] = field(default_factory=dict)
    #: secure modes: the protocol payload addressed to each selected site with its TRAIN task
    payloads: dict[str, bytes] = field(default_factory=dict)
    train_loss_sum: float = 0.0
    started: float = field(default_factory=time.monotonic)
    closed: bool = False

    def pending(self) -> set[str]:
        """Selected participants that have neither sent an update nor had one refused."""
        return set(self.selected) - set(self.received) - set(self.refused)

    def record(self, participant: str, samples: int, train_loss: float | None) -> None:
        """Note an accepted update (already folded into the aggregate)."""
        self.received[participant] = samples
        if train_loss is not None:
            self.train_loss_sum += train_loss * samples


@dataclass
class Evaluation:
    """Federated evaluation of a candidate model: sample-weighted metric means."""

    round: int
    version: str
    deadline: float
    expected: dict[str, str]
    reports: dict[str, int] = field(default_factory=dict)
    #: participants whose report was refused for its content: done for this evaluation
    refused: set[str] = field(default_factory=set)
    sums: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def waiting_for(self) -> set[str]:
        """Participants asked to evaluate that have neither reported nor been refused."""
        return set(self.expected) - set(self.reports) - self.refused

    def add(self, participant: str, samples: int, metrics: dict[str, float]) -> None:
        """Fold one site's metrics, weighted by its validation samples."""
        self.reports[participant] = samples
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * samples
            self.weights[key] = self.weights.get(key, 0.0) + samples

    def means(self) -> dict[str, float]:
        """Sample-weighted mean of each metric over the sites that reported it."""
        return {k: self.sums[k] / self.weights[k] for k in sorted(self.sums) if self.weights[k]}


@dataclass
class Exchange:
    """One step of a secure-aggregation protocol: a message asked of each listed site."""

    round: int
    phase: int
    deadline: float
    #: participant -> session id that was asked
    expected: dict[str, str]
    responses: dict[str, bytes] = field(default_factory=dict)

    def waiting_for(self) -> set[str]:
        """Sites asked that have not answered."""
        return set(self.expected) - set(self.responses)


def check_asked(
    session: Session, expected: dict[str, str] | None, answered: bool, what: str
) -> None:
    """Refuse an answer to a request that is not open (``expected`` None), that was not asked
    of this session, or that this site already answered."""
    name = session.participant
    if expected is None:
        raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "stale_round", f"no {what} is open")
    if expected.get(name) != session.session_id:
        raise Rejected(
            grpc.StatusCode.PERMISSION_DENIED, "not_selected", f"{name!r} was not asked for {what}"
        )
    if answered:
        raise Rejected(grpc.StatusCode.ALREADY_EXISTS, "duplicate", f"{what} already answered")
