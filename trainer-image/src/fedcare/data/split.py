"""Deterministic train/validation split of a site's rows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedcare.errors import DataError

IndexArray = npt.NDArray[np.int64]


def split_indices(
    n: int, validation_fraction: float, seed: int = 0, source: str = "table"
) -> tuple[IndexArray, IndexArray]:
    """Split ``range(n)`` into sorted (train, validation) index arrays.

    The validation set holds ``round(n * validation_fraction)`` rows, at least one, and the
    training set keeps at least one; the rows are chosen by a numpy Generator seeded from
    ``seed``, so the same ``(n, validation_fraction, seed)`` always gives the same split.
    Raises :class:`DataError` (naming ``source``) when ``n`` is below 2.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if n < 2:
        rows = "1 data row is" if n == 1 else f"{n} data rows are"
        raise DataError(f"{source}: {rows} too few to split into training and validation sets")
    n_val = min(n - 1, max(1, round(n * validation_fraction)))
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(perm[:n_val]).astype(np.int64, copy=False)
    train = np.sort(perm[n_val:]).astype(np.int64, copy=False)
    return train, val
