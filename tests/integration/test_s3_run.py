"""`fedcare run` with an s3:// model repository: moto's standalone S3 server over HTTP.

The endpoint comes from `spec.repository.endpoint` (as the operator hands it to the coordinator
pod); the credentials from the environment (boto3's chain). A FedAdam job, so every version also
carries the server optimizer's state object.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fedcare
from fedcare.repository import open_repository
from fedcare.spec import Phase
from tests.integration.conftest import JobFactory
from tests.support.moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3, moto_s3_server


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    """moto's S3 server on a free loopback port."""
    with moto_s3_server() as server:
        yield server


def test_run_stores_versions_in_s3(
    make_job: JobFactory, moto: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FEDCARE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = moto.new_bucket()
    uri = f"s3://{bucket}/consortium"
    job = make_job(
        rounds=2,
        strategy={"name": "fedadam", "serverLearningRate": 0.05},
        repository={"uri": uri, "endpoint": moto.endpoint},
    )
    status = fedcare.run(job)
    assert status.phase is Phase.SUCCEEDED, status.message
    assert status.latest_model is not None
    assert status.latest_model.uri.startswith(f"{uri}/bc/")
    assert moto.keys(bucket, "consortium/bc/") == [
        "consortium/bc/v0001/claim.json",
        "consortium/bc/v0001/metadata.json",
        "consortium/bc/v0001/model.safetensors",
        *(
            f"consortium/bc/v000{n}/{leaf}"
            for n in (2, 3)
            for leaf in (
                "claim.json",
                "metadata.json",
                "model.safetensors",
                "server-state.safetensors",
            )
        ),
    ]
    monkeypatch.setenv("FEDCARE_S3_ENDPOINT_URL", moto.endpoint)
    repo = open_repository(uri)
    versions = repo.list_versions("bc")
    assert [v.round for v in versions] == [0, 1, 2]
    assert versions[-1].sha256 == status.latest_model.sha256
    assert int(repo.read_server_state("bc", versions[-1].version)["steps"][0]) == 2
