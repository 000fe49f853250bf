"""Local training, evaluation and the numpy metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)
from torch.optim.optimizer import register_optimizer_step_post_hook

from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL, load_site, synthesize
from fedcare.models import build_model, set_standardization
from fedcare.spec.job import (
    DataSchema,
    DataSource,
    ModelName,
    ModelSpec,
    Optimizer,
    Task,
    TrainingSpec,
)
from fedcare.training import evaluate, metrics, train_local

BINARY = Task.BINARY_CLASSIFICATION
MLP = ModelSpec(name=ModelName.MLP, hidden_units=[16, 16])
LOGISTIC = ModelSpec(name=ModelName.LOGISTIC_REGRESSION)


def separable(n: int = 2000, features: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).float()
    return x, y


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, 2 threads per process oversubscribe."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def count_steps() -> Iterator[list[int]]:
    """Counts optimizer steps taken while the test runs."""
    steps = [0]

    def hook(*_: Any) -> None:
        steps[0] += 1

    handle = register_optimizer_step_post_hook(hook)
    yield steps
    handle.remove()


# --- metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + 0.5 * y, 1)  # many ties
    assert metrics.auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_auroc_edge_cases() -> None:
    assert np.isnan(metrics.auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(metrics.auroc([0, 0], [0.1, 0.2]))
    assert metrics.auroc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_other_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300).astype(np.float64)
    pred = rng.integers(0, 2, 300).astype(np.float64)
    logits = rng.normal(size=300) * 3
    target, guess = rng.normal(size=300), rng.normal(size=300)
    assert metrics.accuracy(y, pred) == pytest.approx(accuracy_score(y, pred))
    assert metrics.mse(target, guess) == pytest.approx(mean_squared_error(target, guess))
    assert metrics.mae(target, guess) == pytest.approx(mean_absolute_error(target, guess))
    probs = 1 / (1 + np.exp(-logits))
    assert metrics.bce_with_logits(y, logits) == pytest.approx(log_loss(y, probs), rel=1e-9)


def test_bce_with_logits_is_stable_for_large_logits() -> None:
    value = metrics.bce_with_logits([1.0, 0.0], [1000.0, -1000.0])
    assert value == pytest.approx(0.0, abs=1e-12)
    assert metrics.bce_with_logits([0.0], [1000.0]) == pytest.approx(1000.0)


# --- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", list(Optimizer))
def test_training_learns_a_separable_problem(optimizer: Optimizer) -> None:
    x, y = separable(n=1000)
    model = build_model(MLP, BINARY, 4)
    before = evaluate(model, x, y, BINARY)
    lr = 0.05 if optimizer is Optimizer.SGD else 0.02
    spec = TrainingSpec(
        epochs=10, batch_size=50, optimizer=optimizer, learning_rate=lr, momentum=0.9
    )
    result = train_local(model, x, y, spec, BINARY, seed=0)
    after = evaluate(model, x, y, BINARY)
    assert after["loss"] < before["loss"] / 3
    assert after["accuracy"] > 0.95 and after["auroc"] > 0.99
    assert result["loss"] == pytest.approx(after["loss"], rel=0.5, abs=0.05)


def test_regression_training_and_metrics() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 3, generator=gen)
    y = 2 * x[:, 0] - x[:, 2] + 0.5
    model = build_model(LOGISTIC, Task.REGRESSION, 3)
    before = evaluate(model, x, y, Task.REGRESSION)
    train_local(model, x, y, TrainingSpec(epochs=30, learning_rate=0.05), Task.REGRESSION, 1)
    after = evaluate(model, x, y, Task.REGRESSION)
    assert set(after) == {"loss", "mse", "mae", "rmse", "r2"}
    assert after["loss"] == after["mse"] < 0.01 < before["mse"]
    pred = model(x).detach().numpy()
    assert after["mae"] == pytest.approx(mean_absolute_error(y.numpy(), pred), rel=1e-5)


def test_steps_mode_takes_exactly_n_steps(count_steps: list[int]) -> None:
    x, y = separable(n=100)
    model = build_model(MLP, BINARY, 4)
    train_local(model, x, y, TrainingSpec(steps=3, batch_size=32), BINARY, seed=0)
    assert count_steps[0] == 3
    count_steps[0] = 0
    # more steps than one pass (4 batches of at most 32): wraps into further passes
    train_local(model, x, y, TrainingSpec(steps=10, batch_size=32), BINARY, seed=0)
    assert count_steps[0] == 10


def test_epochs_mode_covers_every_row_each_epoch(count_steps: list[int]) -> None:
    x, y = separable(n=100)
    seen: list[torch.Tensor] = []
    model = build_model(LOGISTIC, BINARY, 4)
    model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().clone()))
    train_local(model, x, y, TrainingSpec(epochs=3, batch_size=32), BINARY, seed=0)
    assert count_steps[0] == 3 * 4
    assert [len(b) for b in seen] == [32, 32, 32, 4] * 3
    first_epoch = torch.cat(seen[:4])
    assert sorted(first_epoch[:, 0].tolist()) == sorted(x[:, 0].tolist())
    assert not torch.equal(torch.cat(seen[:4]), torch.cat(seen[4:8]))  # reshuffled


def test_training_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    x, y = separable(n=500)
    spec = ModelSpec(name=ModelName.MLP, hidden_units=[16], dropout=0.3)
    training = TrainingSpec(epochs=2, batch_size=50)
    models = [build_model(spec, BINARY, 4) for _ in range(3)]
    before = torch.random.get_rng_state()
    losses = [
        train_local(m, x, y, training, BINARY, seed=s)
        for m, s in zip(models, [5, 5, 6], strict=True)
    ]
    assert torch.equal(before, torch.random.get_rng_state())
    assert losses[0] == losses[1] != losses[2]
    a, b, c = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_evaluate_uses_eval_mode_and_restores_it() -> None:
    x, y = separable(n=300)
    model = build_model(ModelSpec(name=ModelName.MLP, hidden_units=[32], dropout=0.5), BINARY, 4)
    model.train()
    first, second = evaluate(model, x, y, BINARY), evaluate(model, x, y, BINARY)
    assert first == second
    assert model.training
    model.eval()
    evaluate(model, x, y, BINARY)
    assert not model.training


def test_evaluate_binary_metrics_match_sklearn() -> None:
    x, y = separable(n=400)
    model = build_model(MLP, BINARY, 4, seed=3)
    result = evaluate(model, x, y, BINARY)
    logits = model.eval()(x).detach().numpy().astype(np.float64)
    assert result["auroc"] == pytest.approx(roc_auc_score(y.numpy(), logits))
    assert result["accuracy"] == pytest.approx(accuracy_score(y.numpy(), logits >= 0))
    assert result["loss"] == pytest.approx(log_loss(y.numpy(), 1 / (1 + np.exp(-logits))))


def test_train_local_rejects_empty_data() -> None:
    model = build_model(LOGISTIC, BINARY, 2)
    with pytest.raises(ValueError, match="empty"):
        train_local(model, torch.empty(0, 2), torch.empty(0), TrainingSpec(), BINARY, 0)


# --- end to end -----------------------------------------------------------------------------


def test_logistic_regression_learns_the_synthetic_data(tmp_path: Path) -> None:
    (path,) = synthesize(1, 20_000, tmp_path, "parquet", seed=2)
    schema = DataSchema(features=list(SYNTH_FEATURES), label=SYNTH_LABEL)
    data = load_site(DataSource(path=str(path)), schema)
    model = build_model(LOGISTIC, BINARY, data.num_features)
    set_standardization(model, data.x_train.mean(axis=0), data.x_train.std(axis=0))
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    train_local(model, x, y, TrainingSpec(epochs=5, learning_rate=0.01), BINARY, seed=0)
    result = evaluate(model, torch.from_numpy(data.x_val), torch.from_numpy(data.y_val), BINARY)
    assert result["auroc"] > 0.65


def test_one_mlp_epoch_over_a_million_rows_is_fast() -> None:
    x, y = separable(n=1_000_000, features=11)
    model = build_model(ModelSpec(name=ModelName.MLP, hidden_units=[64, 64]), BINARY, 11)
    spec = TrainingSpec(epochs=1, batch_size=4096)
    train_local(model, x[:8192], y[:8192], spec, BINARY, seed=0)  # one-time torch warm-up
    timings = []
    for _ in range(2):  # best of two: the machine may be shared
        start = time.perf_counter()
        train_local(model, x, y, spec, BINARY, seed=0)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 2.0, f"one epoch took {min(timings):.2f} s"
