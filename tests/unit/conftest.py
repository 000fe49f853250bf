"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moto_s3 import MotoS3, moto_s3_server
from tests.support.repo_backends import Backend, local_backend, s3_backend


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's standalone S3 server on a free loopback port, for the whole session."""
    with moto_s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty model repository of each backend, with raw access to what it stores."""
    if request.param == "local":
        return local_backend(tmp_path / "models")
    server: MotoS3 = request.getfixturevalue("moto_s3")
    return s3_backend(server)
