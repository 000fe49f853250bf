"""Spec models of fedcare: FederatedJob, Participant, their status, and process configs.

These pydantic models are the single source of truth for the CRD schemas, the local runner's
input and the coordinator's and trainer's configuration.
"""

from fedcare.spec.config import CoordinatorConfig, EnrollmentConfig, TlsFiles, TrainerConfig
from fedcare.spec.job import (
    API_VERSION,
    DataFormat,
    DataSchema,
    DataSource,
    FederatedJob,
    FederatedJobSpec,
    InlineParticipant,
    Metric,
    ModelName,
    ModelSpec,
    Optimizer,
    Participant,
    ParticipantSpec,
    Task,
    TrainingSpec,
    metrics_for,
)
from fedcare.spec.loader import load_model, parse_document, read_yaml
from fedcare.spec.participant_status import ParticipantPhase, ParticipantResourceStatus
from fedcare.spec.placement import DatasetVolume, EnrollmentRef, Toleration
from fedcare.spec.privacy import (
    DifferentialPrivacySpec,
    DpMode,
    PrivacyBudget,
    PrivacySpec,
    SecureAggregationMode,
    SecureAggregationSpec,
)
from fedcare.spec.status import (
    Condition,
    ConditionStatus,
    FederatedJobStatus,
    ModelRef,
    ParticipantState,
    ParticipantStatus,
    Phase,
    RoundStatus,
)

__all__ = [
    "API_VERSION",
    "Condition",
    "ConditionStatus",
    "CoordinatorConfig",
    "DataFormat",
    "DataSchema",
    "DataSource",
    "DatasetVolume",
    "DifferentialPrivacySpec",
    "DpMode",
    "EnrollmentConfig",
    "EnrollmentRef",
    "FederatedJob",
    "FederatedJobSpec",
    "FederatedJobStatus",
    "InlineParticipant",
    "Metric",
    "ModelName",
    "ModelRef",
    "ModelSpec",
    "Optimizer",
    "Participant",
    "ParticipantPhase",
    "ParticipantResourceStatus",
    "ParticipantSpec",
    "ParticipantState",
    "ParticipantStatus",
    "Phase",
    "PrivacyBudget",
    "PrivacySpec",
    "RoundStatus",
    "SecureAggregationMode",
    "SecureAggregationSpec",
    "Task",
    "TlsFiles",
    "Toleration",
    "TrainerConfig",
    "TrainingSpec",
    "load_model",
    "metrics_for",
    "parse_document",
    "read_yaml",
]
