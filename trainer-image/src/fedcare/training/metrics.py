"""Evaluation metrics in plain numpy (float64 arithmetic)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def _flat(a: ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for tied scores).

    Labels above 0.5 count as positive. Returns ``nan`` when only one class is present.
    """
    y = _flat(y_true) > 0.5
    s = _flat(scores)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    sorted_scores = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], s.size]
    # ranks are 1-based: a tie group covering sorted positions [start, end) gets their mean
    avg_rank = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = float(avg_rank[y[order]].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of predicted labels equal to the true ones (``nan`` when empty)."""
    t, p = _flat(y_true), _flat(y_pred)
    return float(np.mean(t == p)) if t.size else float("nan")


def mse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean squared error (``nan`` when empty)."""
    t, p = _flat(y_true), _flat(y_pred)
    return float(np.mean((t - p) ** 2)) if t.size else float("nan")


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error (``nan`` when empty)."""
    t, p = _flat(y_true), _flat(y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else float("nan")


def bce_with_logits(y_true: ArrayLike, logits: ArrayLike) -> float:
    """Mean binary cross-entropy of sigmoid(``logits``) against ``y_true``, computed stably."""
    t, z = _flat(y_true), _flat(logits)
    if not t.size:
        return float("nan")
    return float(np.mean(np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))))
