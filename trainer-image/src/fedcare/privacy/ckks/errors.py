"""The one exception of the CKKS library.

:class:`CkksError` is both a :class:`~fedcare.errors.FedcareError` (printed as one line by the
CLI) and a :class:`ValueError` (callers that validate input generically catch it). Every
failure the library detects on purpose raises it: a wrong vector length, a context without a
secret key asked to decrypt, mismatched chunk counts, bytes that are not a ciphertext, a
vector encrypted under another key or other parameters, TenSEAL missing.
"""

from __future__ import annotations

from fedcare.errors import FedcareError


class CkksError(FedcareError, ValueError):
    """A CKKS context, vector or stream is unusable; the message says why in one line."""
