"""CKKS homomorphic aggregation (TenSEAL): the coordinator adds updates it cannot read.

Transport-agnostic: contexts and vectors are plain ``bytes``; an encrypted vector travels as a
stream of byte strings (one header, then one ciphertext per N/2 values), so any transport can
carry it message by message and both ends keep memory bounded.

Call sequence:

1. Set-up, once per job (whoever issues credentials): ``secret, public = create_contexts()``
   (or :func:`write_contexts`). ``secret`` goes to every participant, ``public`` to the
   coordinator only.
2. Each trainer: ``ctx = load_context(secret)``; ``update = weight * flat_params`` (weights
   summing to 1 over the round's participants, or sample counts with the division done after
   decryption); send ``encrypt_to_chunks(ctx, update)`` (or
   ``encrypt_vector(ctx, update).to_chunks()``).
3. Coordinator: ``pub = load_context(public)`` (``has_secret_key(pub)`` is false);
   ``agg = CiphertextSum(pub, length)``; ``agg.add(stream)`` per participant as its upload
   arrives; when the round closes, send ``agg.to_chunks()`` to every trainer.
4. Each trainer: ``flat = decrypt_vector(ctx, stream, length=length)``.

TenSEAL is imported on first use; without the ``he`` extra every call raises
:class:`CkksError` saying how to install it.
"""

from __future__ import annotations

from fedcare.privacy.ckks._tenseal import CkksVectorT, TensealContext
from fedcare.privacy.ckks.aggregate import CiphertextSum
from fedcare.privacy.ckks.context import (
    DEFAULT_COEFF_MOD_BIT_SIZES,
    DEFAULT_POLY_MODULUS_DEGREE,
    DEFAULT_SCALE_BITS,
    PUBLIC_CONTEXT_FILE,
    SECRET_CONTEXT_FILE,
    create_contexts,
    has_secret_key,
    key_id,
    load_context,
    max_abs_value,
    slot_count,
    write_contexts,
)
from fedcare.privacy.ckks.errors import CkksError
from fedcare.privacy.ckks.vector import (
    DEFAULT_QUANTUM_BITS,
    EncryptedVector,
    VectorHeader,
    decrypt_vector,
    encrypt_to_chunks,
    encrypt_vector,
    read_stream_file,
    write_stream,
)

__all__ = [
    "DEFAULT_COEFF_MOD_BIT_SIZES",
    "DEFAULT_POLY_MODULUS_DEGREE",
    "DEFAULT_QUANTUM_BITS",
    "DEFAULT_SCALE_BITS",
    "PUBLIC_CONTEXT_FILE",
    "SECRET_CONTEXT_FILE",
    "CiphertextSum",
    "CkksError",
    "CkksVectorT",
    "EncryptedVector",
    "TensealContext",
    "VectorHeader",
    "create_contexts",
    "decrypt_vector",
    "encrypt_to_chunks",
    "encrypt_vector",
    "has_secret_key",
    "key_id",
    "load_context",
    "max_abs_value",
    "read_stream_file",
    "slot_count",
    "write_contexts",
    "write_stream",
]
