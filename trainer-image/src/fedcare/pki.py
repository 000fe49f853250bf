"""Per-job PKI for mutual TLS: a job CA, the coordinator's server certificate, client certificates.

Every job has its own certificate authority. A certificate's subject carries who its holder is:
the identity (a participant, observer or coordinator name) in CommonName and the role in
OrganizationalUnit. The coordinator reads both with :func:`identity_of` after the TLS handshake.

Keys are EC P-256. Private keys are written with mode 0600 from the moment the file exists
(never widened and then narrowed), certificates with 0644. Files are written to a temporary name
and renamed into place, so a reader never sees half a key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcare.errors import PkiError

__all__ = [
    "ROLES",
    "ROLE_COORDINATOR",
    "ROLE_OBSERVER",
    "ROLE_PARTICIPANT",
    "CertPair",
    "create_ca",
    "create_key_and_csr",
    "identity_of",
    "issue_client_cert",
    "issue_server_cert",
    "sign_csr",
]

#: A site that trains: may join a job, fetch models and send updates.
ROLE_PARTICIPANT = "participant"
#: A watcher (operator, local runner, CLI): may read status, never send updates.
ROLE_OBSERVER = "observer"
#: The coordinator's own identity (its server certificate).
ROLE_COORDINATOR = "coordinator"
#: Every role a certificate may carry.
ROLES: frozenset[str] = frozenset({ROLE_PARTICIPANT, ROLE_OBSERVER, ROLE_COORDINATOR})

#: Default names the coordinator's certificate answers to.
DEFAULT_SERVER_SANS: tuple[str, ...] = ("fedcare-coordinator", "localhost", "127.0.0.1")

_CA_PREFIX = "fedcare-ca/"
_ORGANIZATION = "fedcare"
#: X.509's upper bound on a CommonName (ub-common-name).
_MAX_CN = 64
#: Common names become file names: no separators, no leading dot.
_CN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: How far notBefore lies in the past, to absorb clock skew between machines.
_BACKDATE = dt.timedelta(minutes=5)
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert: Path
    key: Path


# --------------------------------------------------------------------------------------------
# Files


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically; the file has ``mode`` from its creation on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            # The umask may only have narrowed ``mode``; set it exactly while the file is empty.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM with mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        _write_file(path, pem, _PRIVATE_MODE)
    except OSError as exc:
        raise PkiError(f"cannot write private key {path}: {exc.strerror or exc}") from exc


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    """Write ``cert`` as PEM with mode 0644."""
    try:
        _write_file(path, cert.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    except OSError as exc:
        raise PkiError(f"cannot write certificate {path}: {exc.strerror or exc}") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------------------------
# Validation


def _check_common_name(common_name: str) -> None:
    if not _CN_RE.fullmatch(common_name):
        raise PkiError(
            f"invalid common name {common_name!r}: 1-64 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise PkiError(f"unknown role {role!r}; expected one of {', '.join(sorted(ROLES))}")


def _check_days(days: int) -> None:
    if days < 1:
        raise PkiError(f"certificate validity must be at least 1 day, got {days}")


def _ca_common_name(job: str) -> str:
    """``fedcare-ca/<job>``, shortened with a hash suffix when over X.509's 64 characters."""
    cn = _CA_PREFIX + job
    if len(cn) <= _MAX_CN:
        return cn
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    keep = _MAX_CN - len(_CA_PREFIX) - len(digest) - 1
    return f"{_CA_PREFIX}{job[:keep]}-{digest}"


# --------------------------------------------------------------------------------------------
# CA


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_ca(ca: CertPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the CA certificate and key, checking that they belong together."""
    try:
        cert = x509.load_pem_x509_certificate(_read(ca.cert, "CA certificate"))
    except ValueError as exc:
        raise PkiError(f"{ca.cert} is not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(_read(ca.key, "CA key"), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{ca.key} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{ca.key} is not an EC private key")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PkiError(f"CA key {ca.key} does not match CA certificate {ca.cert}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise PkiError(f"{ca.cert} is not a CA certificate (no basicConstraints)") from exc
    if not constraints.ca:
        raise PkiError(f"{ca.cert} is not a CA certificate (CA:FALSE)")
    return cert, key


def create_ca(out_dir: Path, job: str, days: int = 365) -> CertPair:
    """Create a self-signed job CA in ``out_dir`` as ``ca.crt`` and ``ca.key``.

    The subject's CommonName is ``fedcare-ca/<job>`` (shortened with a hash suffix when longer
    than X.509's 64 characters). The certificate is CA:TRUE with pathlen 0 and may sign
    certificates and CRLs only.
    """
    _check_days(days)
    if not job:
        raise PkiError("job name must not be empty")
    out_dir = Path(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, _ca_common_name(job)),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(cert=out_dir / "ca.crt", key=out_dir / "ca.key")
    _write_key(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


# --------------------------------------------------------------------------------------------
# Leaf certificates


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _build_leaf(
    ca: CertPair,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    common_name: str,
    role: str,
    days: int,
    usages: Sequence[x509.ObjectIdentifier],
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """Sign a leaf certificate for ``public_key`` with the job CA."""
    _check_common_name(common_name)
    _check_role(role)
    _check_days(days)
    ca_cert, ca_key = _load_ca(ca)
    now = _now()
    # A leaf never outlives its CA: clients would reject the chain past the CA's notAfter anyway.
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _general_names(sans: Sequence[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses (detected with :mod:`ipaddress`) for a SAN extension."""
    names: list[x509.GeneralName] = []
    for san in sans:
        if not san:
            raise PkiError("subject alternative names must not be empty")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


def issue_server_cert(
    ca: CertPair,
    out_dir: Path,
    common_name: str = "fedcare-coordinator",
    sans: Sequence[str] = DEFAULT_SERVER_SANS,
    days: int = 365,
) -> CertPair:
    """Issue the coordinator's server certificate as ``server.crt`` / ``server.key``.

    ``sans`` become DNS or IP subject alternative names (IPs detected with :mod:`ipaddress`);
    the certificate carries role ``coordinator`` and the serverAuth usage.
    """
    if isinstance(sans, str):
        raise PkiError("sans must be a sequence of names, not a single string")
    general_names = _general_names(sans)
    if not general_names:
        raise PkiError("a server certificate needs at least one subject alternative name")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_leaf(
        ca,
        key.public_key(),
        common_name,
        ROLE_COORDINATOR,
        days,
        [ExtendedKeyUsageOID.SERVER_AUTH],
        general_names,
    )
    out_dir = Path(out_dir)
    pair = CertPair(cert=out_dir / "server.crt", key=out_dir / "server.key")
    _write_key(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


def issue_client_cert(
    ca: CertPair,
    out_dir: Path,
    common_name: str,
    role: str = ROLE_PARTICIPANT,
    days: int = 365,
) -> CertPair:
    """Issue a client certificate as ``<common_name>.crt`` / ``<common_name>.key``.

    The identity goes in CommonName, ``role`` in OrganizationalUnit; usage is clientAuth.
    """
    _check_common_name(common_name)
    _check_role(role)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_leaf(
        ca, key.public_key(), common_name, role, days, [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    out_dir = Path(out_dir)
    pair = CertPair(cert=out_dir / f"{common_name}.crt", key=out_dir / f"{common_name}.key")
    _write_key(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


# --------------------------------------------------------------------------------------------
# Enrollment (CSR)


def create_key_and_csr(out_dir: Path, common_name: str) -> tuple[Path, bytes]:
    """Create ``<common_name>.key`` (0600) in ``out_dir`` and return it with a PEM CSR.

    The CSR names only the CommonName; the CA decides the role when it signs (:func:`sign_csr`).
    The private key never leaves ``out_dir``.
    """
    _check_common_name(common_name)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_path = Path(out_dir) / f"{common_name}.key"
    _write_key(key_path, key)
    return key_path, csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(
    ca: CertPair,
    csr_pem: bytes,
    common_name: str,
    role: str,
    days: int = 365,
) -> bytes:
    """Sign an enrollment CSR as a client certificate for ``common_name`` with ``role``.

    Refuses (:class:`PkiError`) a CSR that does not parse, whose self-signature is invalid, whose
    CommonName is not exactly ``common_name``, or whose key is not EC or RSA of 2048+ bits. The
    subject and extensions of the issued certificate come from the CA, never from the CSR.
    Returns the certificate as PEM.
    """
    _check_common_name(common_name)
    _check_role(role)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PkiError("the certificate signing request is not a valid PEM CSR") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature) as exc:
        raise PkiError("the certificate signing request's signature cannot be checked") from exc
    if not valid:
        raise PkiError("the certificate signing request's signature is invalid")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise PkiError(f"the CSR must name exactly one common name, found {len(names)}")
    requested = names[0].value
    if requested != common_name:
        raise PkiError(f"the CSR is for {requested!r}, not {common_name!r}; refusing to sign")
    public_key = csr.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            raise PkiError(f"the CSR's RSA key has {public_key.key_size} bits; need 2048+")
    elif not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError("the CSR's key must be EC or RSA")
    cert = _build_leaf(ca, public_key, common_name, role, days, [ExtendedKeyUsageOID.CLIENT_AUTH])
    return cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# Identity


def identity_of(cert_pem_or_der: bytes) -> tuple[str, str]:
    """``(common_name, role)`` from a PEM or DER certificate's subject.

    Raises :class:`PkiError` when the bytes are not a certificate, or the subject lacks exactly
    one CommonName and exactly one OrganizationalUnit naming a known role.
    """
    data = bytes(cert_pem_or_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError("not a PEM or DER X.509 certificate") from exc
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or not cns[0].value:
        raise PkiError("the certificate's subject has no single CommonName (identity)")
    if len(ous) != 1 or not ous[0].value:
        raise PkiError("the certificate's subject has no single OrganizationalUnit (role)")
    common_name, role = cns[0].value, ous[0].value
    if not isinstance(common_name, str) or not isinstance(role, str):
        raise PkiError("the certificate's CommonName or OrganizationalUnit is not a string")
    if role not in ROLES:
        raise PkiError(f"the certificate carries unknown role {role!r}")
    return common_name, role
