"""Status of a FederatedJob: what the coordinator reports, the CRD's ``.status``, ``--json``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import Field

from fedcare.spec._base import SpecModel

#: Rounds kept in ``.status.rounds``; the repository keeps every version.
MAX_ROUND_HISTORY = 20


class Phase(StrEnum):
    """Lifecycle of a job."""

    PENDING = "Pending"
    WAITING = "WaitingForParticipants"
    TRAINING = "Training"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ParticipantState(StrEnum):
    """A site as seen by the coordinator."""

    PENDING = "Pending"
    CONNECTED = "Connected"
    TRAINING = "Training"
    DISCONNECTED = "Disconnected"
    #: Left the job because its privacy budget is spent.
    BUDGET_EXHAUSTED = "BudgetExhausted"


class ConditionStatus(StrEnum):
    """Kubernetes condition status values."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def utcnow() -> str:
    """RFC 3339 UTC timestamp with second precision, as Kubernetes writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Condition(SpecModel):
    """A metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str = Field(default_factory=utcnow)
    observed_generation: int | None = None


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
) -> None:
    """Set a condition in ``conditions`` (a map keyed by type), in place.

    ``lastTransitionTime`` moves only when the condition's ``status`` changes. Every status model
    with conditions (FederatedJob, Participant) goes through this one function.
    """
    for i, cond in enumerate(conditions):
        if cond.type == type_:
            moved = cond.status != status
            conditions[i] = Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=utcnow() if moved else cond.last_transition_time,
                observed_generation=observed_generation,
            )
            return
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            observed_generation=observed_generation,
        )
    )


class ParticipantStatus(SpecModel):
    """One site's state in the job."""

    name: str
    state: ParticipantState
    last_round: int = 0
    #: Rounds whose stored model version includes this site's update (survives restarts: a
    #: resumed coordinator recounts them from the stored versions).
    rounds_contributed: int = 0
    samples: int = 0
    #: Differential privacy: epsilon this site has spent on this job.
    epsilon_spent: float | None = None
    message: str | None = None


class RoundStatus(SpecModel):
    """One completed round."""

    round: int
    duration_seconds: float
    metrics: dict[str, float] = Field(default_factory=dict)
    model_version: str
    participants: int = 0
    samples: int = 0


class ModelRef(SpecModel):
    """A stored model version."""

    version: str
    uri: str
    round: int
    sha256: str
    metrics: dict[str, float] = Field(default_factory=dict)


class FederatedJobStatus(SpecModel):
    """The whole ``.status`` of a FederatedJob."""

    phase: Phase = Phase.PENDING
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    current_round: int = 0
    total_rounds: int = 0
    ready_participants: int = 0
    min_participants: int = 0
    participants: list[ParticipantStatus] = Field(default_factory=list)
    rounds: list[RoundStatus] = Field(default_factory=list)
    latest_model: ModelRef | None = None
    rejected_updates: int = 0
    #: Differential privacy: epsilon spent by the job (central: the accountant's; local: the
    #: largest of the sites') at ``delta``.
    epsilon_spent: float | None = None
    delta: float | None = None
    start_time: str | None = None
    completion_time: str | None = None
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

    def add_round(self, entry: RoundStatus) -> None:
        """Append a round, keeping only the last ``MAX_ROUND_HISTORY``."""
        self.rounds = [*self.rounds, entry][-MAX_ROUND_HISTORY:]
