"""Enrollment: a site outside the job's cluster trades a one-time token and a CSR for a cert.

1. Whoever runs the job issues a token for a participant name:
   ``fedcare token create JOB --participant NAME --tokens FILE`` prints it once; the store
   (:class:`TokenStore`, a JSON file) keeps only its SHA-256, the job and the name it is bound
   to, when it expires and when it was used.
2. The site creates its key and CSR locally (the key never leaves it) and calls the
   coordinator's ``Enrollment.Enroll`` over server-authenticated TLS (it has no certificate
   yet; it checks the coordinator against the job CA it got with the token):
   ``fedcare enroll --endpoint HOST:PORT --ca ca.crt --token T --participant NAME --out DIR``.
3. The coordinator (:class:`EnrollmentService`) redeems the token (single use, only for the
   name it was issued for, only for this job, not expired), signs the CSR as a participant
   certificate for that name with the job CA, and admits the name (``Engine.allow``): the site
   joins with the new certificate and takes part from the next round.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedcare.errors import FedcareError, PkiError
from fedcare.pki import ROLE_PARTICIPANT, CertPair, create_key_and_csr, identity_of, sign_csr
from fedcare.transport import make_tls_channel
from fedcare.transport._generated import enrollment_pb2 as pb
from fedcare.transport._generated import enrollment_pb2_grpc as pb_grpc

log = logging.getLogger("fedcare.enrollment")

#: Tokens carry 256 random bits; this prefix makes them recognizable in logs and configs.
TOKEN_PREFIX = "fct_"
#: How long a token stays valid unless ``--ttl`` says otherwise.
DEFAULT_TTL = dt.timedelta(hours=24)


class EnrollmentError(FedcareError):
    """A token was refused; ``reason`` is a stable word for metrics and tests."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class TokenRecord:
    """What the store keeps about one token (never the token itself)."""

    job: str
    participant: str
    created_at: str
    expires_at: str
    used_at: str | None = None


class TokenStore:
    """One-time enrollment tokens in a JSON file, hashed, single-use, bound to a name.

    Safe across processes (``fedcare token create`` and a running coordinator): every change
    holds an exclusive ``flock`` on ``<file>.lock`` and replaces the file atomically.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                tokens: dict[str, dict[str, Any]] = {}
                if self.path.exists():
                    doc = json.loads(self.path.read_text() or "{}")
                    tokens = dict(doc.get("tokens") or {})
                before = json.dumps(tokens, sort_keys=True)
                yield tokens
                if json.dumps(tokens, sort_keys=True) != before:
                    tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as out:
                        json.dump({"version": 1, "tokens": tokens}, out, indent=2, sort_keys=True)
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def issue(self, job: str, participant: str, ttl: dt.timedelta = DEFAULT_TTL) -> str:
        """A new token for ``participant`` of ``job``; returned once, stored only hashed."""
        if not job or not participant:
            raise EnrollmentError("invalid", "job and participant must not be empty")
        if ttl <= dt.timedelta(0):
            raise EnrollmentError("invalid", "a token's lifetime must be positive")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        with self._locked() as tokens:
            tokens[_hash(token)] = {
                "job": job,
                "participant": participant,
                "createdAt": _stamp(now),
                "expiresAt": _stamp(now + ttl),
                "usedAt": None,
            }
        return token

    def redeem(self, token: str, job: str, participant: str) -> TokenRecord:
        """Use ``token`` for ``participant`` of ``job`` (once) or raise :class:`EnrollmentError`.

        A token presented for another name or job is refused and stays unused (it is bound to
        the name it was issued for); a used or expired one is refused.
        """
        with self._locked() as tokens:
            entry = tokens.get(_hash(token))
            if entry is None:
                raise EnrollmentError("unknown", "unknown enrollment token")
            if entry["job"] != job:
                raise EnrollmentError("wrong_job", f"the token is not for job {job!r}")
            if entry["participant"] != participant:
                raise EnrollmentError(
                    "wrong_participant",
                    f"the token was issued for another participant, not {participant!r}",
                )
            if entry.get("usedAt"):
                raise EnrollmentError("used", f"the token was already used at {entry['usedAt']}")
            if _parse(entry["expiresAt"]) <= _now():
                raise EnrollmentError("expired", f"the token expired at {entry['expiresAt']}")
            entry["usedAt"] = _stamp(_now())
            return TokenRecord(
                job=entry["job"],
                participant=entry["participant"],
                created_at=entry["createdAt"],
                expires_at=entry["expiresAt"],
                used_at=entry["usedAt"],
            )

    def enrolled(self, job: str) -> list[str]:
        """The names that enrolled in ``job`` (their token was redeemed), sorted; a restarted
        coordinator admits them again, since their certificates stay valid."""
        return sorted({r.participant for r in self.records() if r.job == job and r.used_at})

    def records(self) -> list[TokenRecord]:
        """Every token's record (for listing; tokens themselves are not stored)."""
        with self._locked() as tokens:
            return [
                TokenRecord(
                    job=e["job"],
                    participant=e["participant"],
                    created_at=e["createdAt"],
                    expires_at=e["expiresAt"],
                    used_at=e.get("usedAt"),
                )
                for e in tokens.values()
            ]


class EnrollmentService(pb_grpc.EnrollmentServicer):
    """``fedcare.v1.Enrollment``: token + CSR in, participant certificate out."""

    def __init__(
        self, job: str, ca: CertPair, store: TokenStore, admit: Callable[[str], None]
    ) -> None:
        self._job = job
        self._ca = ca
        self._store = store
        self._admit = admit

    def Enroll(  # noqa: N802 - the RPC's name
        self, request: pb.EnrollRequest, context: grpc.ServicerContext
    ) -> pb.EnrollResponse:
        """Redeem the token, sign the CSR for the token's name, admit the name."""
        name = request.participant
        # The CSR is checked (and signed) first, so a malformed request does not burn the
        # token; the certificate is handed out only once the token is redeemed.
        try:
            cert = sign_csr(self._ca, bytes(request.csr_pem), name, ROLE_PARTICIPANT)
        except PkiError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            self._store.redeem(request.token, self._job, name)
        except EnrollmentError as err:
            log.warning("enrollment of %r refused: %s", name, err)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        self._admit(name)
        log.info("enrolled participant %r; it takes part from the next round", name)
        return pb.EnrollResponse(
            certificate_pem=cert,
            ca_pem=self._ca.cert.read_bytes(),
            job=self._job,
            participant=name,
        )


def enroll(
    endpoint: str,
    ca: str | Path,
    token: str,
    participant: str,
    out_dir: str | Path,
    server_name: str = "fedcare-coordinator",
    timeout: float = 30.0,
) -> CertPair:
    """Enroll ``participant`` at the coordinator's Enrollment ``endpoint``.

    Creates ``<participant>.key`` in ``out_dir`` (never sent), sends a CSR and the token, and
    writes the signed ``<participant>.crt`` and the job CA as ``ca.crt`` next to it. Raises
    :class:`EnrollmentError` when the coordinator refuses.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key, csr = create_key_and_csr(out, participant)
    channel = make_tls_channel(endpoint, str(ca), server_name)
    try:
        stub = pb_grpc.EnrollmentStub(channel)  # type: ignore[no-untyped-call]
        response = stub.Enroll(
            pb.EnrollRequest(token=token, participant=participant, csr_pem=csr), timeout=timeout
        )
    except grpc.RpcError as err:
        key.unlink(missing_ok=True)
        detail = err.details() if isinstance(err, grpc.Call) else str(err)
        code = err.code().name if isinstance(err, grpc.Call) else "ERROR"
        raise EnrollmentError(code.lower(), f"enrollment refused ({code}): {detail}") from None
    finally:
        channel.close()
    if identity_of(response.certificate_pem) != (participant, ROLE_PARTICIPANT):
        raise EnrollmentError("bad_certificate", "the coordinator returned another identity")
    cert = out / f"{participant}.crt"
    cert.write_bytes(response.certificate_pem)
    (out / "ca.crt").write_bytes(response.ca_pem)
    return CertPair(cert=cert, key=key)


__all__ = [
    "DEFAULT_TTL",
    "TOKEN_PREFIX",
    "EnrollmentError",
    "EnrollmentService",
    "TokenRecord",
    "TokenStore",
    "enroll",
]
