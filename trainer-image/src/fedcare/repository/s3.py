"""A model repository in an S3 bucket (AWS S3, MinIO, Ceph RGW, or any S3-compatible store).

Layout under ``s3://<bucket>/<prefix>``::

    <prefix>/<job>/<version>/claim.json          who claimed the name (written first)
    <prefix>/<job>/<version>/model.safetensors   the weights (multipart when large)
    <prefix>/<job>/<version>/metadata.json       written last: its presence commits the version

Writing a version:

1. The next name is one past the highest version-named prefix of the job, complete or not.
2. The name is claimed with a conditional ``PutObject`` of ``claim.json`` (``If-None-Match: *``):
   of writers racing for one name exactly one succeeds; the others get ``412`` and try the next
   name. Only the claimant ever writes under that prefix.
3. The weights are uploaded (``upload_fileobj``: one request below
   :data:`MULTIPART_THRESHOLD`, a multipart upload of :data:`MULTIPART_CHUNKSIZE` parts above it,
   read from one in-memory buffer without copying it).
4. ``metadata.json`` is put last, also with ``If-None-Match: *``.

Readers list only prefixes holding ``metadata.json``, so a writer that dies at any step leaves
no visible version; its name stays taken (as with a damaged directory in the local repository).
A failed write (an exception rather than a crash) deletes its claim and weights. Parts of a
multipart upload killed mid-way are invisible and are removed by an
``AbortIncompleteMultipartUpload`` lifecycle rule on the bucket (recommended: 1 day).

Configuration comes from the environment:

- ``FEDCARE_S3_ENDPOINT_URL`` (else ``AWS_ENDPOINT_URL``): the endpoint of an S3-compatible
  store; with one set, path-style addressing is used (MinIO and most on-premise stores need it).
- ``FEDCARE_S3_CREDENTIALS_DIR``: a folder (a mounted Kubernetes Secret) with the files
  ``access_key_id`` and ``secret_access_key`` (and optionally ``session_token``). Without it,
  boto3's standard chain applies: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  ``~/.aws/credentials``, web identity (IRSA), instance metadata.
- ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``).

Versions written while another writer races may become visible out of number order (``v0004``
before ``v0003``); :meth:`S3Repository.latest` is always the highest complete number.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from fedcare.errors import RepositoryError
from fedcare.repository.base import (
    SERVER_STATE_FILE,
    ModelRepository,
    NewVersion,
    VersionMetadata,
    check_job,
    check_version,
    decode_server_state,
    encode_server_state,
    tensor_infos,
    version_name,
)
from fedcare.repository.safetensors_io import from_safetensors_bytes, to_safetensors_bytes
from fedcare.spec.status import utcnow

__all__ = [
    "CLAIM_OBJECT",
    "CREDENTIALS_DIR_ENV",
    "ENDPOINT_ENV",
    "METADATA_OBJECT",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "WEIGHTS_OBJECT",
    "S3Repository",
    "make_client",
    "parse_s3_uri",
]

WEIGHTS_OBJECT = "model.safetensors"
METADATA_OBJECT = "metadata.json"
CLAIM_OBJECT = "claim.json"
ENDPOINT_ENV = "FEDCARE_S3_ENDPOINT_URL"
CREDENTIALS_DIR_ENV = "FEDCARE_S3_CREDENTIALS_DIR"
#: Weights at least this large go up as a multipart upload.
MULTIPART_THRESHOLD = 8 << 20
#: Size of one part of a multipart upload (S3's minimum part size is 5 MiB).
MULTIPART_CHUNKSIZE = 8 << 20
#: Parts uploaded in parallel.
MAX_CONCURRENCY = 4
#: Attempts at claiming a version name before giving up (each loses only to another writer).
_MAX_ATTEMPTS = 10_000
#: Error codes meaning "the object does not exist".
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
#: Error codes meaning "someone else holds this key" (412; 409 while a rival's put is in flight).
_TAKEN = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def _boto3() -> Any:
    try:
        import boto3  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise RepositoryError(
            "s3:// repositories need boto3: install fedcare with the s3 extra "
            "(pip install 'fedcare[s3]')"
        ) from exc
    return boto3


def _client_errors() -> tuple[type[Exception], ...]:
    """botocore's error base classes (ClientError, BotoCoreError)."""
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
        BotoCoreError,
        ClientError,
    )

    return (ClientError, BotoCoreError)


def _code(exc: BaseException) -> str:
    """The S3 error code of a ClientError (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error") or {}
    return str(error.get("Code", ""))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; RepositoryError if bad."""
    if not uri.startswith("s3://"):
        raise RepositoryError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise RepositoryError(f"repository URI {uri!r} names no bucket")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise RepositoryError(f"repository URI {uri!r} has an empty or relative path segment")
    return bucket, prefix


def _read_secret(folder: Path, name: str, required: bool) -> str | None:
    path = folder / name
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if required:
            raise RepositoryError(
                f"{CREDENTIALS_DIR_ENV}={folder}: the file {name!r} is missing"
            ) from None
        return None
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if required and not value:
        raise RepositoryError(f"{path} is empty")
    return value or None


def make_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client configured from ``env`` (default ``os.environ``); see the module doc."""
    boto3 = _boto3()
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

    env = os.environ if env is None else env
    endpoint = env.get(ENDPOINT_ENV) or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs: dict[str, Any] = {"region_name": region}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    secret_dir = env.get(CREDENTIALS_DIR_ENV)
    if secret_dir:
        folder = Path(secret_dir)
        if not folder.is_dir():
            raise RepositoryError(f"{CREDENTIALS_DIR_ENV}={secret_dir}: not a folder")
        kwargs["aws_access_key_id"] = _read_secret(folder, "access_key_id", True)
        kwargs["aws_secret_access_key"] = _read_secret(folder, "secret_access_key", True)
        token = _read_secret(folder, "session_token", False)
        if token:
            kwargs["aws_session_token"] = token
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        # Passed on explicitly so that an ``env`` other than os.environ is honoured too.
        kwargs["aws_access_key_id"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["aws_secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["aws_session_token"] = env["AWS_SESSION_TOKEN"]
    config = Config(
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
    )
    try:
        return boto3.session.Session().client("s3", config=config, **kwargs)
    except _client_errors() as exc:
        raise RepositoryError(f"cannot create an S3 client: {_reason(exc)}") from exc


class S3Repository(ModelRepository):
    """Model versions in ``s3://<bucket>/<prefix>``; see the module docstring."""

    def __init__(self, bucket: str, prefix: str = "", client: Any | None = None) -> None:
        """Use ``bucket`` (which must exist) under ``prefix``; ``client`` defaults to
        :func:`make_client` from the environment."""
        if not bucket:
            raise RepositoryError("an S3 repository needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client if client is not None else make_client()
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped,unused-ignore]

        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=MAX_CONCURRENCY,
            use_threads=True,
        )

    @classmethod
    def from_uri(cls, uri: str, client: Any | None = None) -> S3Repository:
        """The repository at ``s3://bucket/prefix``."""
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, client)

    def __repr__(self) -> str:
        """``S3Repository('s3://bucket/prefix')``."""
        return f"S3Repository({self.uri!r})"

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix`` of the repository."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    # ---------------------------------------------------------------------------------------
    # Keys and low-level calls

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _job_prefix(self, job: str) -> str:
        return f"{self._root()}{check_job(job)}/"

    def _key(self, job: str, version: str, name: str) -> str:
        return f"{self._job_prefix(job)}{check_version(version)}/{name}"

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _fail(self, action: str, key: str, exc: BaseException) -> RepositoryError:
        if _code(exc) == "NoSuchBucket":
            return RepositoryError(f"cannot {action} {self._where(key)}: bucket does not exist")
        return RepositoryError(f"cannot {action} {self._where(key)}: {_reason(exc)}")

    def _list(self, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        """Pages of ``ListObjectsV2`` under ``prefix``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(**kwargs):
                yield cast(dict[str, Any], page)
        except _client_errors() as exc:
            raise self._fail("list", prefix, exc) from exc

    def _scan(self, job: str, complete_only: bool) -> list[tuple[int, str]]:
        """``(number, name)`` of the job's versions, ascending.

        With ``complete_only``, versions whose ``metadata.json`` exists; otherwise every
        version-named prefix (claimed, half-written or complete), so no name is handed out twice.
        """
        base = self._job_prefix(job)
        found: set[str] = set()
        if complete_only:
            for page in self._list(base, None):
                for obj in page.get("Contents", []):
                    rest = str(obj["Key"])[len(base) :]
                    name, _, leaf = rest.partition("/")
                    if leaf == METADATA_OBJECT:
                        found.add(name)
        else:
            for page in self._list(base, "/"):
                for common in page.get("CommonPrefixes", []):
                    found.add(str(common["Prefix"])[len(base) :].rstrip("/"))
        out: list[tuple[int, str]] = []
        for name in found:
            try:
                out.append((int(check_version(name)[1:]), name))
            except RepositoryError:
                continue
        out.sort()
        return out

    def _get_bytes(self, key: str, missing: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return cast(bytes, response["Body"].read())
        except _client_errors() as exc:
            if _code(exc) in _MISSING:
                raise RepositoryError(missing) from exc
            raise self._fail("read", key, exc) from exc

    def _delete_quietly(self, *keys: str) -> None:
        for key in keys:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key)
            except _client_errors():
                continue

    # ---------------------------------------------------------------------------------------
    # Writing

    def write_version(
        self,
        job: str,
        weights: Mapping[str, np.ndarray],
        meta: NewVersion,
        server_state: Mapping[str, np.ndarray] | None = None,
        encoded: bytes | None = None,
    ) -> VersionMetadata:
        """Store ``weights`` as the next version of ``job``; all or nothing (see module doc)."""
        check_job(job)
        # to_safetensors_bytes validates: float32, finite, non-empty (``encoded`` came from it)
        payload = encoded if encoded is not None else to_safetensors_bytes(weights)
        state_bytes, state_sha = encode_server_state(server_state)
        tensors = tensor_infos(weights)
        sha256 = hashlib.sha256(payload).hexdigest()
        version = self._claim(job)
        claim_key = self._key(job, version, CLAIM_OBJECT)
        weights_key = self._key(job, version, WEIGHTS_OBJECT)
        state_key = self._key(job, version, SERVER_STATE_FILE)
        try:
            record = meta.complete(
                job=job,
                version=version,
                sha256=sha256,
                size_bytes=len(payload),
                tensors=tensors,
                server_state_sha256=state_sha,
            )
            self._upload_weights(weights_key, payload)
            if state_bytes is not None:
                self._upload_weights(state_key, state_bytes)
            # The metadata object last: the version is visible only once everything is there.
            self._put_metadata(self._key(job, version, METADATA_OBJECT), record.to_json_bytes())
        except BaseException:
            self._delete_quietly(weights_key, state_key, claim_key)
            raise
        return record

    def _claim(self, job: str) -> str:
        """Claim the next free version name of ``job`` with a conditional put."""
        number = max((n for n, _ in self._scan(job, complete_only=False)), default=0) + 1
        body = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "claimedAt": utcnow()}
        ).encode()
        for _ in range(_MAX_ATTEMPTS):
            version = version_name(number)
            key = self._key(job, version, CLAIM_OBJECT)
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
                return version
            except _client_errors() as exc:
                if _code(exc) not in _TAKEN:
                    raise self._fail("claim", key, exc) from exc
            # Another writer holds the name: go past everything that exists now.
            number = max(number + 1, max((n for n, _ in self._scan(job, False)), default=0) + 1)
        raise RepositoryError(f"could not claim a version name for job {job!r}; giving up")

    def _upload_weights(self, key: str, payload: bytes) -> None:
        """Upload ``payload`` (multipart above the threshold) without copying it whole."""
        stream = io.BytesIO(payload)  # shares the bytes' buffer until written to (never)
        try:
            self._client.upload_fileobj(
                stream,
                self.bucket,
                key,
                ExtraArgs={"ContentType": "application/octet-stream"},
                Config=self._transfer,
            )
        except _client_errors() as exc:
            raise self._fail("upload", key, exc) from exc
        except Exception as exc:  # s3transfer wraps failures of its worker threads
            if isinstance(exc, RepositoryError):
                raise
            raise RepositoryError(f"cannot upload {self._where(key)}: {_reason(exc)}") from exc

    def _put_metadata(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except _client_errors() as exc:
            if _code(exc) in _TAKEN:
                raise RepositoryError(
                    f"cannot publish {self._where(key)}: it exists already (another writer "
                    "ignored the claim)"
                ) from exc
            raise self._fail("publish", key, exc) from exc

    # ---------------------------------------------------------------------------------------
    # Reading

    def _read_meta(self, job: str, version: str) -> VersionMetadata:
        key = self._key(job, version, METADATA_OBJECT)
        data = self._get_bytes(key, f"job {job!r} has no version {version!r}")
        meta = VersionMetadata.from_json_bytes(data, self._where(key))
        if meta.job != job or meta.version != version:
            raise RepositoryError(
                f"{self._where(key)} describes {meta.job}/{meta.version}, not {job}/{version}"
            )
        return meta

    def list_versions(self, job: str) -> list[VersionMetadata]:
        """Every complete version of ``job``, oldest first."""
        return [self._read_meta(job, name) for _, name in self._scan(job, complete_only=True)]

    def get(self, job: str, version: str) -> VersionMetadata:
        """Metadata of ``job``/``version``; RepositoryError when missing."""
        return self._read_meta(job, version)

    def latest(self, job: str) -> VersionMetadata | None:
        """The newest complete version of ``job``, or ``None``."""
        found = self._scan(job, complete_only=True)
        return self._read_meta(job, found[-1][1]) if found else None

    def _open_body(self, job: str, version: str) -> tuple[VersionMetadata, Any]:
        meta = self.get(job, version)
        key = self._key(job, version, WEIGHTS_OBJECT)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except _client_errors() as exc:
            if _code(exc) in _MISSING:
                raise RepositoryError(
                    f"{job}/{version}: weights object {self._where(key)} is missing"
                ) from exc
            raise self._fail("read", key, exc) from exc
        return meta, response["Body"]

    def read_weights(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The tensors of ``job``/``version``, after checking the object's sha256 and size."""
        meta, body = self._open_body(job, version)
        key = self._key(job, version, WEIGHTS_OBJECT)
        try:
            data = cast(bytes, body.read())
        except _client_errors() as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            body.close()
        if len(data) != meta.size_bytes or hashlib.sha256(data).hexdigest() != meta.sha256:
            raise RepositoryError(
                f"{job}/{version}: {self._where(key)} does not match its recorded sha256; it was "
                "modified or corrupted"
            )
        return from_safetensors_bytes(data)

    def read_server_state(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The server optimizer state stored with ``job``/``version`` (empty: none)."""
        meta = self._read_meta(job, version)
        if meta.server_state_sha256 is None:
            return {}
        key = self._key(job, version, SERVER_STATE_FILE)
        data = self._get_bytes(key, f"{job}/{version}: {self._where(key)} is missing")
        return decode_server_state(meta, data, self._where(key))

    def open_weights_stream(
        self, job: str, version: str, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The weights object in chunks of exactly ``chunk_size`` (the last may be shorter);
        raises after the last chunk if the sha256 is wrong."""
        if chunk_size < 1:
            raise RepositoryError(f"chunk_size must be positive, got {chunk_size}")
        meta, body = self._open_body(job, version)
        return self._stream(job, version, meta, body, chunk_size)

    def _stream(
        self, job: str, version: str, meta: VersionMetadata, body: Any, chunk_size: int
    ) -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        key = self._key(job, version, WEIGHTS_OBJECT)
        pending = bytearray()
        try:
            while True:
                try:
                    piece = body.read(chunk_size - len(pending))
                except _client_errors() as exc:
                    raise self._fail("read", key, exc) from exc
                if not piece:
                    break
                pending += piece
                if len(pending) < chunk_size:
                    continue
                chunk = bytes(pending)
                pending.clear()
                digest.update(chunk)
                size += len(chunk)
                yield chunk
            if pending:
                chunk = bytes(pending)
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        finally:
            body.close()
        if size != meta.size_bytes or digest.hexdigest() != meta.sha256:
            raise RepositoryError(
                f"{job}/{version}: {self._where(key)} does not match its recorded sha256; "
                "discard what was received"
            )

    def export(self, job: str, version: str, dest: Path) -> Path:
        """Download the weights to ``dest`` (or into it, if a directory), verified, and the
        metadata beside them."""
        dest = Path(dest)
        target = dest / f"{job}-{version}.safetensors" if dest.is_dir() else dest
        meta_target = target.with_suffix(".json")
        if meta_target == target:
            raise RepositoryError(f"export destination {target} must not end in .json")
        meta = self.get(job, version)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}-{time.monotonic_ns()}.tmp")
            try:
                with tmp.open("wb") as fh:
                    for chunk in self.open_weights_stream(job, version, 1 << 22):
                        fh.write(chunk)
                os.replace(tmp, target)
            except RepositoryError as exc:
                raise RepositoryError(f"{exc}; not exported") from exc
            finally:
                tmp.unlink(missing_ok=True)
            meta_target.write_bytes(meta.to_json_bytes())
        except OSError as exc:
            raise RepositoryError(f"cannot export to {target}: {exc.strerror or exc}") from exc
        return target

    def jobs(self) -> list[str]:
        """Jobs with at least one complete version, sorted by name."""
        root = self._root()
        names: list[str] = []
        for page in self._list(root, "/"):
            for common in page.get("CommonPrefixes", []):
                name = str(common["Prefix"])[len(root) :].rstrip("/")
                try:
                    check_job(name)
                except RepositoryError:
                    continue
                if self._scan(name, complete_only=True):
                    names.append(name)
        return sorted(names)

    def version_uri(self, job: str, version: str) -> str:
        """``s3://bucket/prefix/<job>/<version>``."""
        return f"{self.uri}/{check_job(job)}/{check_version(version)}"
