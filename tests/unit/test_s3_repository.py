"""S3-specific behaviour of the S3 model repository, against moto's standalone server over HTTP.

The shared repository contract (round trip, monotonic names, races, integrity, streaming,
export) runs against both backends in test_repository.py; this file covers what only S3 has:
configuration from the environment, multipart uploads, name claims and interrupted uploads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcare.errors import RepositoryError
from fedcare.repository import NewVersion, open_repository
from fedcare.repository.s3 import (
    CREDENTIALS_DIR_ENV,
    ENDPOINT_ENV,
    S3Repository,
    make_client,
    parse_s3_uri,
)
from tests.support.moto_s3 import MotoS3

JOB = "heart-study"
PREFIX = "teams/cardio"


def _weights(seed: int = 0, n: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.standard_normal(n).astype(np.float32),
        "b": np.array([0.5], dtype=np.float32),
    }


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:
    """A fresh, empty bucket."""
    return moto_s3.new_bucket()


@pytest.fixture
def repo(moto_s3: MotoS3, bucket: str) -> S3Repository:
    """An empty S3 repository under PREFIX in a fresh bucket."""
    return S3Repository(bucket, PREFIX, client=moto_s3.client())


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """The process environment pointing at the moto server (and nothing else AWS-related)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "FEDCARE_S3_")):
            monkeypatch.delenv(name)
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    return moto_s3


def _keys(moto_s3: MotoS3, bucket: str, job: str = JOB) -> list[str]:
    return [k[len(f"{PREFIX}/{job}/") :] for k in moto_s3.keys(bucket, f"{PREFIX}/{job}/")]


# ------------------------------------------------------------------------------------------
# URIs and configuration


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://models") == ("models", "")
    assert parse_s3_uri("s3://models/") == ("models", "")
    assert parse_s3_uri("s3://models/a/b/") == ("models", "a/b")
    for bad in ("s3://", "s3:///prefix", "s3://b/a//c", "s3://b/../x", "file://x"):
        with pytest.raises(RepositoryError):
            parse_s3_uri(bad)


def test_open_repository_from_the_environment(s3_env: MotoS3, bucket: str) -> None:
    repo = open_repository(f"s3://{bucket}/{PREFIX}/")
    assert isinstance(repo, S3Repository)
    assert (repo.bucket, repo.prefix) == (bucket, PREFIX)
    assert repr(repo) == f"S3Repository('s3://{bucket}/{PREFIX}')"
    meta = repo.write_version(JOB, _weights(), NewVersion(round=0))
    assert repo.version_uri(JOB, meta.version) == f"s3://{bucket}/{PREFIX}/{JOB}/v0001"
    assert _keys(s3_env, bucket) == [
        "v0001/claim.json",
        "v0001/metadata.json",
        "v0001/model.safetensors",
    ]
    # Without a prefix the jobs sit at the top of the bucket.
    top = open_repository(f"s3://{bucket}")
    top.write_version("other", _weights(), NewVersion(round=0))
    assert top.jobs() == ["other"]
    assert top.version_uri("other", "v0001") == f"s3://{bucket}/other/v0001"
    assert repo.jobs() == [JOB]


def test_endpoint_precedence_and_region(s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert make_client().meta.endpoint_url == s3_env.endpoint
    monkeypatch.delenv(ENDPOINT_ENV)
    assert make_client().meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert make_client().meta.region_name == "eu-central-1"


def _access_key(client: Any) -> str:
    return str(client._request_signer._credentials.access_key)


def test_credentials_from_a_mounted_secret(
    s3_env: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "access_key_id").write_text("from-the-secret\n")
    (secret / "secret_access_key").write_text("s3cr3t\n")
    monkeypatch.setenv(CREDENTIALS_DIR_ENV, str(secret))
    client = make_client()
    assert _access_key(client) == "from-the-secret"
    repo = open_repository(f"s3://{bucket}/{PREFIX}")
    assert repo.write_version(JOB, _weights(), NewVersion(round=0)).version == "v0001"
    # The secret wins over AWS_* variables.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    assert _access_key(make_client()) == "from-the-secret"
    (secret / "secret_access_key").unlink()
    with pytest.raises(RepositoryError, match="'secret_access_key' is missing"):
        make_client()
    monkeypatch.setenv(CREDENTIALS_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(RepositoryError, match="not a folder"):
        make_client()


def test_missing_bucket_is_a_clear_error(moto_s3: MotoS3) -> None:
    repo = S3Repository("fedcare-no-such-bucket", PREFIX, client=moto_s3.client())
    with pytest.raises(RepositoryError, match="bucket does not exist"):
        repo.list_versions(JOB)
    with pytest.raises(RepositoryError, match="bucket does not exist"):
        repo.write_version(JOB, _weights(), NewVersion(round=0))


# ------------------------------------------------------------------------------------------
# Uploads, ordering and claims


def test_large_weights_go_up_in_parts(repo: S3Repository, moto_s3: MotoS3, bucket: str) -> None:
    big = {"w": np.random.default_rng(3).standard_normal(5 << 20).astype(np.float32)}  # 20 MiB
    meta = repo.write_version(JOB, big, NewVersion(round=1))
    head = moto_s3.client().head_object(
        Bucket=bucket, Key=f"{PREFIX}/{JOB}/{meta.version}/model.safetensors"
    )
    assert head["ContentLength"] == meta.size_bytes
    assert head["ETag"].strip('"').endswith("-3")  # 8 + 8 + 4 MiB parts
    np.testing.assert_array_equal(repo.read_weights(JOB, meta.version)["w"], big["w"])
    chunks = list(repo.open_weights_stream(JOB, meta.version, chunk_size=3 << 20))
    assert [len(c) for c in chunks[:-1]] == [3 << 20] * (len(chunks) - 1)
    assert sum(len(c) for c in chunks) == meta.size_bytes


class _Recorder:
    """Delegates to a boto3 client and records the keys it writes, in order."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[str] = []

    def put_object(self, **kwargs: Any) -> Any:
        self.writes.append(str(kwargs["Key"]).rsplit("/", 1)[-1])
        return self._client.put_object(**kwargs)

    def upload_fileobj(self, fileobj: Any, bucket: str, key: str, **kwargs: Any) -> Any:
        self.writes.append(key.rsplit("/", 1)[-1])
        return self._client.upload_fileobj(fileobj, bucket, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_claim_then_weights_then_metadata_last(moto_s3: MotoS3, bucket: str) -> None:
    recorder = _Recorder(moto_s3.client())
    repo = S3Repository(bucket, PREFIX, client=recorder)
    repo.write_version(JOB, _weights(), NewVersion(round=0))
    assert recorder.writes == ["claim.json", "model.safetensors", "metadata.json"]


def test_a_rival_claim_between_scan_and_put_moves_to_the_next_name(
    repo: S3Repository, moto_s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_version(JOB, _weights(), NewVersion(round=1))
    rival = S3Repository(bucket, PREFIX, client=moto_s3.client())
    real_scan = S3Repository._scan
    fired: list[bool] = []

    def stale_scan(self: S3Repository, job: str, complete_only: bool) -> list[tuple[int, str]]:
        found = real_scan(self, job, complete_only)
        if self is repo and not complete_only and not fired:
            fired.append(True)
            rival.write_version(JOB, _weights(9), NewVersion(round=9))  # takes v0002
        return found  # what we saw before the rival wrote

    monkeypatch.setattr(S3Repository, "_scan", stale_scan)
    meta = repo.write_version(JOB, _weights(2), NewVersion(round=2))
    monkeypatch.undo()
    assert fired and meta.version == "v0003"
    assert [m.version for m in repo.list_versions(JOB)] == ["v0001", "v0002", "v0003"]
    assert repo.get(JOB, "v0002").round == 9
    assert repo.get(JOB, "v0003").round == 2


def test_claimed_or_half_written_names_are_invisible_and_never_reused(
    repo: S3Repository, moto_s3: MotoS3, bucket: str
) -> None:
    repo.write_version(JOB, _weights(), NewVersion(round=1))
    client = moto_s3.client()
    # A writer that died after its claim (v0002), one that died after its weights (v0003).
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{JOB}/v0002/claim.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{JOB}/v0003/claim.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/{JOB}/v0003/model.safetensors", Body=b"x")
    assert [m.version for m in repo.list_versions(JOB)] == ["v0001"]
    latest = repo.latest(JOB)
    assert latest is not None and latest.version == "v0001"
    with pytest.raises(RepositoryError, match="no version"):
        repo.get(JOB, "v0003")
    assert repo.write_version(JOB, _weights(), NewVersion(round=2)).version == "v0004"


def test_failure_after_the_weights_upload_leaves_no_version(
    repo: S3Repository, moto_s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = repo.write_version(JOB, _weights(), NewVersion(round=1))
    before = _keys(moto_s3, bucket)
    seen: list[list[str]] = []

    def crash(self: S3Repository, key: str, data: bytes) -> None:
        seen.append(_keys(moto_s3, bucket))
        raise RepositoryError("simulated: connection lost before metadata.json")

    monkeypatch.setattr(S3Repository, "_put_metadata", crash)
    with pytest.raises(RepositoryError, match="simulated"):
        repo.write_version(JOB, _weights(1), NewVersion(round=2))
    monkeypatch.undo()
    assert "v0002/model.safetensors" in seen[0]  # the weights were up when it failed
    assert repo.list_versions(JOB) == [first]
    assert _keys(moto_s3, bucket) == before  # claim and weights were removed again
    assert repo.write_version(JOB, _weights(2), NewVersion(round=2)).version == "v0002"


def test_keyboard_interrupt_mid_upload_leaves_no_version(
    repo: S3Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: S3Repository, key: str, payload: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(S3Repository, "_upload_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        repo.write_version(JOB, _weights(), NewVersion(round=1))
    monkeypatch.undo()
    assert repo.list_versions(JOB) == [] and repo.latest(JOB) is None and repo.jobs() == []


SIGKILL_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import fedcare.repository.s3 as s3

    s3.MAX_CONCURRENCY = 1             # one part at a time, so the kill lands mid-upload
    s3.MULTIPART_CHUNKSIZE = 5 << 20   # S3's minimum part size
    repo = s3.S3Repository(sys.argv[1], sys.argv[2])
    weights = {"big": np.ones(24 << 20, dtype=np.float32)}  # 96 MiB: 20 parts
    print("ready", flush=True)
    repo.write_version("heart-study", weights, s3.NewVersion(round=2))
    print("done", flush=True)
    """
)


@pytest.mark.timeout(180)
def test_sigkill_mid_multipart_upload_leaves_no_version(
    repo: S3Repository, moto_s3: MotoS3, bucket: str
) -> None:
    first = repo.write_version(JOB, _weights(), NewVersion(round=1))
    client = moto_s3.client()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FEDCARE_S3_"))}
    env.update(moto_s3.env())
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_WRITER, bucket, PREFIX],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    parts = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=f"{PREFIX}/{JOB}/")
            for upload in uploads.get("Uploads", []):
                listed = client.list_parts(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                parts = len(listed.get("Parts", []))
            if parts:
                break
            time.sleep(0.01)
        assert parts, f"the writer never started a multipart upload: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it was killed"
    # The half-uploaded version stays hidden; the old one is intact; writing goes on.
    assert repo.list_versions(JOB) == [first]
    assert repo.latest(JOB) == first
    assert repo.jobs() == [JOB]
    assert "v0002/model.safetensors" not in _keys(moto_s3, bucket)  # only parts exist
    assert "v0002/claim.json" in _keys(moto_s3, bucket)  # the name stays taken
    assert repo.write_version(JOB, _weights(), NewVersion(round=2)).version == "v0003"


def test_metadata_of_another_version_is_refused(
    repo: S3Repository, moto_s3: MotoS3, bucket: str
) -> None:
    repo.write_version(JOB, _weights(), NewVersion(round=1))
    client = moto_s3.client()
    raw = json.loads(
        client.get_object(Bucket=bucket, Key=f"{PREFIX}/{JOB}/v0001/metadata.json")["Body"].read()
    )
    client.put_object(
        Bucket=bucket, Key=f"{PREFIX}/{JOB}/v0007/metadata.json", Body=json.dumps(raw).encode()
    )
    with pytest.raises(RepositoryError, match="describes heart-study/v0001"):
        repo.get(JOB, "v0007")
