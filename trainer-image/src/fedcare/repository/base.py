"""The model repository's contract: versioned, immutable model weights with metadata.

Every job has a sequence of versions named ``v0001``, ``v0002``, ... Names are assigned by the
repository, increase monotonically and are never reused, even by writers racing each other. A
version is written completely or not at all; once visible it never changes.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from fedcare.errors import RepositoryError
from fedcare.repository.safetensors_io import from_safetensors_bytes, to_safetensors_bytes
from fedcare.spec._base import SpecModel
from fedcare.spec.job import NAME_PATTERN
from fedcare.spec.status import utcnow

__all__ = [
    "VERSION_PATTERN",
    "ModelRepository",
    "NewVersion",
    "ParticipantContribution",
    "TensorInfo",
    "VersionMetadata",
    "check_job",
    "check_version",
    "tensor_infos",
    "version_name",
    "version_number",
]

#: ``v`` and at least four digits; past ``v9999`` the names simply grow a digit.
VERSION_PATTERN = r"^v[0-9]{4,}$"
#: File (object) name of a version's server optimizer state, beside the weights.
SERVER_STATE_FILE = "server-state.safetensors"
_VERSION_RE = re.compile(VERSION_PATTERN)
_JOB_RE = re.compile(NAME_PATTERN)
_MAX_JOB = 63


def check_job(job: str) -> str:
    """Return ``job`` if it is a valid job name (a DNS-1123 label), else raise RepositoryError.

    Job names become directory names and object-key prefixes, so nothing else is accepted.
    """
    if not isinstance(job, str) or len(job) > _MAX_JOB or not _JOB_RE.fullmatch(job):
        raise RepositoryError(
            f"invalid job name {job!r}: lower-case letters, digits and '-', at most 63"
        )
    return job


def check_version(version: str) -> str:
    """Return ``version`` if it looks like ``v0001``, else raise RepositoryError."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise RepositoryError(f"invalid model version {version!r}: expected e.g. 'v0001'")
    return version


def version_number(version: str) -> int:
    """``v0012`` -> 12."""
    return int(check_version(version)[1:])


def version_name(number: int) -> str:
    """12 -> ``v0012``."""
    if number < 1:
        raise RepositoryError(f"version numbers start at 1, got {number}")
    return f"v{number:04d}"


class ParticipantContribution(SpecModel):
    """A site whose update went into a version, and how many samples it trained on."""

    name: str = Field(min_length=1)
    samples: int = Field(ge=0)


class TensorInfo(SpecModel):
    """Name and shape of one tensor in the weights file (all tensors are float32)."""

    name: str = Field(min_length=1)
    shape: list[int]


def _finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Leave out metrics that are NaN or infinite: JSON has no such numbers.

    An undefined metric (AUROC on a single-class validation split, say) is thus absent rather
    than failing the version it describes.
    """
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


class NewVersion(SpecModel):
    """What the caller says about a version it writes; the repository fills in the rest.

    Non-finite metric values are left out (see :class:`VersionMetadata`).
    """

    round: int = Field(ge=0)
    parent_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    metrics: dict[str, float] = Field(default_factory=dict)
    train_metrics: dict[str, float] = Field(default_factory=dict)
    participants: list[ParticipantContribution] = Field(default_factory=list)
    strategy: str = "fedavg"
    #: The job instance that wrote the version (a FederatedJob's uid, or one `fedcare run`):
    #: a restarted coordinator resumes only from versions of its own run.
    run_id: str | None = None
    #: Set by ``fedcare models rollback``: the earlier version whose weights this one repeats.
    rolled_back_from: str | None = Field(default=None, pattern=VERSION_PATTERN)

    @field_validator("metrics", "train_metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        return _finite_metrics(value)

    def complete(
        self,
        job: str,
        version: str,
        sha256: str,
        size_bytes: int,
        tensors: list[TensorInfo],
        server_state_sha256: str | None = None,
    ) -> VersionMetadata:
        """The full metadata of the version being written: every caller-supplied field, plus
        what the repository knows (name, time, content hashes, size, tensors)."""
        return VersionMetadata(
            **self.model_dump(),
            job=job,
            version=version,
            created_at=utcnow(),
            sha256=sha256,
            size_bytes=size_bytes,
            tensors=tensors,
            server_state_sha256=server_state_sha256,
        )


class VersionMetadata(SpecModel):
    """``metadata.json`` of a version (camelCase on disk).

    ``sha256`` and ``sizeBytes`` describe the safetensors weights file exactly; readers verify
    them. ``createdAt`` is RFC 3339 UTC. Metrics hold finite numbers only.
    """

    job: str
    version: str = Field(pattern=VERSION_PATTERN)
    round: int = Field(ge=0)
    parent_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    created_at: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    metrics: dict[str, float] = Field(default_factory=dict)
    train_metrics: dict[str, float] = Field(default_factory=dict)
    participants: list[ParticipantContribution] = Field(default_factory=list)
    strategy: str = "fedavg"
    #: The job instance that wrote the version (a FederatedJob's uid, or one `fedcare run`):
    #: a restarted coordinator resumes only from versions of its own run.
    run_id: str | None = None
    tensors: list[TensorInfo] = Field(default_factory=list)
    #: sha256 of the server optimizer's state stored with the version (FedAdam/FedYogi/
    #: FedAdagrad moments, :data:`SERVER_STATE_FILE`), so that a restarted coordinator goes on
    #: with them; ``None``: the version has none.
    server_state_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: The earlier version whose weights a rollback version repeats (``None`` otherwise).
    rolled_back_from: str | None = Field(default=None, pattern=VERSION_PATTERN)

    @field_validator("metrics", "train_metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        return _finite_metrics(value)

    @property
    def number(self) -> int:
        """The version's sequence number (``v0012`` -> 12)."""
        return version_number(self.version)

    def to_json_bytes(self) -> bytes:
        """The on-disk form: camelCase JSON, indented, newline-terminated."""
        return (self.model_dump_json(by_alias=True, indent=2) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, data: bytes, where: str = "metadata") -> VersionMetadata:
        """Parse ``metadata.json``; RepositoryError naming ``where`` when malformed."""
        try:
            return cls.model_validate_json(data)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RepositoryError(f"{where}: malformed version metadata ({first})") from exc


def tensor_infos(weights: Mapping[str, np.ndarray]) -> list[TensorInfo]:
    """Name and shape of every tensor in ``weights``, in mapping order."""
    return [TensorInfo(name=k, shape=[int(d) for d in np.shape(a)]) for k, a in weights.items()]


def encode_server_state(
    state: Mapping[str, np.ndarray] | None,
) -> tuple[bytes | None, str | None]:
    """The safetensors bytes of a server optimizer state and their sha256 (``None`` if empty)."""
    if not state:
        return None, None
    payload = to_safetensors_bytes(state)
    return payload, hashlib.sha256(payload).hexdigest()


def decode_server_state(meta: VersionMetadata, data: bytes, where: str) -> dict[str, np.ndarray]:
    """Check stored server-state bytes against the metadata's sha256 and parse them."""
    if hashlib.sha256(data).hexdigest() != meta.server_state_sha256:
        raise RepositoryError(
            f"{meta.job}/{meta.version}: {where} does not match its recorded sha256; it was "
            "modified or corrupted"
        )
    return from_safetensors_bytes(data)


class ModelRepository(ABC):
    """Versioned store of model weights (safetensors) and their metadata."""

    @abstractmethod
    def write_version(
        self,
        job: str,
        weights: Mapping[str, np.ndarray],
        meta: NewVersion,
        server_state: Mapping[str, np.ndarray] | None = None,
        encoded: bytes | None = None,
    ) -> VersionMetadata:
        """Store ``weights`` as the job's next version and return its metadata.

        The version name is the next free ``vNNNN``; it is never reused, even when several
        writers race. The write is all or nothing: a failure or crash leaves no visible version.
        Raises RepositoryError for weights that are empty, not float32, or contain NaN/Inf.
        ``server_state`` (the server optimizer's tensors, if any) is stored with the version,
        in the same all-or-nothing write, as :data:`SERVER_STATE_FILE`. ``encoded``: the
        safetensors bytes of ``weights`` (from :func:`to_safetensors_bytes`) when the caller
        has them already, so that a large model is not encoded a second time.
        """

    @abstractmethod
    def read_server_state(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The server optimizer state stored with the version (empty when it has none),
        after checking its sha256."""

    @abstractmethod
    def list_versions(self, job: str) -> list[VersionMetadata]:
        """Every complete version of ``job``, oldest first; an unknown job has none."""

    @abstractmethod
    def get(self, job: str, version: str) -> VersionMetadata:
        """Metadata of one version; RepositoryError when it does not exist."""

    @abstractmethod
    def latest(self, job: str) -> VersionMetadata | None:
        """The newest complete version of ``job``, or ``None`` when it has none."""

    @abstractmethod
    def read_weights(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The version's tensors; RepositoryError when the file's sha256 or size is wrong."""

    @abstractmethod
    def open_weights_stream(
        self, job: str, version: str, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The safetensors file's bytes in chunks of at most ``chunk_size`` (bounded memory).

        A missing version raises RepositoryError at the call, not at the first chunk. The
        content is hashed while it streams; if it does not match the metadata's sha256 the
        iterator raises RepositoryError after the last chunk, so the receiver must discard
        what it got (it should verify the sha256 itself too).
        """

    @abstractmethod
    def export(self, job: str, version: str, dest: Path) -> Path:
        """Copy the version's weights to ``dest`` and its metadata JSON beside them.

        ``dest`` is a file path, or an existing directory (then ``<job>-<version>.safetensors``
        inside it). The metadata goes to the same path with suffix ``.json``. The copy is
        verified against the sha256. Returns the path of the weights file.
        """

    @abstractmethod
    def jobs(self) -> list[str]:
        """Names of the jobs that have at least one complete version, sorted."""

    @abstractmethod
    def version_uri(self, job: str, version: str) -> str:
        """A URI naming the stored version (for status' ``latestModel.uri``)."""
