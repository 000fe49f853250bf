"""Process configs: what a coordinator or a trainer process needs besides the job spec."""

from __future__ import annotations

from pydantic import Field

from fedcare.spec._base import SpecModel
from fedcare.spec.job import DataSource, FederatedJob
from fedcare.spec.privacy import PrivacyBudget


class TlsFiles(SpecModel):
    """PEM files for mutual TLS: the job CA, this process's certificate and private key."""

    ca: str
    cert: str
    key: str


class EnrollmentConfig(SpecModel):
    """The coordinator's Enrollment service: sites outside the job's cluster get a certificate.

    Served on its own port with server-authenticated TLS only (the caller has no certificate
    yet; it proves itself with a one-time token bound to its name). Uses the coordinator's
    ``tls.cert``/``tls.key`` as server certificate and signs with the job CA's key.
    """

    #: Listen address of the Enrollment service; port 0 picks a free port (``portFile``'s
    #: ``enroll``).
    listen: str = "127.0.0.1:0"
    #: The token store (``fedcare token create`` writes it; tokens are kept hashed).
    tokens_file: str = Field(min_length=1)
    #: The job CA's private key (its certificate is ``tls.ca``).
    ca_key: str = Field(min_length=1)


class CoordinatorConfig(SpecModel):
    """Config of a coordinator process (``fedcare coordinator --config``)."""

    job: FederatedJob
    #: gRPC listen address; port 0 picks a free port (written to ``portFile``).
    listen: str = "127.0.0.1:0"
    #: HTTP side (/status, /healthz, /metrics); port 0 picks a free port.
    http_listen: str = "127.0.0.1:0"
    tls: TlsFiles
    #: When set, the coordinator writes ``{"grpc": port, "http": port}`` here once serving.
    port_file: str | None = None
    #: Common names whose certificates may watch status (operator, local runner).
    observers: list[str] = Field(default_factory=lambda: ["fedcare-observer"])
    #: Identity of this job instance (a FederatedJob's uid; one per `fedcare run`). A
    #: coordinator restarted with the same runId resumes from the last version of that run.
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,128}$")
    #: Names admitted as participants; defaults to the job's inline participants.
    participants: list[str] | None = None
    #: A file of further participant names (one per line), re-read while the job runs; each
    #: new name is admitted from the next round (the operator's participants ConfigMap).
    participants_file: str | None = None
    #: Exit once the job ends (local mode); a pod may instead keep serving its final status.
    exit_on_completion: bool = True
    #: Seconds to keep serving status after the job ends (e.g. for a dashboard's last look);
    #: the coordinator waits for the trainers to have their DONE task in any case.
    linger_seconds: float = Field(default=0.0, ge=0)
    #: Record every received message here (post-TLS) for privacy audits; off when unset.
    capture_dir: str | None = None
    #: CKKS secure aggregation: the public context (no secret key) this coordinator adds with.
    ckks_public_context: str | None = None
    #: Updates read into memory at once (each holds one model-sized buffer).
    max_concurrent_uploads: int = Field(default=2, ge=1, le=64)
    #: The Enrollment service (sites joining from another cluster); off when unset.
    enrollment: EnrollmentConfig | None = None


class TrainerConfig(SpecModel):
    """Config of a trainer process (``fedcare trainer --config``)."""

    participant: str
    job: str
    #: ``host:port`` of the coordinator's gRPC endpoint.
    coordinator: str
    #: The name the coordinator's certificate is checked against (a SAN).
    server_name: str = "fedcare-coordinator"
    tls: TlsFiles
    data: DataSource
    #: Seconds to keep retrying while the coordinator is unreachable.
    connect_timeout_seconds: float = Field(default=120.0, gt=0)
    #: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    #: Torch intra-op threads; 0 leaves torch's default.
    threads: int = Field(default=0, ge=0)
    #: CKKS secure aggregation: the secret context shared by the participants (never the
    #: coordinator).
    ckks_context: str | None = None
    #: The site's total privacy budget; the ledger next to its data tracks what is spent.
    privacy_budget: PrivacyBudget | None = None
