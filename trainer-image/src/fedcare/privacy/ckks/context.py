"""CKKS contexts: the secret one for participants, the keyless one for the coordinator.

The contexts use *symmetric* (secret-key) encryption: every party that encrypts (the
trainers) holds the secret key anyway, and secret-key encryption is about 2-3x faster than
public-key encryption in TenSEAL with less noise. Consequently neither context carries a
public key: the participants' context holds the parameters and the secret key (about 230 KB
at N=8192), and the coordinator's holds the parameters only (about 100 bytes). That is all
homomorphic addition needs; the coordinator can neither decrypt nor encrypt. Neither context
carries Galois keys (about 33 MB, only needed for rotations) or relinearization keys (only
needed after multiplying two ciphertexts).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedcare.privacy.ckks import _tenseal
from fedcare.privacy.ckks._tenseal import TENSEAL_ERRORS, TensealContext
from fedcare.privacy.ckks.errors import CkksError

DEFAULT_POLY_MODULUS_DEGREE = 8192
DEFAULT_COEFF_MOD_BIT_SIZES: tuple[int, ...] = (60, 40, 40, 60)
DEFAULT_SCALE_BITS = 40

#: File names :func:`write_contexts` uses.
SECRET_CONTEXT_FILE = "ckks-secret.context"
PUBLIC_CONTEXT_FILE = "ckks-public.context"

_KEY_ID_DOMAIN = b"fedcare/ckks/key-id/v1\x00"
KEY_ID_BYTES = 16


def create_contexts(
    poly_modulus_degree: int = DEFAULT_POLY_MODULUS_DEGREE,
    coeff_mod_bit_sizes: Sequence[int] = DEFAULT_COEFF_MOD_BIT_SIZES,
    scale_bits: int = DEFAULT_SCALE_BITS,
) -> tuple[bytes, bytes]:
    """Generate a fresh key and return ``(secret_context, public_context)`` as bytes.

    ``secret_context`` (parameters + secret key, no Galois/relinearization/public key) goes to
    the participants with their credentials; ``public_context`` (parameters only) goes to the
    coordinator. Load either with :func:`load_context`.

    Args:
        poly_modulus_degree: ring dimension N (a power of two); a ciphertext holds N/2 values.
        coeff_mod_bit_sizes: bit sizes of the coefficient-modulus primes (SEAL validates them
            against N for 128-bit security).
        scale_bits: the encoding scale is ``2**scale_bits``.

    Raises:
        CkksError: the parameters are refused by SEAL or TenSEAL is missing.
    """
    if scale_bits < 1 or scale_bits > 60:
        raise CkksError(f"scale_bits must be in 1..60, got {scale_bits}")
    _tenseal.tenseal()  # a missing TenSEAL is reported as such, not as refused parameters
    try:
        ctx = _tenseal.new_context(poly_modulus_degree, coeff_mod_bit_sizes, scale_bits)
    except TENSEAL_ERRORS as exc:
        raise CkksError(
            f"CKKS parameters refused (N={poly_modulus_degree}, "
            f"coeff_mod_bit_sizes={list(coeff_mod_bit_sizes)}): {exc}"
        ) from exc
    secret = ctx.serialize(
        save_public_key=False,
        save_secret_key=True,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    public = ctx.serialize(
        save_public_key=False,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return secret, public


def write_contexts(
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    poly_modulus_degree: int = DEFAULT_POLY_MODULUS_DEGREE,
    coeff_mod_bit_sizes: Sequence[int] = DEFAULT_COEFF_MOD_BIT_SIZES,
    scale_bits: int = DEFAULT_SCALE_BITS,
) -> tuple[Path, Path]:
    """Create contexts (:func:`create_contexts`) and write them to ``directory``.

    The secret context is written with mode 0600, the public one 0644, each atomically (a
    temporary file renamed into place). Returns ``(secret_path, public_path)``.

    Raises:
        CkksError: a context file already exists and ``overwrite`` is false (replacing the
            key makes every model encrypted under the old one unreadable).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    secret_path, public_path = root / SECRET_CONTEXT_FILE, root / PUBLIC_CONTEXT_FILE
    if not overwrite:
        for path in (secret_path, public_path):
            if path.exists():
                raise CkksError(f"{path} exists; refusing to replace a CKKS key (overwrite=True)")
    secret, public = create_contexts(poly_modulus_degree, coeff_mod_bit_sizes, scale_bits)
    _write_atomic(secret_path, secret, 0o600)
    _write_atomic(public_path, public, 0o644)
    return secret_path, public_path


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` (set before any byte is written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_context(data: bytes) -> TensealContext:
    """Deserialize a context written by :func:`create_contexts` (a ``tenseal.Context``).

    Raises:
        CkksError: the bytes are not a serialized CKKS context, or TenSEAL is missing.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CkksError(f"a context is bytes, got {type(data).__name__}")
    _tenseal.tenseal()
    try:
        ctx = _tenseal.context_from(bytes(data))
        ckks = _tenseal.is_ckks(ctx)
    except TENSEAL_ERRORS as exc:
        raise CkksError(f"not a serialized TenSEAL context ({len(data)} bytes): {exc}") from exc
    if not ckks:
        raise CkksError("the context is not a CKKS context")
    return ctx


def has_secret_key(ctx: TensealContext) -> bool:
    """True when ``ctx`` holds the secret key (participants), false for the coordinator's."""
    return bool(ctx.is_private())


def require_secret_key(ctx: TensealContext, action: str) -> None:
    """Raise :class:`CkksError` unless ``ctx`` holds the secret key ``action`` needs."""
    if not has_secret_key(ctx):
        raise CkksError(
            f"this context holds no secret key: it cannot {action} "
            "(only the participants' secret context can)"
        )


def slot_count(ctx: TensealContext) -> int:
    """Values per ciphertext chunk: N/2."""
    return _tenseal.poly_modulus_degree(ctx) // 2


def key_id(ctx: TensealContext) -> bytes:
    """A 16-byte identifier of the secret context (key and parameters).

    It is a domain-separated SHA-256 of the serialized secret context, so it reveals nothing
    about the key; it travels in every stream header so that a vector encrypted under another
    key is refused (by the aggregate and by :func:`~fedcare.privacy.ckks.decrypt_vector`)
    instead of decrypting to garbage.

    Raises:
        CkksError: ``ctx`` holds no secret key.
    """
    require_secret_key(ctx, "identify its key")
    blob = ctx.serialize(
        save_public_key=False,
        save_secret_key=True,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return hashlib.sha256(_KEY_ID_DOMAIN + blob).digest()[:KEY_ID_BYTES]


def max_abs_value(ctx: TensealContext) -> float:
    """Largest magnitude :func:`~fedcare.privacy.ckks.encrypt_vector` accepts.

    A fresh ciphertext lives modulo ``q`` (``data_modulus_bits`` bits) and encodes
    ``value * scale``; 24 bits of headroom keep a sum of up to 2**23 such vectors below
    ``q/2``. With the defaults (140 bits, scale 2**40) the bound is 2**76.
    """
    scale_bits = math.log2(ctx.global_scale)
    return float(2.0 ** (_tenseal.data_modulus_bits(ctx) - scale_bits - 24))
