"""References to stored model versions (``spec.initialModel``) and loading them.

A reference is either a bare version name of the job itself (``v0003``, looked up in the job's
own repository) or the URI of a version in any repository: ``file://<root>/<job>/<version>`` or
``s3://<bucket>[/<prefix>]/<job>/<version>`` (what ``version_uri`` and ``status.latestModel.uri``
give).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedcare.errors import RepositoryError
from fedcare.repository.base import (
    VERSION_PATTERN,
    ModelRepository,
    VersionMetadata,
    check_job,
    check_version,
)

__all__ = ["LoadedModel", "check_layout", "load_model_ref", "resolve_model_ref"]

_VERSION_RE = re.compile(VERSION_PATTERN)
_SCHEMES = ("file://", "s3://")


def resolve_model_ref(
    ref: str, default_repo: ModelRepository, job: str
) -> tuple[ModelRepository, str, str]:
    """``(repository, job, version)`` named by ``ref``; nothing is read yet.

    A bare version name resolves to ``(default_repo, job, ref)``; a ``file://`` or ``s3://``
    URI to the repository at its root and the job and version in its last two path segments.
    Raises :class:`RepositoryError` for anything else.
    """
    ref = ref.strip()
    if _VERSION_RE.fullmatch(ref):
        return default_repo, check_job(job), ref
    if not ref.startswith(_SCHEMES):
        raise RepositoryError(
            f"model reference {ref!r}: expected a version name (e.g. 'v0003') or a URI "
            "file://<root>/<job>/<version> or s3://<bucket>/<prefix>/<job>/<version>"
        )
    scheme, _, path = ref.partition("://")
    parts = path.rstrip("/").split("/")
    if len(parts) < 3 or not parts[-3] or (scheme == "s3" and not parts[0]):
        raise RepositoryError(
            f"model reference {ref!r}: needs a repository root, a job and a version, e.g. "
            f"{scheme}://<root>/<job>/v0003"
        )
    version, ref_job = parts[-1], parts[-2]
    try:
        check_version(version)
        check_job(ref_job)
    except RepositoryError as exc:
        raise RepositoryError(f"model reference {ref!r}: {exc}") from exc
    root = f"{scheme}://{'/'.join(parts[:-2])}"
    from fedcare.repository import open_repository  # the package imports this module

    return open_repository(root), ref_job, version


def check_layout(
    weights: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray] | Mapping[str, Sequence[int]],
    where: str,
) -> None:
    """Raise :class:`RepositoryError` unless ``weights`` has exactly the tensor names and
    shapes of ``expected`` (arrays, or shapes as sequences of ints)."""
    want = {
        k: tuple(int(d) for d in (v.shape if isinstance(v, np.ndarray) else v))
        for k, v in expected.items()
    }
    got = {k: tuple(int(d) for d in np.shape(v)) for k, v in weights.items()}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise RepositoryError(
            f"{where}: does not fit this job's model: missing tensor(s) {missing or '-'}, "
            f"unexpected tensor(s) {extra or '-'}"
        )
    for name in sorted(want):
        if want[name] != got[name]:
            raise RepositoryError(
                f"{where}: does not fit this job's model: tensor {name!r} has shape "
                f"{list(got[name])}, the job's model needs {list(want[name])}"
            )


@dataclass(frozen=True)
class LoadedModel:
    """Weights read (sha256-verified) through a model reference, and where they came from."""

    weights: dict[str, np.ndarray]
    metadata: VersionMetadata
    #: ``version_uri`` of the source version.
    uri: str
    #: True when the source is a version of the same job in ``default_repo``'s location.
    same_job: bool


def load_model_ref(
    ref: str,
    default_repo: ModelRepository,
    job: str,
    expected: Mapping[str, np.ndarray] | Mapping[str, Sequence[int]] | None = None,
) -> LoadedModel:
    """Resolve ``ref`` (see :func:`resolve_model_ref`) and read its weights.

    With ``expected`` (the state of a freshly built model of the job, or its shapes) the
    weights must have exactly those tensor names and shapes. Raises :class:`RepositoryError`
    when the version is missing, corrupted or does not fit.
    """
    repo, src_job, version = resolve_model_ref(ref, default_repo, job)
    meta = repo.get(src_job, version)
    weights = repo.read_weights(src_job, version)
    uri = repo.version_uri(src_job, version)
    if expected is not None:
        check_layout(weights, expected, f"initial model {uri}")
    same = src_job == job and (
        repo is default_repo or uri == default_repo.version_uri(src_job, version)
    )
    return LoadedModel(weights=weights, metadata=meta, uri=uri, same_job=same)
