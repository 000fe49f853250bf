"""Fixed-point encoding of float updates into Z_(2^k), and back for sums.

A value x is clipped to [-c, c], mapped to y = (x + c) * L / (2c) in [0, L] and rounded
stochastically: q = floor(y + u) with u ~ U[0, 1), so E[q] = y (unbiased) and |q - y| < 1.
With L = floor((2^k - 1) / n_max), the sum of up to n_max encoded values is at most
2^k - 1: it never wraps, so the masked sum mod 2^k is the exact integer sum. A sum S of m
values decodes to S * 2c / L - m * c, within m * 2c / L of the sum of the clipped inputs
(:func:`error_bound`), up to float64 rounding (about 2^-52 relative; it dominates only
for k > 53).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedcare.privacy.secagg.prg import UIntArray, word_dtype


def levels(modulus_bits: int, max_inputs: int) -> int:
    """L = floor((2^k - 1) / max_inputs), the largest encoded value."""
    if max_inputs < 1:
        raise ValueError("max_inputs must be >= 1")
    result = ((1 << modulus_bits) - 1) // max_inputs
    if result < 1:
        raise ValueError(f"2^{modulus_bits} is too small for {max_inputs} inputs")
    return result


def quantize(
    values: npt.NDArray[np.floating],
    clip_range: float,
    num_levels: int,
    modulus_bits: int,
    rng: np.random.Generator | None = None,
) -> UIntArray:
    """Clip to [-clip_range, clip_range] and round stochastically to integers in [0, L].

    ``values`` must be a 1-D array of finite floats (:class:`ValueError` otherwise); the
    result has the word type of :func:`~fedcare.privacy.secagg.prg.word_dtype`.
    """
    if values.ndim != 1:
        raise ValueError(f"update must be a 1-D vector, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"update must hold floats, got {values.dtype}")
    if not bool(np.isfinite(values).all()):
        raise ValueError("update contains NaN or infinite values")
    generator = rng if rng is not None else np.random.default_rng()
    scale = num_levels / (2.0 * clip_range)
    y = np.clip(values.astype(np.float64), -clip_range, clip_range)
    y += clip_range
    y *= scale
    y += generator.random(y.size)
    np.floor(y, out=y)
    np.minimum(y, float(num_levels), out=y)  # float rounding may reach L + 1 at the top edge
    np.maximum(y, 0.0, out=y)
    return y.astype(word_dtype(modulus_bits))


def dequantize(
    total: UIntArray, count: int, clip_range: float, num_levels: int
) -> npt.NDArray[np.float64]:
    """Decode the (unwrapped) integer sum of ``count`` encoded values to float64."""
    if count < 0:
        raise ValueError("count must be >= 0")
    out = total.astype(np.float64)
    out *= 2.0 * clip_range / num_levels
    out -= count * clip_range
    return out


def error_bound(count: int, clip_range: float, num_levels: int) -> float:
    """Per-coordinate bound on |decoded sum - sum of clipped inputs|: count * 2c / L."""
    return count * 2.0 * clip_range / num_levels
