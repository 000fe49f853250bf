"""The audit trail: every update the coordinator accepted or rejected, append-only.

One JSON object per line in ``<repository root>/<job>/audit.jsonl`` (:func:`audit_path_for`),
next to the job's model versions (the repository lists only version directories, so the file
does not disturb it)::

    {"event": "accepted", "job": "readmission", "round": 2, "participant": "st-mary",
     "samples": 81234, "epsilon": 0.61, "sha256": "9f2c...", "time": "...", "prev": "0c1d..."}
    {"event": "rejected", "job": "readmission", "round": 2, "participant": "st-luke",
     "reason": "not-finite", "detail": "update holds NaN", "sha256": "77aa...", ...}

``participant`` is the identity from the participant's client certificate; ``sha256`` is the
digest of the update as received (the bytes on the wire, before any decoding); ``epsilon`` is
the DP epsilon the participant's site has spent on the job after that round (``null`` without
DP).

Append-only: records are only ever appended (``O_APPEND``, one ``write`` per record, fsync
per record, under an exclusive ``flock`` so concurrent writers, threads or processes, keep
lines whole and ordered). :class:`AuditLog` has no way to change or remove a record. Each
record also carries ``prev``, the SHA-256 of the previous line (64 zeros for the first), so
an edit or deletion anywhere breaks the chain and :meth:`AuditLog.verify` reports the line.
That makes tampering evident, not impossible: whoever can write the file can rewrite the
whole chain, so keep a copy of the last hash elsewhere if that matters.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from fedcare.errors import FedcareError, RepositoryError
from fedcare.repository.base import check_job

__all__ = [
    "AUDIT_FILE",
    "GENESIS",
    "AcceptedRecord",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "RejectedRecord",
    "audit_path_for",
]

#: The audit file's name inside ``<repository root>/<job>/``.
AUDIT_FILE = "audit.jsonl"
#: ``prev`` of the first record.
GENESIS = "0" * 64
_SHA256 = r"^[0-9a-f]{64}$"
_TAIL = 1 << 16


class AuditError(FedcareError):
    """The audit trail cannot be read, written or verified (the message names file and line)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(min_length=1, max_length=63)
    round: int = Field(ge=0)
    #: The participant's identity, from its client certificate.
    participant: str = Field(min_length=1, max_length=253)
    #: RFC 3339, UTC.
    time: str = Field(min_length=1)
    #: SHA-256 (hex) of the previous line of the file (without its newline); :data:`GENESIS`
    #: for the first.
    prev: str = Field(default=GENESIS, pattern=_SHA256)


class AcceptedRecord(_Record):
    """An update the coordinator accepted into a round's aggregate."""

    event: Literal["accepted"] = "accepted"
    samples: int = Field(ge=0)
    #: DP epsilon the participant's site has spent on this job so far (``None``: no DP).
    epsilon: float | None = Field(default=None, ge=0.0)
    #: SHA-256 (hex) of the update as received.
    sha256: str = Field(pattern=_SHA256)


class RejectedRecord(_Record):
    """An update (or an attempt to send one) the coordinator refused."""

    event: Literal["rejected"] = "rejected"
    #: A short machine-readable reason, e.g. ``not-finite``, ``wrong-layout``, ``stale-round``.
    reason: str = Field(min_length=1, max_length=128)
    #: A human-readable explanation.
    detail: str = Field(default="", max_length=4096)
    #: SHA-256 (hex) of the update as received, when there was one.
    sha256: str | None = Field(default=None, pattern=_SHA256)


AuditRecord = Annotated[AcceptedRecord | RejectedRecord, Field(discriminator="event")]
_RECORD: TypeAdapter[AcceptedRecord | RejectedRecord] = TypeAdapter(AuditRecord)


def audit_path_for(repository_uri: str, job: str) -> Path:
    """The audit file of ``job`` in the repository at ``repository_uri``.

    ``file://<path>`` (or a bare path) gives ``<path>/<job>/audit.jsonl``. ``s3://``
    repositories are not supported yet (an object store has no atomic append): raises
    :class:`AuditError`. Raises :class:`~fedcare.errors.RepositoryError` for a bad job name.
    """
    check_job(job)
    if repository_uri.startswith("file://"):
        root = repository_uri[len("file://") :]
        if not root:
            raise RepositoryError(f"repository URI {repository_uri!r} names no path")
    elif repository_uri.startswith("s3://"):
        raise AuditError(
            f"the audit trail is not supported for s3:// repositories yet ({repository_uri}): "
            "use a file:// repository (a mounted volume) to keep one"
        )
    elif "://" in repository_uri:
        raise AuditError(f"unsupported repository URI {repository_uri!r} for the audit trail")
    else:
        root = repository_uri
    return Path(root) / job / AUDIT_FILE


def _timestamp(when: datetime | None) -> str:
    moment = datetime.now(UTC) if when is None else when
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """The append-only audit file at ``path`` (created, with its folders, on first write)."""

    def __init__(self, path: str | Path) -> None:
        """Use the audit file at ``path``."""
        self.path = Path(path)

    def __repr__(self) -> str:
        """``AuditLog('<path>')``."""
        return f"AuditLog({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[int]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AuditError(f"cannot open audit trail {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def _last_line_hash(self, fd: int) -> str:
        """SHA-256 of the file's last line (:data:`GENESIS` if empty)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return GENESIS
        window = _TAIL
        while True:
            start = max(0, size - window)
            tail = os.pread(fd, size - start, start)
            if not tail.endswith(b"\n"):
                raise AuditError(
                    f"{self.path}: the last record is incomplete (no newline); "
                    "the trail is append-only: repair it by hand"
                )
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0 or start == 0:
                return hashlib.sha256(tail[cut + 1 : -1]).hexdigest()  # without its newline
            window *= 2

    def _append(self, record: AcceptedRecord | RejectedRecord) -> AcceptedRecord | RejectedRecord:
        with self._locked() as fd:
            chained = record.model_copy(update={"prev": self._last_line_hash(fd)})
            line = chained.model_dump_json(exclude_none=False).encode() + b"\n"
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                raise AuditError(f"cannot append to audit trail {self.path}: {exc}") from exc
        return chained

    def accepted(
        self,
        job: str,
        round_number: int,
        participant: str,
        samples: int,
        epsilon: float | None,
        sha256: str,
        time: datetime | None = None,
    ) -> AcceptedRecord:
        """Append that ``participant``'s update (``sha256``, ``samples`` rows) was accepted
        into ``job``'s round ``round_number``; returns the record as written."""
        record = AcceptedRecord(
            job=job,
            round=round_number,
            participant=participant,
            samples=samples,
            epsilon=epsilon,
            sha256=sha256,
            time=_timestamp(time),
        )
        written = self._append(record)
        assert isinstance(written, AcceptedRecord)
        return written

    def rejected(
        self,
        job: str,
        round_number: int,
        participant: str,
        reason: str,
        detail: str,
        time: datetime | None = None,
        sha256: str | None = None,
    ) -> RejectedRecord:
        """Append that ``participant``'s update for ``job``'s round ``round_number`` was
        refused for ``reason`` (``detail`` explains); returns the record as written."""
        record = RejectedRecord(
            job=job,
            round=round_number,
            participant=participant,
            reason=reason,
            detail=detail,
            sha256=sha256,
            time=_timestamp(time),
        )
        written = self._append(record)
        assert isinstance(written, RejectedRecord)
        return written

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot read audit trail {self.path}: {exc.strerror}") from exc
        lines = data.split(b"\n")
        if lines[-1] != b"":
            raise AuditError(
                f"{self.path}:{len(lines)}: the last record is incomplete (no newline)"
            )
        lines.pop()
        return lines

    def _parse(self, lines: list[bytes]) -> list[AcceptedRecord | RejectedRecord]:
        out: list[AcceptedRecord | RejectedRecord] = []
        for number, line in enumerate(lines, start=1):
            try:
                out.append(_RECORD.validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                raise AuditError(
                    f"{self.path}:{number}: malformed audit record ({where}: {first['msg']})"
                ) from exc
        return out

    def read(self, job: str | None = None) -> list[AcceptedRecord | RejectedRecord]:
        """Every record (of ``job`` only, when given), oldest first; ``[]`` if no file.

        Raises :class:`AuditError` naming the file and line of a record that does not parse.
        """
        records = self._parse(self._lines())
        return [r for r in records if job is None or r.job == job]

    def verify(self) -> int:
        """Check the hash chain; the number of records. Raises :class:`AuditError` naming the
        first line whose ``prev`` does not match the line before it."""
        prev = GENESIS
        lines = self._lines()
        for number, (record, line) in enumerate(zip(self._parse(lines), lines, strict=True), 1):
            if record.prev != prev:
                raise AuditError(
                    f"{self.path}:{number}: the audit trail was altered before this line "
                    "(hash chain broken)"
                )
            prev = hashlib.sha256(line).hexdigest()
        return len(lines)
