"""Condition types and reasons the operator writes (the coordinator writes its own too).

Conditions are a map keyed by ``type`` (metav1.Condition); they are set only through
:meth:`fedcare.spec.FederatedJobStatus.set_condition`, which moves ``lastTransitionTime`` only
when the status value changes.
"""

from __future__ import annotations

from typing import Final

# Types --------------------------------------------------------------------------------------

#: True once the job's participants joined (the coordinator sets it); False while waiting.
READY: Final = "Ready"
#: True while rounds run (the coordinator sets it).
TRAINING: Final = "Training"
#: True when every round ran and the job succeeded (the coordinator sets it).
COMPLETE: Final = "Complete"
#: True when the job failed for good: an invalid spec (operator) or a failed run (coordinator).
FAILED: Final = "Failed"
#: True while the operator cannot follow a coordinator it had reached before.
DEGRADED: Final = "Degraded"

# Reasons ------------------------------------------------------------------------------------

#: The spec passed the API server's schema but not fedcare's own checks; the message names the
#: field. The job does nothing until its spec is fixed.
INVALID_SPEC: Final = "InvalidSpec"
#: The operator created the job's children and waits for the coordinator to start.
CHILDREN_CREATED: Final = "ChildrenCreated"
#: The status stream of a coordinator the operator had reached broke; it reconnects with backoff.
COORDINATOR_UNREACHABLE: Final = "CoordinatorUnreachable"
#: The status stream is live.
COORDINATOR_REACHABLE: Final = "CoordinatorReachable"
#: The Participant's job is not in this cluster and the Participant has no enrollment token.
JOB_NOT_FOUND: Final = "JobNotFound"
#: The Participant's job is in this cluster but not one of its inline sites: its name is in
#: the coordinator's participants ConfigMap, and the trainer starts once the coordinator
#: has admitted it (kubelet refreshes the mounted ConfigMap within about a minute).
WAITING_FOR_ADMISSION: Final = "WaitingForAdmission"
#: The Participant's certificate and trainer were created.
TRAINER_CREATED: Final = "TrainerCreated"
#: The coordinator refused this site's enrollment (token unknown, used, expired, or issued
#: for another name); the message says which. A new token is needed.
ENROLLMENT_REFUSED: Final = "EnrollmentRefused"
#: The site's trainer joined the coordinator (Participant Ready True).
JOINED: Final = "Joined"
#: The site's trainer lost its coordinator connection (Participant Ready False).
DISCONNECTED: Final = "Disconnected"

__all__ = [
    "CHILDREN_CREATED",
    "COMPLETE",
    "COORDINATOR_REACHABLE",
    "COORDINATOR_UNREACHABLE",
    "DEGRADED",
    "DISCONNECTED",
    "ENROLLMENT_REFUSED",
    "FAILED",
    "INVALID_SPEC",
    "JOB_NOT_FOUND",
    "JOINED",
    "READY",
    "TRAINER_CREATED",
    "TRAINING",
    "WAITING_FOR_ADMISSION",
]
