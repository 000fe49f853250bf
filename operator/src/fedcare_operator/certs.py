"""Certificates the operator issues, as PEM bytes (``fedcare.pki`` does the cryptography).

``fedcare.pki`` writes keys to files with safe modes; here each issuance happens in a private
temporary folder that is removed at once, and only the PEM bytes go on (into Secrets).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedcare.pki import (
    ROLE_OBSERVER,
    ROLE_PARTICIPANT,
    CertPair,
    create_ca,
    issue_client_cert,
    issue_server_cert,
)
from fedcare_operator.builders import Pem


def _read(pair: CertPair) -> Pem:
    return Pem(cert=pair.cert.read_bytes(), key=pair.key.read_bytes())


def _ca_files(folder: Path, ca: Pem) -> CertPair:
    pair = CertPair(cert=folder / "ca.crt", key=folder / "ca.key")
    pair.key.touch(mode=0o600)
    pair.key.write_bytes(ca.key)
    pair.cert.write_bytes(ca.cert)
    return pair


def new_ca(job: str) -> Pem:
    """A new CA for job ``job``."""
    with tempfile.TemporaryDirectory(prefix="fedcare-ca-") as tmp:
        return _read(create_ca(Path(tmp), job))


def server_cert(ca: Pem, sans: Sequence[str]) -> Pem:
    """The coordinator's server certificate for ``sans``, issued by ``ca``."""
    with tempfile.TemporaryDirectory(prefix="fedcare-cert-") as tmp:
        folder = Path(tmp)
        return _read(issue_server_cert(_ca_files(folder, ca), folder / "out", sans=tuple(sans)))


def client_cert(ca: Pem, common_name: str, role: str = ROLE_PARTICIPANT) -> Pem:
    """A client certificate for ``common_name`` with ``role``, issued by ``ca``."""
    with tempfile.TemporaryDirectory(prefix="fedcare-cert-") as tmp:
        folder = Path(tmp)
        return _read(issue_client_cert(_ca_files(folder, ca), folder / "out", common_name, role))


def enroll_remote(
    endpoint: str, ca_cert: bytes, token: str, participant: str, server_name: str
) -> tuple[Pem, bytes]:
    """Enroll ``participant`` at a remote coordinator's Enrollment ``endpoint``.

    The key is created here and never sent; returns (certificate and key, the job CA's
    certificate). Raises :class:`fedcare.enrollment.EnrollmentError` when refused.
    """
    from fedcare.enrollment import enroll

    with tempfile.TemporaryDirectory(prefix="fedcare-enroll-") as tmp:
        folder = Path(tmp)
        (folder / "trusted-ca.crt").write_bytes(ca_cert)
        pair = enroll(
            endpoint, folder / "trusted-ca.crt", token, participant, folder / "out", server_name
        )
        return _read(pair), (folder / "out" / "ca.crt").read_bytes()


def observer_cert(ca: Pem, common_name: str) -> Pem:
    """The operator's observer certificate (may watch status, never train)."""
    return client_cert(ca, common_name, ROLE_OBSERVER)


__all__ = ["client_cert", "enroll_remote", "new_ca", "observer_cert", "server_cert"]
