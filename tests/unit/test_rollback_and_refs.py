"""``fedcare models rollback`` and model references (``spec.initialModel``), on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcare.cli import main
from fedcare.errors import RepositoryError, SpecError
from fedcare.repository import (
    LocalRepository,
    NewVersion,
    ParticipantContribution,
    check_layout,
    load_model_ref,
    resolve_model_ref,
)
from fedcare.repository.s3 import S3Repository
from fedcare.spec import FederatedJob, parse_document
from tests.support.repo_backends import Backend

JOB = "heart-study"


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "core.weight": rng.standard_normal((1, 4)).astype(np.float32),
        "input_mean": np.zeros(4, dtype=np.float32),
        "input_std": np.ones(4, dtype=np.float32),
    }


def _history(backend: Backend, rounds: int = 4) -> None:
    """v0001 (round 0) ... v000<rounds+1>, chained by parent, with metrics."""
    parent: str | None = None
    for r in range(rounds + 1):
        meta = backend.repo.write_version(
            JOB,
            _weights(r),
            NewVersion(
                round=r,
                parent_version=parent,
                metrics={"auroc": 0.7 + r / 100} if r else {},
                participants=[ParticipantContribution(name="hospital-a", samples=10 * r)],
                run_id="run-1",
            ),
        )
        parent = meta.version


@pytest.fixture
def env(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The backend, with the process environment set for ``open_repository(backend.uri)``."""
    for name, value in backend.env.items():
        monkeypatch.setenv(name, value)
    return backend


def test_rollback_writes_a_new_version_and_keeps_history(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = env.repo
    _history(env)
    before = repo.list_versions(JOB)
    assert main(["models", "rollback", JOB, "v0003", "--repo", env.uri]) == 0
    out = capsys.readouterr().out
    assert "v0006 holds the weights of v0003 (parent v0005)" in out
    after = repo.list_versions(JOB)
    assert after[:-1] == before  # nothing rewritten
    new = after[-1]
    source = repo.get(JOB, "v0003")
    assert new.version == "v0006"
    assert new.rolled_back_from == "v0003" and new.parent_version == "v0005"
    assert new.round == before[-1].round  # a rollback is not a training round
    assert new.sha256 == source.sha256 and new.metrics == source.metrics
    assert new.participants == source.participants
    assert new.run_id is None  # no run resumes from a manual rollback
    for name, array in repo.read_weights(JOB, "v0003").items():
        np.testing.assert_array_equal(repo.read_weights(JOB, "v0006")[name], array)
    # On disk / in the bucket: camelCase, shown by `models show`.
    assert json.loads(env.read_raw(f"{JOB}/v0006/metadata.json"))["rolledBackFrom"] == "v0003"
    assert main(["models", "show", JOB, "v0006", "--repo", env.uri]) == 0
    assert '"rolledBackFrom": "v0003"' in capsys.readouterr().out
    # Rolling back again goes on from the newest version.
    assert main(["models", "rollback", JOB, "v0001", "--repo", env.uri]) == 0
    latest = repo.latest(JOB)
    assert latest is not None
    assert (latest.version, latest.parent_version, latest.rolled_back_from) == (
        "v0007",
        "v0006",
        "v0001",
    )


def test_rollback_errors(env: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    _history(env, rounds=1)
    assert main(["models", "rollback", JOB, "v0009", "--repo", env.uri]) == 1
    assert "has no version 'v0009'" in capsys.readouterr().err
    assert main(["models", "rollback", JOB, "latest", "--repo", env.uri]) == 1
    assert "invalid model version 'latest'" in capsys.readouterr().err
    assert main(["models", "rollback", JOB, "v0002", "--repo", env.uri]) == 0
    assert "already the latest version; nothing written" in capsys.readouterr().out
    assert [m.version for m in env.repo.list_versions(JOB)] == ["v0001", "v0002"]
    # A corrupted source is refused, nothing is written.
    data = bytearray(env.read_raw(f"{JOB}/v0001/model.safetensors"))
    data[-1] ^= 1
    env.write_raw(f"{JOB}/v0001/model.safetensors", bytes(data))
    assert main(["models", "rollback", JOB, "v0001", "--repo", env.uri]) == 1
    assert "sha256" in capsys.readouterr().err
    assert [m.version for m in env.repo.list_versions(JOB)] == ["v0001", "v0002"]


# ------------------------------------------------------------------------------------------
# Model references


def test_resolve_a_version_of_the_same_job(backend: Backend) -> None:
    _history(backend, rounds=1)
    repo, job, version = resolve_model_ref("v0002", backend.repo, JOB)
    assert repo is backend.repo and (job, version) == (JOB, "v0002")
    loaded = load_model_ref("v0002", backend.repo, JOB, expected=_weights(0))
    assert loaded.same_job and loaded.metadata.version == "v0002"
    assert loaded.uri == backend.repo.version_uri(JOB, "v0002")
    np.testing.assert_array_equal(loaded.weights["core.weight"], _weights(1)["core.weight"])


def test_resolve_a_version_uri(env: Backend, tmp_path: Path) -> None:
    _history(env, rounds=1)
    uri = env.repo.version_uri(JOB, "v0002")
    other = LocalRepository(tmp_path / "elsewhere")
    repo, job, version = resolve_model_ref(uri, other, "new-job")
    assert (job, version) == (JOB, "v0002")
    assert repo.version_uri(job, version) == uri
    assert type(repo) is type(env.repo)
    loaded = load_model_ref(uri, other, "new-job", expected=_weights(5))
    assert not loaded.same_job and loaded.uri == uri
    # The job's own repository named by URI is the same job.
    assert load_model_ref(uri + "/", env.repo, JOB).same_job


def test_resolve_uri_shapes(s3_env: Any, tmp_path: Path) -> None:
    default = LocalRepository(tmp_path)
    repo, job, version = resolve_model_ref("s3://bucket-x/a/b/heart/v0012", default, "j")
    assert isinstance(repo, S3Repository) and (repo.bucket, repo.prefix) == ("bucket-x", "a/b")
    assert (job, version) == ("heart", "v0012")
    repo, job, version = resolve_model_ref("s3://bucket-x/heart/v0012", default, "j")
    assert isinstance(repo, S3Repository) and repo.prefix == ""
    repo, job, version = resolve_model_ref("file://./models/heart/v0001", default, "j")
    assert isinstance(repo, LocalRepository) and repo.root == Path("./models")
    for bad in (
        "latest",
        "file://heart/v0001",
        "s3:///heart/v0001",
        "s3://bucket/v0001",
        "file:///m/Heart/v0001",
        "file:///m/heart/1",
        "http://host/m/heart/v0001",
    ):
        with pytest.raises(RepositoryError, match="model reference"):
            resolve_model_ref(bad, default, "j")


@pytest.fixture
def s3_env(moto_s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The process environment pointing at the moto server."""
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    return moto_s3


def test_layout_mismatch_is_refused(backend: Backend) -> None:
    _history(backend, rounds=0)
    wider = {**_weights(0), "core.weight": np.zeros((1, 5), dtype=np.float32)}
    with pytest.raises(RepositoryError, match=r"'core.weight' has shape \[1, 4\].*needs \[1, 5\]"):
        load_model_ref("v0001", backend.repo, JOB, expected=wider)
    with pytest.raises(RepositoryError, match=r"missing tensor\(s\) \['core.bias'\]"):
        load_model_ref(
            "v0001", backend.repo, JOB, expected={**_weights(0), "core.bias": np.zeros(1)}
        )
    with pytest.raises(RepositoryError, match="has no version 'v0004'"):
        load_model_ref("v0004", backend.repo, JOB)
    check_layout(_weights(1), {k: list(v.shape) for k, v in _weights(2).items()}, "x")


def test_initial_model_in_the_spec() -> None:
    def job(ref: str) -> dict[str, Any]:
        return {
            "apiVersion": "fedcare.io/v1alpha1",
            "kind": "FederatedJob",
            "metadata": {"name": "j"},
            "spec": {"data": {"features": ["a"], "label": "y"}, "rounds": 1, "initialModel": ref},
        }

    for ok in ("v0003", "file://./m/heart/v0003", "s3://b/p/heart/v0012/", "s3://b/heart/v0001"):
        assert parse_document(FederatedJob, job(ok), "job.yaml").spec.initial_model == ok
    for bad in ("latest", "v1", "s3://b/v0001", "file://m/Heart/v0001", "https://x/j/v0001"):
        with pytest.raises(SpecError, match=r"job.yaml: spec.initialModel: expected a version"):
            parse_document(FederatedJob, job(bad), "job.yaml")
