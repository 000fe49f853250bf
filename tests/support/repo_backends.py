"""Both model-repository backends behind one test interface, for the shared contract tests.

A :class:`Backend` is a fresh, empty repository plus raw access to what it stores (a file under
the root, an object under the bucket prefix), so tests can tamper with stored bytes the same
way on either backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedcare.repository import LocalRepository, ModelRepository
from fedcare.repository.s3 import S3Repository
from tests.support.moto_s3 import MotoS3


@dataclass
class Backend:
    """A repository under test and raw access to its stored objects (paths ``job/version/x``)."""

    name: str
    repo: ModelRepository
    #: Another repository object over the same storage (as another process would have).
    twin: Callable[[], ModelRepository]
    read_raw: Callable[[str], bytes]
    write_raw: Callable[[str, bytes], None]
    delete_raw: Callable[[str], None]
    #: Everything stored under ``job/`` (relative paths, sorted), complete or not.
    stored: Callable[[str], list[str]]
    #: The repository's URI for ``open_repository`` / ``--repo``.
    uri: str
    #: Environment variables ``open_repository(uri)`` needs (S3 endpoint and credentials).
    env: dict[str, str]


def local_backend(root: Path) -> Backend:
    """A LocalRepository at ``root``."""

    def stored(job: str) -> list[str]:
        base = root / job
        if not base.exists():
            return []
        return sorted(
            str(Path(dirpath, f).relative_to(base))
            for dirpath, _, files in os.walk(base)
            for f in files
        )

    def write_raw(rel: str, data: bytes) -> None:
        (root / rel).write_bytes(data)

    def delete_raw(rel: str) -> None:
        (root / rel).unlink()

    return Backend(
        name="local",
        repo=LocalRepository(root),
        twin=lambda: LocalRepository(root),
        read_raw=lambda rel: (root / rel).read_bytes(),
        write_raw=write_raw,
        delete_raw=delete_raw,
        stored=stored,
        uri=f"file://{root}",
        env={},
    )


def s3_backend(server: MotoS3, prefix: str = "models/team") -> Backend:
    """An S3Repository in a fresh bucket of the moto server, under ``prefix``."""
    bucket = server.new_bucket()
    client = server.client()

    def key(rel: str) -> str:
        return f"{prefix}/{rel}"

    def read_raw(rel: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key(rel))["Body"].read())

    def write_raw(rel: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key(rel), Body=data)

    def delete_raw(rel: str) -> None:
        client.delete_object(Bucket=bucket, Key=key(rel))

    def stored(job: str) -> list[str]:
        base = key(f"{job}/")
        return [k[len(base) :] for k in server.keys(bucket, base)]

    return Backend(
        name="s3",
        repo=S3Repository(bucket, prefix, client=client),
        twin=lambda: S3Repository(bucket, prefix, client=server.client()),
        read_raw=read_raw,
        write_raw=write_raw,
        delete_raw=delete_raw,
        stored=stored,
        uri=f"s3://{bucket}/{prefix}",
        env=server.env(),
    )
