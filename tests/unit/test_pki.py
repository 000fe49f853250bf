"""Tests of fedcare.pki: the per-job CA, server and client certificates, CSR enrollment."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcare.errors import PkiError
from fedcare.pki import (
    ROLE_COORDINATOR,
    ROLE_OBSERVER,
    ROLE_PARTICIPANT,
    CertPair,
    create_ca,
    create_key_and_csr,
    identity_of,
    issue_client_cert,
    issue_server_cert,
    sign_csr,
)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def ca(tmp_path: Path) -> CertPair:
    """A fresh job CA."""
    return create_ca(tmp_path / "pki", "heart-study")


def test_ca_is_a_ca(ca: CertPair) -> None:
    assert ca.cert.name == "ca.crt" and ca.key.name == "ca.key"
    cert = _cert(ca.cert)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "fedcare-ca/heart-study"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    cert.verify_directly_issued_by(cert)  # self-signed
    assert cert.not_valid_before_utc < cert.not_valid_after_utc


def test_ca_long_job_name_is_shortened(tmp_path: Path) -> None:
    job = "j" * 63
    cert = _cert(create_ca(tmp_path, job).cert)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str) and cn.startswith("fedcare-ca/j") and len(cn) <= 64


def test_key_modes(tmp_path: Path, ca: CertPair) -> None:
    server = issue_server_cert(ca, tmp_path / "server")
    client = issue_client_cert(ca, tmp_path / "clients", "hospital-a")
    key_path, _ = create_key_and_csr(tmp_path / "enroll", "hospital-b")
    for key in (ca.key, server.key, client.key, key_path):
        assert _mode(key) == 0o600, key
    for cert in (ca.cert, server.cert, client.cert):
        assert _mode(cert) == 0o644, cert
    # Nothing but the expected files: temporary names are gone.
    assert sorted(p.name for p in (tmp_path / "clients").iterdir()) == [
        "hospital-a.crt",
        "hospital-a.key",
    ]


def test_key_mode_under_permissive_umask(tmp_path: Path, ca: CertPair) -> None:
    old = os.umask(0)
    try:
        pair = issue_client_cert(ca, tmp_path / "c", "site")
    finally:
        os.umask(old)
    assert _mode(pair.key) == 0o600
    assert _mode(pair.cert) == 0o644


def test_key_mode_when_overwriting_a_world_readable_file(tmp_path: Path, ca: CertPair) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / "site.key").write_text("old")
    os.chmod(out / "site.key", 0o644)
    pair = issue_client_cert(ca, out, "site")
    assert _mode(pair.key) == 0o600
    serialization.load_pem_private_key(pair.key.read_bytes(), password=None)


def test_server_cert(tmp_path: Path, ca: CertPair) -> None:
    pair = issue_server_cert(ca, tmp_path / "srv")
    assert pair.cert.name == "server.crt" and pair.key.name == "server.key"
    cert = _cert(pair.cert)
    cert.verify_directly_issued_by(_cert(ca.cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fedcare-coordinator", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert identity_of(pair.cert.read_bytes()) == ("fedcare-coordinator", ROLE_COORDINATOR)


def test_server_cert_custom_sans(tmp_path: Path, ca: CertPair) -> None:
    pair = issue_server_cert(ca, tmp_path, "coord", sans=["coord.ns.svc", "::1", "10.0.0.7"])
    san = _cert(pair.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coord.ns.svc"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.7"),
    ]


def test_client_cert_chain_and_identity(tmp_path: Path, ca: CertPair) -> None:
    pair = issue_client_cert(ca, tmp_path, "hospital-a")
    assert pair.cert == tmp_path / "hospital-a.crt" and pair.key == tmp_path / "hospital-a.key"
    cert = _cert(pair.cert)
    cert.verify_directly_issued_by(_cert(ca.cert))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert identity_of(pair.cert.read_bytes()) == ("hospital-a", ROLE_PARTICIPANT)
    # DER works as well as PEM.
    der = cert.public_bytes(serialization.Encoding.DER)
    assert identity_of(der) == ("hospital-a", ROLE_PARTICIPANT)
    # The key belongs to the certificate.
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_observer_role(tmp_path: Path, ca: CertPair) -> None:
    pair = issue_client_cert(ca, tmp_path, "fedcare-observer", role=ROLE_OBSERVER)
    assert identity_of(pair.cert.read_bytes()) == ("fedcare-observer", ROLE_OBSERVER)


def test_not_before_in_the_past_and_serials_random(tmp_path: Path, ca: CertPair) -> None:
    a = _cert(issue_client_cert(ca, tmp_path / "a", "a").cert)
    b = _cert(issue_client_cert(ca, tmp_path / "b", "a").cert)
    assert a.serial_number != b.serial_number
    ca_cert = _cert(ca.cert)
    assert a.not_valid_before_utc <= dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    # A leaf never outlives its CA.
    long = _cert(issue_client_cert(ca, tmp_path / "c", "c", days=10_000).cert)
    assert long.not_valid_after_utc <= ca_cert.not_valid_after_utc


def test_cert_from_other_ca_does_not_verify(tmp_path: Path, ca: CertPair) -> None:
    other = create_ca(tmp_path / "other", "other-job")
    pair = issue_client_cert(other, tmp_path / "c", "intruder")
    _cert(pair.cert).verify_directly_issued_by(_cert(other.cert))
    with pytest.raises(ValueError):  # issuer name differs
        _cert(pair.cert).verify_directly_issued_by(_cert(ca.cert))
    # A rogue CA with the very same subject (same job name) fails on the signature.
    rogue = create_ca(tmp_path / "rogue", "heart-study")
    assert _cert(rogue.cert).subject == _cert(ca.cert).subject
    forged = issue_client_cert(rogue, tmp_path / "f", "hospital-a")
    with pytest.raises(InvalidSignature):
        _cert(forged.cert).verify_directly_issued_by(_cert(ca.cert))


def test_bad_inputs(tmp_path: Path, ca: CertPair) -> None:
    with pytest.raises(PkiError, match="role"):
        issue_client_cert(ca, tmp_path, "x", role="admin")
    for bad in ("", "../evil", "a/b", ".hidden", "x" * 65):
        with pytest.raises(PkiError, match="common name"):
            issue_client_cert(ca, tmp_path, bad)
    with pytest.raises(PkiError, match="at least 1 day"):
        issue_client_cert(ca, tmp_path, "x", days=0)
    with pytest.raises(PkiError):
        issue_client_cert(CertPair(tmp_path / "nope.crt", tmp_path / "nope.key"), tmp_path, "x")
    # CA key that does not match the CA certificate.
    other = create_ca(tmp_path / "other", "j")
    with pytest.raises(PkiError, match="does not match"):
        issue_client_cert(CertPair(ca.cert, other.key), tmp_path, "x")
    # A leaf is not a CA.
    leaf = issue_client_cert(ca, tmp_path / "leaf", "leaf")
    with pytest.raises(PkiError, match="not a CA"):
        issue_client_cert(leaf, tmp_path, "x")


def test_identity_of_refuses_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(PkiError):
        identity_of(b"garbage")
    ca_pem = create_ca(tmp_path, "j").cert.read_bytes()
    with pytest.raises(PkiError, match="OrganizationalUnit"):
        identity_of(ca_pem)  # the CA has no role
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "participant")])
    no_cn = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(PkiError, match="CommonName"):
        identity_of(no_cn.public_bytes(serialization.Encoding.PEM))


def test_csr_enrollment(tmp_path: Path, ca: CertPair) -> None:
    key_path, csr_pem = create_key_and_csr(tmp_path / "site", "hospital-b")
    assert key_path == tmp_path / "site" / "hospital-b.key"
    assert _mode(key_path) == 0o600
    assert b"PRIVATE KEY" not in csr_pem
    cert_pem = sign_csr(ca, csr_pem, "hospital-b", ROLE_PARTICIPANT)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(_cert(ca.cert))
    assert identity_of(cert_pem) == ("hospital-b", ROLE_PARTICIPANT)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_sign_csr_refuses_mismatched_cn(tmp_path: Path, ca: CertPair) -> None:
    _, csr_pem = create_key_and_csr(tmp_path, "hospital-b")
    with pytest.raises(PkiError, match="not 'hospital-c'"):
        sign_csr(ca, csr_pem, "hospital-c", ROLE_PARTICIPANT)


def test_sign_csr_refuses_bad_signature_and_garbage(tmp_path: Path, ca: CertPair) -> None:
    with pytest.raises(PkiError, match="PEM CSR"):
        sign_csr(ca, b"not a csr", "x", ROLE_PARTICIPANT)
    _, csr_pem = create_key_and_csr(tmp_path, "hospital-b")
    csr = x509.load_pem_x509_csr(csr_pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # Flip a bit inside the signature (the DER ends with the signature BIT STRING).
    der[-5] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError, match="signature"):
        sign_csr(ca, tampered, "hospital-b", ROLE_PARTICIPANT)


def test_sign_csr_refuses_unknown_role(tmp_path: Path, ca: CertPair) -> None:
    _, csr_pem = create_key_and_csr(tmp_path, "hospital-b")
    with pytest.raises(PkiError, match="role"):
        sign_csr(ca, csr_pem, "hospital-b", "superuser")


def _handshake(ca: CertPair, server: CertPair, client: CertPair, server_name: str) -> str:
    """Mutual-TLS handshake over loopback; returns the client CN the server saw."""
    import socket
    import ssl
    import threading

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server.cert, server.key)
    server_ctx.load_verify_locations(cafile=ca.cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_cert_chain(client.cert, client.key)
    client_ctx.load_verify_locations(cafile=ca.cert)

    seen: list[str] = []
    errors: list[Exception] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    if der is None:
                        raise PkiError("the client sent no certificate")
                    seen.append(identity_of(der)[0])
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError, PkiError) as exc:  # reported to the test thread
                errors.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client_error: BaseException | None = None
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                if tls.recv(2) != b"ok":
                    raise ConnectionError("server closed the connection")
        except (ssl.SSLError, OSError) as exc:
            client_error = exc
        finally:
            thread.join(timeout=5)
    if errors:  # the server's view decides
        raise errors[0]
    if client_error is not None:
        raise client_error
    return seen[0]


def test_mutual_tls_handshake(tmp_path: Path, ca: CertPair) -> None:
    server = issue_server_cert(ca, tmp_path / "srv")
    client = issue_client_cert(ca, tmp_path / "cli", "hospital-a")
    assert _handshake(ca, server, client, "fedcare-coordinator") == "hospital-a"
    assert _handshake(ca, server, client, "127.0.0.1") == "hospital-a"


def test_mutual_tls_refuses_foreign_client(tmp_path: Path, ca: CertPair) -> None:
    import ssl

    server = issue_server_cert(ca, tmp_path / "srv")
    rogue = create_ca(tmp_path / "rogue", "heart-study")
    intruder = issue_client_cert(rogue, tmp_path / "cli", "hospital-a")
    with pytest.raises(ssl.SSLError, match="certificate"):
        _handshake(ca, server, intruder, "fedcare-coordinator")


def test_client_refuses_wrong_server_name(tmp_path: Path, ca: CertPair) -> None:
    import ssl

    server = issue_server_cert(ca, tmp_path / "srv")
    client = issue_client_cert(ca, tmp_path / "cli", "hospital-a")
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(ca, server, client, "evil.example")
