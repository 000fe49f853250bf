"""Status of a Participant resource: what the operator writes onto ``Participant.status``.

``fedcare.spec`` has no model for it yet (its ``ParticipantStatus`` is one site's entry inside a
FederatedJob's status), so it lives here until the spec package takes it over. It reuses the
spec's :class:`~fedcare.spec.Condition` so that both resources carry the same metav1.Condition.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fedcare.spec import Condition


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
    #: The trainer failed for good (bad data, spent privacy budget, refused certificate).
    FAILED = "Failed"


class ParticipantResourceStatus(BaseModel):
    """The whole ``.status`` of a Participant resource."""

    # The same conventions as fedcare.spec's models (whose base class is private there).
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, validate_assignment=True
    )

    phase: ParticipantPhase = ParticipantPhase.PENDING
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    #: Rounds this site contributed an accepted update to.
    rounds_completed: int = Field(default=0, ge=0)
    #: When the coordinator last heard from this site (RFC 3339).
    last_seen: str | None = None
    #: Training rows at this site (the weight of its updates).
    samples: int = Field(default=0, ge=0)
    #: Differential-privacy budget spent so far at this site.
    epsilon_spent: float = Field(default=0.0, ge=0.0)
    observed_generation: int | None = None

    def to_json_dict(self) -> dict[str, object]:
        """The wire form: camelCase keys, ``None`` fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


__all__ = ["ParticipantPhase", "ParticipantResourceStatus"]
