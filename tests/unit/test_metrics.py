"""The clinical metrics, each against scikit-learn on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve  # type: ignore[import-untyped,unused-ignore]
from sklearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    average_precision_score,
    brier_score_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from fedcare.models import build_model
from fedcare.spec import metrics_for
from fedcare.spec.job import Metric, ModelName, ModelSpec, Task
from fedcare.training import auprc, brier, ece, evaluate, metrics, r2, rmse


def _binary(n: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float64)
    logits = rng.normal(1.2 * y - 0.6, 1.0)
    if ties:
        logits = np.round(logits * 2.0) / 2.0
    return y, logits


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, True), (2, True), (3, False)])
def test_auprc_is_sklearns_average_precision(seed: int, ties: bool) -> None:
    y, scores = _binary(500, seed, ties)
    assert auprc(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)


def test_auprc_edge_cases() -> None:
    assert auprc([0, 1], [0.1, 0.9]) == 1.0
    assert auprc([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)  # one tied threshold
    assert math.isnan(auprc([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="values"):
        auprc([0, 1], [0.1])


def test_brier_is_sklearns() -> None:
    y, logits = _binary(400, 5, False)
    probs = metrics.sigmoid(logits)
    assert brier(y, probs) == pytest.approx(brier_score_loss(y, probs), abs=1e-12)
    assert math.isnan(brier([], []))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_agrees_with_sklearns_calibration_curve(seed: int) -> None:
    y, logits = _binary(1000, seed, False)
    probs = metrics.sigmoid(logits)
    prob_true, prob_pred = calibration_curve(y, probs, n_bins=10, strategy="uniform")
    counts = np.histogram(probs, bins=np.linspace(0.0, 1.0, 11))[0]
    weights = counts[counts > 0] / len(probs)
    expected = float(np.sum(weights * np.abs(prob_true - prob_pred)))
    assert ece(y, probs) == pytest.approx(expected, abs=1e-12)


def test_ece_edge_cases() -> None:
    assert ece([1, 0], [1.0, 0.0]) == 0.0  # perfectly calibrated and sharp
    assert ece([1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # 0.1 belongs to the first bin [0, 0.1], 0.1000001 to the second, as in scikit-learn.
    assert ece([0, 1], [0.1, 0.1]) == pytest.approx(0.4)
    assert ece([0, 1], [0.1, 0.1000001]) == pytest.approx((0.1 + 0.8999999) / 2)
    assert math.isnan(ece([], []))


def test_regression_metrics_are_sklearns() -> None:
    rng = np.random.default_rng(7)
    truth = rng.normal(3.0, 2.0, 300)
    pred = truth + rng.normal(0.3, 0.8, 300)
    assert rmse(truth, pred) == pytest.approx(math.sqrt(mean_squared_error(truth, pred)))
    assert r2(truth, pred) == pytest.approx(r2_score(truth, pred), abs=1e-12)
    assert r2(truth, np.full(300, truth.mean())) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(r2([2.0, 2.0], [1.0, 2.0]))  # constant truth: undefined
    assert math.isnan(rmse([], []))


def test_evaluate_binary_reports_every_binary_metric_like_sklearn() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(600, 4, generator=gen)
    y = (x[:, 0] + 0.5 * torch.randn(600, generator=gen) > 0).float()
    model = build_model(
        ModelSpec(name=ModelName.LOGISTIC_REGRESSION), Task.BINARY_CLASSIFICATION, 4
    )
    got = evaluate(model, x, y, Task.BINARY_CLASSIFICATION)
    assert set(got) == {m.value for m in metrics_for(Task.BINARY_CLASSIFICATION)}
    with torch.no_grad():
        logits = model(x).double().numpy()
    probs = 1.0 / (1.0 + np.exp(-logits))
    truth = y.numpy()
    assert got["auroc"] == pytest.approx(roc_auc_score(truth, logits))
    assert got["auprc"] == pytest.approx(average_precision_score(truth, logits))
    assert got["brier"] == pytest.approx(brier_score_loss(truth, probs))
    assert 0.0 <= got["ece"] <= 1.0


def test_evaluate_regression_reports_every_regression_metric_like_sklearn() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(300, 3, generator=gen)
    y = 2.0 * x[:, 0] + 1.0
    model = build_model(ModelSpec(name=ModelName.LOGISTIC_REGRESSION), Task.REGRESSION, 3)
    got = evaluate(model, x, y, Task.REGRESSION)
    assert set(got) == {m.value for m in metrics_for(Task.REGRESSION)}
    with torch.no_grad():
        pred = model(x).double().numpy()
    truth = y.double().numpy()
    assert got["mse"] == got["loss"] == pytest.approx(mean_squared_error(truth, pred))
    assert got["mae"] == pytest.approx(mean_absolute_error(truth, pred))
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(truth, pred)))
    assert got["r2"] == pytest.approx(r2_score(truth, pred))


def test_metrics_for_each_task() -> None:
    assert metrics_for(Task.BINARY_CLASSIFICATION) == {
        Metric.LOSS, Metric.ACCURACY, Metric.AUROC, Metric.AUPRC, Metric.BRIER, Metric.ECE
    }  # fmt: skip
    assert metrics_for(Task.REGRESSION) == {
        Metric.LOSS, Metric.MSE, Metric.MAE, Metric.RMSE, Metric.R2
    }  # fmt: skip
    assert metrics_for(Task.SURVIVAL) == {Metric.LOSS, Metric.CINDEX}
