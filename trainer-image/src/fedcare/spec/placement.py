"""Where a site's trainer pod runs and where its data comes from (used by the operator only).

The local runner ignores these fields: on one machine a site's ``data.path`` is simply a file.
In a cluster, the trainer pod mounts the dataset volume read-only at ``mountPath`` (by default the
folder of ``data.path``), so that ``data.path`` names the file inside the pod.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from fedcare.spec._base import SpecModel


class DatasetVolume(SpecModel):
    """The volume that holds a site's table: a PersistentVolumeClaim or a node's folder."""

    #: Name of a PersistentVolumeClaim in the Participant's namespace.
    claim_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    #: A folder on the node (``hostPath``, type Directory): for single-node and kind clusters.
    host_path: str | None = Field(default=None, min_length=1, pattern=r"^/")
    #: Where the volume appears in the trainer pod; defaults to the folder of ``data.path``.
    mount_path: str | None = Field(default=None, min_length=1, pattern=r"^/")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetVolume:
        if (self.claim_name is None) == (self.host_path is None):
            raise ValueError("volume needs exactly one of claimName or hostPath")
        return self


class EnrollmentRef(SpecModel):
    """How a site outside the job's cluster gets its certificate: a one-time token.

    The operator of the site's cluster creates a key and a CSR, sends them with the token to the
    coordinator's Enrollment service (``endpoint``), and stores the signed certificate in the
    Participant's certificate Secret. The token works once.
    """

    #: A Secret in the Participant's namespace with ``token`` (from ``fedcare token create``)
    #: and ``ca.crt`` (the job CA's certificate, to check the coordinator).
    token_secret: str = Field(
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    #: ``host:port`` of the coordinator's Enrollment service.
    endpoint: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")
    #: The name the coordinator's certificate is checked against (one of its SANs).
    server_name: str = Field(default="fedcare-coordinator", min_length=1, max_length=253)


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """Taint effects a toleration may name."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(SpecModel):
    """A core/v1 Toleration, passed through to the trainer pod (e.g. for GPU node taints)."""

    key: str | None = None
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: str | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None


__all__ = ["DatasetVolume", "EnrollmentRef", "TaintEffect", "Toleration", "TolerationOperator"]
