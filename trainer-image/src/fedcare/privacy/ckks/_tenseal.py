"""Typed access to TenSEAL (which ships no type information).

This is the only module that touches :mod:`tenseal`. It is imported lazily, so that
``import fedcare.privacy.ckks`` works where the ``he`` extra is absent; the first call that
needs TenSEAL then raises :class:`~fedcare.privacy.ckks.errors.CkksError` saying how to
install it. The two protocols describe the subset of ``tenseal.Context`` and
``tenseal.CKKSVector`` this library uses; at run time the objects are TenSEAL's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol, cast

from fedcare.privacy.ckks.errors import CkksError

#: Exceptions TenSEAL / SEAL raise on bad input (parse failures, parameter mismatches).
TENSEAL_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, TypeError)

_module: ModuleType | None = None


def tenseal() -> ModuleType:
    """The :mod:`tenseal` module, imported on first use."""
    global _module
    if _module is None:
        try:
            _module = importlib.import_module("tenseal")
        except ImportError as exc:
            raise CkksError("CKKS aggregation needs TenSEAL: pip install 'fedcare[he]'") from exc
    return _module


class TensealContext(Protocol):
    """The part of ``tenseal.Context`` used here (a ``tenseal.Context`` at run time)."""

    global_scale: float

    def is_private(self) -> bool:
        """True when the context holds the secret key."""
        ...

    def has_galois_keys(self) -> bool:
        """True when the context holds Galois (rotation) keys."""
        ...

    def has_relin_keys(self) -> bool:
        """True when the context holds relinearization keys."""
        ...

    def serialize(
        self,
        save_public_key: bool = ...,
        save_secret_key: bool = ...,
        save_galois_keys: bool = ...,
        save_relin_keys: bool = ...,
    ) -> bytes:
        """The context as bytes, with the keys asked for."""
        ...


class CkksVectorT(Protocol):
    """The part of ``tenseal.CKKSVector`` used here."""

    def add_(self, other: CkksVectorT) -> CkksVectorT:
        """In-place homomorphic addition."""
        ...

    def sub_(self, other: CkksVectorT) -> CkksVectorT:
        """In-place homomorphic subtraction."""
        ...

    def size(self) -> int:
        """Number of encrypted values."""
        ...

    def serialize(self) -> bytes:
        """The ciphertext as bytes (without its context)."""
        ...

    def decrypt(self) -> list[float]:
        """The values (needs the secret key in the linked context)."""
        ...


def new_context(
    poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int], scale_bits: int
) -> TensealContext:
    """A fresh CKKS context with symmetric (secret-key) encryption and no Galois keys."""
    ts = tenseal()
    ctx = cast(
        TensealContext,
        ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree,
            coeff_mod_bit_sizes=list(coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        ),
    )
    ctx.global_scale = float(2**scale_bits)
    return ctx


def context_from(data: bytes) -> TensealContext:
    """``tenseal.context_from(data)``."""
    return cast(TensealContext, tenseal().context_from(data))


def ckks_vector(ctx: TensealContext, values: list[float]) -> CkksVectorT:
    """Encrypt ``values`` (at most the slot count of them) under ``ctx``."""
    return cast(CkksVectorT, tenseal().ckks_vector(ctx, values))


def ckks_vector_from(ctx: TensealContext, data: bytes) -> CkksVectorT:
    """Load one serialized ciphertext, linked to ``ctx``."""
    return cast(CkksVectorT, tenseal().ckks_vector_from(ctx, data))


def _seal(ctx: TensealContext) -> object:
    """The C++ ``SEALContext`` behind ``ctx`` (untyped)."""
    return cast(object, ctx.seal_context().data)  # type: ignore[attr-defined]


def is_ckks(ctx: TensealContext) -> bool:
    """True when ``ctx`` is a CKKS context (not BFV)."""
    scheme = _seal(ctx).key_context_data().parms().scheme()  # type: ignore[attr-defined]
    return str(scheme).lower().endswith("ckks")


def poly_modulus_degree(ctx: TensealContext) -> int:
    """The ring dimension N of ``ctx`` (a CKKS vector chunk holds N/2 values)."""
    return int(_seal(ctx).key_context_data().parms().poly_modulus_degree())  # type: ignore[attr-defined]


def data_modulus_bits(ctx: TensealContext) -> int:
    """Bits of the coefficient modulus a fresh ciphertext lives in (special prime excluded)."""
    return int(_seal(ctx).first_context_data().total_coeff_modulus_bit_count())  # type: ignore[attr-defined]


def parms_id(ctx: TensealContext) -> tuple[int, int, int, int]:
    """SEAL's hash of the encryption parameters of a fresh ciphertext (four 64-bit words)."""
    words = [int(w) for w in _seal(ctx).first_parms_id()]  # type: ignore[attr-defined]
    if len(words) != 4:
        raise CkksError(f"unexpected SEAL parms_id of {len(words)} words")
    return words[0], words[1], words[2], words[3]
