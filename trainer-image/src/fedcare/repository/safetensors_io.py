"""Model weights as safetensors: float32, C-contiguous, finite, nothing else.

A model version must never contain NaN or Inf, nor any dtype but float32: writing such weights
raises :class:`~fedcare.errors.RepositoryError` before a byte is written, and reading checks the
same, so a tampered or foreign file is refused too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors.numpy as st_numpy

from fedcare.errors import RepositoryError

__all__ = [
    "DTYPE",
    "from_safetensors_bytes",
    "load_file",
    "save_file",
    "to_safetensors_bytes",
    "validate_weights",
]

#: The only dtype a model version holds.
DTYPE = np.dtype(np.float32)


def _check_tensor(name: object, array: object, where: str) -> np.ndarray:
    """Return ``array`` as a C-contiguous float32 array, or raise if it cannot be stored."""
    if not isinstance(name, str) or not name:
        raise RepositoryError(f"{where}: tensor names must be non-empty strings, got {name!r}")
    if not isinstance(array, np.ndarray):
        raise RepositoryError(
            f"{where}: tensor {name!r} is a {type(array).__name__}, not a numpy array"
        )
    if array.dtype != DTYPE:
        raise RepositoryError(f"{where}: tensor {name!r} has dtype {array.dtype}, need float32")
    if not bool(np.isfinite(array).all()):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise RepositoryError(
            f"{where}: tensor {name!r} has {bad} non-finite value(s) (NaN/Inf); refusing it"
        )
    return np.ascontiguousarray(array)


def validate_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check ``weights`` for storage and return them as contiguous float32 arrays.

    Raises :class:`RepositoryError` for an empty mapping, a non-string or empty name, a
    non-float32 array, or any NaN/Inf value.
    """
    if not isinstance(weights, Mapping):
        raise RepositoryError(f"weights must be a mapping of name to array, not {type(weights)}")
    if not weights:
        raise RepositoryError("a model version needs at least one tensor")
    return {name: _check_tensor(name, arr, "weights") for name, arr in weights.items()}


def to_safetensors_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """Serialise validated ``weights`` to safetensors bytes."""
    checked = validate_weights(weights)
    try:
        return st_numpy.save(checked)
    except Exception as exc:  # safetensors raises its own error types
        raise RepositoryError(f"cannot serialise weights as safetensors: {exc}") from exc


def _checked_loaded(loaded: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, arr in loaded.items():
        checked = _check_tensor(name, arr, where)
        # Arrays loaded from bytes may be read-only views; callers aggregate in place.
        out[name] = checked if checked.flags.writeable else checked.copy()
    if not out:
        raise RepositoryError(f"{where}: holds no tensors")
    return out


def from_safetensors_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into writable float32 arrays, refusing NaN/Inf or other dtypes."""
    try:
        loaded = st_numpy.load(bytes(data))
    except Exception as exc:  # safetensors raises its own error types
        raise RepositoryError(f"not a valid safetensors payload: {exc}") from exc
    return _checked_loaded(loaded, "safetensors payload")


def save_file(weights: Mapping[str, np.ndarray], path: Path) -> None:
    """Validate ``weights`` and write them to ``path`` as safetensors (not atomic; see local)."""
    checked = validate_weights(weights)
    try:
        st_numpy.save_file(checked, str(path))
    except Exception as exc:  # OSError or safetensors' own error types
        raise RepositoryError(f"cannot write {path}: {exc}") from exc


def load_file(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file into writable float32 arrays, refusing NaN/Inf or other dtypes."""
    try:
        loaded = st_numpy.load_file(str(path))
    except Exception as exc:  # OSError or safetensors' own error types
        raise RepositoryError(f"cannot read {path} as safetensors: {exc}") from exc
    return _checked_loaded(loaded, str(path))
