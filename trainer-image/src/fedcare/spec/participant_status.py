"""Status of a Participant resource: what the operator writes onto ``Participant.status``.

:class:`~fedcare.spec.ParticipantStatus` is one site's entry inside a FederatedJob's status (as the
coordinator reports it); :class:`ParticipantResourceStatus` is the whole ``.status`` of the site's
own Participant resource. Both carry the same metav1-style :class:`~fedcare.spec.Condition`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from fedcare.spec._base import SpecModel
from fedcare.spec.status import Condition, ConditionStatus, set_condition


class ParticipantPhase(StrEnum):
    """Lifecycle of one institution's trainer in its job."""

    #: The trainer pod is not running yet (scheduling, pulling, waiting for its certificate).
    PENDING = "Pending"
    #: The trainer joined the coordinator and waits for a round.
    CONNECTED = "Connected"
    #: The trainer works on a round.
    TRAINING = "Training"
    #: The trainer lost its coordinator; it retries until its connect timeout.
    DISCONNECTED = "Disconnected"
    #: The job ended and this site took part until the end.
    SUCCEEDED = "Succeeded"
    #: The trainer failed for good (bad data, spent privacy budget, refused certificate), or the
    #: job it belongs to failed.
    FAILED = "Failed"


class ParticipantResourceStatus(SpecModel):
    """The whole ``.status`` of a Participant resource."""

    phase: ParticipantPhase = ParticipantPhase.PENDING
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    #: Rounds this site contributed an accepted update to.
    rounds_completed: int = Field(default=0, ge=0)
    #: The last round this site contributed an accepted update to (counted once, even when the
    #: operator re-reads the coordinator's status after a reconnect).
    last_round: int = Field(default=0, ge=0)
    #: When the coordinator last reported this site connected (RFC 3339).
    last_seen: str | None = None
    #: Training rows at this site (the weight of its updates).
    samples: int = Field(default=0, ge=0)
    #: Differential-privacy budget spent so far at this site.
    epsilon_spent: float = Field(default=0.0, ge=0.0)
    observed_generation: int | None = None

    def set_condition(
        self,
        type_: str,
        status: ConditionStatus,
        reason: str,
        message: str = "",
        observed_generation: int | None = None,
    ) -> None:
        """Set a condition by type; lastTransitionTime moves only when ``status`` changes."""
        set_condition(self.conditions, type_, status, reason, message, observed_generation)


__all__ = ["ParticipantPhase", "ParticipantResourceStatus"]
