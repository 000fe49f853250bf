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
    tensor_infos,
    version_name,
    version_number,
)
from fedcare.repository.local import METADATA_FILE, WEIGHTS_FILE, LocalRepository
from fedcare.repository.refs import LoadedModel, check_layout, load_model_ref, resolve_model_ref
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
    "LoadedModel",
    "LocalRepository",
    "ModelRepository",
    "NewVersion",
    "ParticipantContribution",
    "TensorInfo",
    "VersionMetadata",
    "check_job",
    "check_layout",
    "check_version",
    "from_safetensors_bytes",
    "load_file",
    "load_model_ref",
    "open_repository",
    "resolve_model_ref",
    "save_file",
    "tensor_infos",
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
    ``file:///srv/models`` is absolute. ``s3://bucket/prefix`` is an
    :class:`~fedcare.repository.s3.S3Repository` (needs the ``s3`` extra, i.e. boto3), configured
    from the environment (endpoint, credentials; see :mod:`fedcare.repository.s3`).
    """
    if uri.startswith(_FILE):
        path = uri[len(_FILE) :]
        if not path:
            raise RepositoryError(f"repository URI {uri!r} names no path")
        return LocalRepository(Path(path))
    if uri.startswith(_S3):
        from fedcare.repository.s3 import S3Repository  # boto3: imported when needed

        return S3Repository.from_uri(uri)
    raise RepositoryError(f"unsupported repository URI {uri!r}; expected file:// or s3://")
