"""The model repository: immutable, versioned model weights (safetensors) with metadata.

:func:`open_repository` turns a job's ``spec.repository.uri`` into a :class:`ModelRepository`.
"""

from __future__ import annotations

from pathlib import Path

from fedcare.errors import RepositoryError
from fedcare.repository.base import (
    VERSION_PATTERN,
    ModelRepository,
    NewVersion,
    ParticipantContribution,
    TensorInfo,
    VersionMetadata,
    check_job,
    check_version,
    version_name,
    version_number,
)
from fedcare.repository.local import METADATA_FILE, WEIGHTS_FILE, LocalRepository
from fedcare.repository.safetensors_io import (
    from_safetensors_bytes,
    load_file,
    save_file,
    to_safetensors_bytes,
    validate_weights,
)

__all__ = [
    "METADATA_FILE",
    "VERSION_PATTERN",
    "WEIGHTS_FILE",
    "LocalRepository",
    "ModelRepository",
    "NewVersion",
    "ParticipantContribution",
    "TensorInfo",
    "VersionMetadata",
    "check_job",
    "check_version",
    "from_safetensors_bytes",
    "load_file",
    "open_repository",
    "save_file",
    "to_safetensors_bytes",
    "validate_weights",
    "version_name",
    "version_number",
]

_FILE = "file://"
_S3 = "s3://"


def open_repository(uri: str) -> ModelRepository:
    """The repository at ``uri``.

    ``file://<path>`` is a :class:`LocalRepository`; the path is taken literally, so
    ``file://./models`` and ``file://models`` are relative to the working directory and
    ``file:///srv/models`` is absolute. ``s3://`` is not supported yet.
    """
    if uri.startswith(_FILE):
        path = uri[len(_FILE) :]
        if not path:
            raise RepositoryError(f"repository URI {uri!r} names no path")
        return LocalRepository(Path(path))
    if uri.startswith(_S3):
        raise RepositoryError(
            f"cannot open {uri!r}: S3 repository support needs the s3 extra and is not "
            "implemented yet"
        )
    raise RepositoryError(f"unsupported repository URI {uri!r}; expected file:// or s3://")
