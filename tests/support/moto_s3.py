"""moto's standalone S3 server for tests, reached over HTTP on loopback (no in-process patching).

``MotoS3.start()`` runs ``moto.server.ThreadedMotoServer`` on a free port of 127.0.0.1; clients
(in this process or in subprocesses) talk to it through boto3 like to any S3 endpoint.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Credentials moto accepts (any non-empty values do).
ACCESS_KEY = "fedcare-test-key"
SECRET_KEY = "fedcare-test-secret"
REGION = "us-east-1"


class MotoS3:
    """A running moto S3 server and helpers to make clients and buckets on it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def env(self) -> dict[str, str]:
        """Environment variables that point fedcare's S3 client at this server."""
        return {
            "FEDCARE_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self) -> Any:
        """A boto3 client made by fedcare's own factory from :meth:`env`."""
        from fedcare.repository.s3 import make_client

        return make_client(self.env())

    def new_bucket(self) -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"fedcare-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, sorted."""
        client = self.client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [str(obj["Key"]) for obj in page.get("Contents", [])]
        return sorted(out)


@contextmanager
def moto_s3_server() -> Iterator[MotoS3]:
    """Start moto's threaded S3 server on a free loopback port; stop it on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(f"http://{host}:{port}")
    finally:
        server.stop()
