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


def sigmoid(logits: ArrayLike) -> npt.NDArray[np.float64]:
    """The logistic function, computed without overflow."""
    z = _flat(logits)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def auprc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's definition).

    ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct score thresholds, highest first; tied
    scores form one threshold. Labels above 0.5 count as positive. ``nan`` without positives.
    """
    y = _flat(y_true) > 0.5
    s = _flat(scores)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    sorted_scores, hits = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), s.size - 1]
    tps = np.cumsum(hits)[last_of_tie].astype(np.float64)
    precision = tps / (last_of_tie + 1.0)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y_true: ArrayLike, probs: ArrayLike) -> float:
    """Brier score: mean squared difference of predicted probability and 0/1 outcome."""
    t, p = _flat(y_true) > 0.5, _flat(probs)
    return float(np.mean((p - t) ** 2)) if t.size else float("nan")


def ece(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of the predicted probability.

    ``sum_b (n_b / n) * |mean outcome in b - mean probability in b|``; bins are
    ``[0, 1/n_bins]``, then left-open (the edges of scikit-learn's ``calibration_curve``).
    """
    t, p = (_flat(y_true) > 0.5).astype(np.float64), _flat(probs)
    if not t.size:
        return float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    observed = np.bincount(ids, weights=t, minlength=n_bins)
    predicted = np.bincount(ids, weights=p, minlength=n_bins)
    # (n_b / n) * |sum_b(t) / n_b - sum_b(p) / n_b| = |sum_b(t) - sum_b(p)| / n
    return float(np.abs(observed - predicted).sum() / t.size)


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error (``nan`` when empty)."""
    return float(np.sqrt(mse(y_true, y_pred)))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    ``nan`` when empty or when ``y_true`` is constant (R^2 is undefined there; scikit-learn's
    ``force_finite`` would report 0 or 1 instead).
    """
    t, p = _flat(y_true), _flat(y_pred)
    if not t.size:
        return float("nan")
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def _survival_arrays(
    time: ArrayLike, event: ArrayLike, risk: ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    t, e, r = _flat(time), _flat(event) > 0.5, _flat(risk)
    if not t.size == e.size == r.size:
        raise ValueError(f"time, event and risk have {t.size}, {e.size} and {r.size} values")
    return t, e, r


def cindex(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's concordance index of risk scores (higher risk = earlier event).

    Follows lifelines' ``concordance_index(time, -risk, event)``: a pair is comparable when the
    one who leaves first had the event, at a strictly earlier time, or at the same time as a
    censored one (censored at t is taken to outlive an event at t); two events at the same time
    are not compared. A comparable pair counts 1 when the earlier event has the higher risk and
    1/2 when the risks tie. ``nan`` when no pair is comparable. O(n log n).
    """
    t, e, r = _survival_arrays(time, event, risk)
    if not e.any():
        return float("nan")
    # Dense ranks of the risks, 1-based, for a Fenwick tree of counts per rank.
    _, rank = np.unique(r, return_inverse=True)
    rank = rank.astype(np.int64) + 1
    size = int(rank.max())
    tree = [0] * (size + 1)

    def add(i: int) -> None:
        while i <= size:
            tree[i] += 1
            i += i & -i

    def below(i: int) -> int:  # how many added ranks are <= i
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    # Latest time first: the tree holds everyone who left strictly later (the comparable set
    # of an event at this time), plus the censored at this very time.
    order = np.lexsort((e, -t))  # by time descending; within a time, censored first
    ts, es, rs = t[order].tolist(), e[order].tolist(), rank[order].tolist()
    concordant = tied = pairs = 0
    added = 0
    i, n = 0, len(ts)
    while i < n:
        j = i
        while j < n and ts[j] == ts[i]:
            j += 1
        group = range(i, j)
        for k in group:  # the censored of this time join first
            if not es[k]:
                add(rs[k])
                added += 1
        for k in group:
            if es[k]:
                lower = below(rs[k] - 1)
                equal = below(rs[k]) - lower
                concordant += lower
                tied += equal
                pairs += added
        for k in group:
            if es[k]:
                add(rs[k])
                added += 1
        i = j
    if pairs == 0:
        return float("nan")
    return (concordant + 0.5 * tied) / pairs


def cox_nll(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """Negative Cox partial log-likelihood with Breslow's handling of ties, per event.

    ``-(1/d) * sum over events i of (risk_i - log sum_{j: t_j >= t_i} exp(risk_j))``, with d
    the number of events; ``nan`` when there is none.
    """
    t, e, r = _survival_arrays(time, event, risk)
    d = int(e.sum())
    if d == 0:
        return float("nan")
    order = np.argsort(-t, kind="stable")
    ts, rs = t[order], r[order]
    # log of the running sum of exp(risk) from the latest time down (the risk sets).
    log_cum = np.logaddexp.accumulate(rs)
    # Everyone tied at a time shares the risk set that includes the whole tie group.
    last_of_tie = np.r_[np.flatnonzero(ts[1:] != ts[:-1]), ts.size - 1]
    group = np.repeat(np.arange(last_of_tie.size), np.diff(np.r_[-1, last_of_tie]))
    log_risk_set = log_cum[last_of_tie][group]
    es = e[order]
    return float(-np.sum(rs[es] - log_risk_set[es]) / d)
