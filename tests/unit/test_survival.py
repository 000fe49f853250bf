"""Survival analysis: the Cox loss (Breslow ties), the C-index, the Cox model, survival data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv  # type: ignore[import-untyped,unused-ignore]
import pytest
import torch

from fedcare.data import SYNTH_EVENT, SYNTH_FEATURES, SYNTH_TIME, load_site, synthesize
from fedcare.errors import DataError, SpecError
from fedcare.models import build_model, set_standardization
from fedcare.spec import FederatedJob, parse_document
from fedcare.spec.job import DataSchema, DataSource, ModelName, ModelSpec, Task, TrainingSpec
from fedcare.training import cindex, cox_nll, cox_ph_loss, evaluate, loss_function, train_local

SURVIVAL = Task.SURVIVAL
COX = ModelSpec(name=ModelName.COX)
SCHEMA = DataSchema(features=list(SYNTH_FEATURES), time=SYNTH_TIME, event=SYNTH_EVENT)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, 2 threads per process oversubscribe."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _naive_breslow(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """The Breslow negative partial log-likelihood per event, written as the textbook loop."""
    total, events = 0.0, 0
    for i in range(len(time)):
        if event[i]:
            at_risk = time >= time[i]
            total -= risk[i] - math.log(float(np.exp(risk[at_risk]).sum()))
            events += 1
    return total / events


def _survival_data(n: int, seed: int, ties: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    beta = np.array([0.8, -0.5, 0.3])
    t = rng.exponential(1.0 / np.exp(x @ beta))
    c = rng.exponential(2.0, n)
    time = np.minimum(t, c)
    if ties:
        time = np.ceil(time * 4.0) / 4.0
    event = (t <= c).astype(np.float64)
    return x, time, event


# ------------------------------------------------------------------------------------------
# The loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_loss_matches_the_breslow_definition_with_ties(seed: int) -> None:
    _, time, event = _survival_data(300, seed, ties=True)
    assert len(np.unique(time)) < len(time)  # there are ties
    risk = np.random.default_rng(seed + 10).standard_normal(len(time))
    expected = _naive_breslow(time, event, risk)
    y = torch.tensor(np.column_stack([time, event]), dtype=torch.float64)
    got = cox_ph_loss(torch.tensor(risk), y)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert cox_nll(time, event, risk) == pytest.approx(expected, rel=1e-12)
    # Row order does not matter.
    perm = np.random.default_rng(seed).permutation(len(time))
    shuffled = cox_ph_loss(torch.tensor(risk[perm]), y[perm])
    assert float(shuffled) == pytest.approx(expected, rel=1e-12)


def test_cox_loss_gradient_and_edge_cases() -> None:
    y = torch.tensor([[3.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    risk = torch.zeros(3, requires_grad=True)
    loss = cox_ph_loss(risk, y)
    loss.backward()
    assert risk.grad is not None and torch.isfinite(risk.grad).all()
    # Huge risks do not overflow (logcumsumexp).
    assert torch.isfinite(cox_ph_loss(torch.tensor([1e4, -1e4, 5e3]), y))
    # A batch without events has loss 0 and no gradient.
    censored = torch.tensor([[3.0, 0.0], [2.0, 0.0]])
    none = torch.zeros(2, requires_grad=True)
    out = cox_ph_loss(none, censored)
    out.backward()
    assert float(out.detach()) == 0.0 and none.grad is not None and not none.grad.any()
    assert math.isnan(cox_nll([1.0, 2.0], [0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        cox_ph_loss(torch.zeros(3), torch.zeros(3))
    assert loss_function(SURVIVAL) is cox_ph_loss


def test_linear_cox_fit_matches_lifelines() -> None:
    """Without tied times Breslow equals Efron, so lifelines' CoxPHFitter is the reference."""
    import pandas as pd
    from lifelines import CoxPHFitter

    x, time, event = _survival_data(400, 3, ties=False)
    assert len(np.unique(time)) == len(time)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(time=time, event=event)
    reference = CoxPHFitter().fit(frame, "time", "event").params_.to_numpy()

    model = build_model(COX, SURVIVAL, 3).double()
    xt = torch.tensor(x)
    y = torch.tensor(np.column_stack([time, event]))
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=200, tolerance_grad=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = cox_ph_loss(model(xt), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = model.get_parameter("core.weight").detach().numpy().reshape(-1)
    np.testing.assert_allclose(fitted, reference, atol=1e-4)


# ------------------------------------------------------------------------------------------
# The C-index


@pytest.mark.parametrize("seed", range(8))
def test_cindex_matches_lifelines_with_tied_times_and_scores(seed: int) -> None:
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    time = rng.integers(1, 12, n).astype(np.float64)  # many tied times
    event = rng.random(n) < 0.6
    risk = rng.integers(0, 6, n).astype(np.float64)  # many tied scores
    expected = concordance_index(time, -risk, event)
    assert cindex(time, event, risk) == pytest.approx(expected, abs=1e-12)


def test_cindex_on_continuous_data_and_edge_cases() -> None:
    from lifelines.utils import concordance_index

    _, time, event = _survival_data(2000, 5, ties=False)
    risk = np.random.default_rng(1).standard_normal(2000)
    assert cindex(time, event, risk) == pytest.approx(concordance_index(time, -risk, event))
    assert cindex([1.0, 2.0, 3.0], [1, 1, 1], [3.0, 2.0, 1.0]) == 1.0  # perfectly concordant
    assert cindex([1.0, 2.0, 3.0], [1, 1, 1], [1.0, 2.0, 3.0]) == 0.0
    assert cindex([1.0, 2.0], [1, 1], [5.0, 5.0]) == 0.5  # tied scores count 1/2
    assert math.isnan(cindex([1.0, 2.0], [0, 0], [1.0, 2.0]))  # no events
    assert math.isnan(cindex([2.0, 2.0], [1, 1], [1.0, 2.0]))  # tied events: no pair
    # Censored at the time of an event counts as outliving it (lifelines' convention).
    assert cindex([2.0, 2.0], [1, 0], [2.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match="values"):
        cindex([1.0, 2.0], [1], [1.0, 2.0])


# ------------------------------------------------------------------------------------------
# Model, training and evaluation


def test_cox_model_is_linear_without_intercept() -> None:
    model = build_model(COX, SURVIVAL, 5)
    core = model.get_submodule("core")
    assert isinstance(core, torch.nn.Linear) and core.bias is None
    assert sorted(model.state_dict()) == ["core.weight", "input_mean", "input_std"]
    mlp = build_model(ModelSpec(name=ModelName.MLP, hidden_units=[8]), SURVIVAL, 5)
    last = mlp.get_submodule("core")[-1]
    assert isinstance(last, torch.nn.Linear) and last.bias is None
    assert build_model(COX, SURVIVAL, 5)(torch.zeros(4, 5)).shape == (4,)
    with pytest.raises(SpecError, match="'cox' does not apply"):
        build_model(COX, Task.BINARY_CLASSIFICATION, 5)
    with pytest.raises(SpecError, match="'logistic-regression' does not apply"):
        build_model(ModelSpec(name=ModelName.LOGISTIC_REGRESSION), SURVIVAL, 5)


@pytest.fixture(scope="module")
def survival_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three synthetic survival sites of 1500 rows."""
    return synthesize(3, 1500, tmp_path_factory.mktemp("surv"), task="survival", seed=4)


@pytest.mark.parametrize("spec", [COX, ModelSpec(name=ModelName.MLP, hidden_units=[16])])
def test_training_a_cox_model_learns_the_synthetic_hazard(
    survival_sites: list[Path], spec: ModelSpec
) -> None:
    site = load_site(DataSource(path=str(survival_sites[0])), SCHEMA)
    model = build_model(spec, SURVIVAL, site.num_features, seed=0)
    set_standardization(model, site.x_train.mean(0), site.x_train.std(0))
    x_val, y_val = torch.from_numpy(site.x_val), torch.from_numpy(site.y_val)
    before = evaluate(model, x_val, y_val, SURVIVAL)
    assert set(before) == {"loss", "cindex"}
    result = train_local(
        model,
        torch.from_numpy(site.x_train),
        torch.from_numpy(site.y_train),
        TrainingSpec(epochs=10, batch_size=128, learning_rate=0.01),
        SURVIVAL,
        seed=1,
    )
    after = evaluate(model, x_val, y_val, SURVIVAL)
    assert math.isfinite(result["loss"])
    assert after["loss"] < before["loss"]
    assert after["cindex"] > 0.65, after


def test_train_local_refuses_a_flat_survival_target() -> None:
    model = build_model(COX, SURVIVAL, 2)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        train_local(model, torch.zeros(4, 2), torch.zeros(4), TrainingSpec(), SURVIVAL, 0)


# ------------------------------------------------------------------------------------------
# Data: loading and synthesis


def test_survival_target_is_time_and_event(survival_sites: list[Path]) -> None:
    site = load_site(DataSource(path=str(survival_sites[1])), SCHEMA)
    assert site.y_train.shape == (len(site.x_train), 2) and site.y_train.dtype == np.float32
    assert site.y_val.shape == (len(site.x_val), 2)
    time, event = site.y_train[:, 0], site.y_train[:, 1]
    assert (time >= 1).all() and set(np.unique(event)) == {0.0, 1.0}


def _csv(path: Path, rows: list[str]) -> DataSource:
    path.write_text("\n".join(["a,t,e", *rows]) + "\n")
    return DataSource(path=str(path))


def test_survival_columns_are_checked(tmp_path: Path) -> None:
    schema = DataSchema(features=["a"], time="t", event="e")
    with pytest.raises(DataError, match=r"time column 't', row 2: negative time -1"):
        load_site(_csv(tmp_path / "neg.csv", ["1,3,1", "2,-1,0", "3,4,1"]), schema)
    with pytest.raises(DataError, match=r"event column 'e', row 3: value 2 is not 0"):
        load_site(_csv(tmp_path / "ev.csv", ["1,3,1", "2,1,0", "3,4,2"]), schema)
    with pytest.raises(DataError, match=r"event column 'e', row 1: missing value"):
        load_site(_csv(tmp_path / "na.csv", ["1,3,", "2,1,0"]), schema)
    with pytest.raises(DataError, match=r"missing column\(s\) 'time'"):
        load_site(
            _csv(tmp_path / "cols.csv", ["1,3,1", "2,1,0"]),
            DataSchema(features=["a"], time="time", event="e"),
        )


def test_synthesize_survival_mode(tmp_path: Path) -> None:
    paths = synthesize(3, 800, tmp_path / "a", task="survival", seed=2)
    again = synthesize(3, 800, tmp_path / "b", task="survival", seed=2)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    rates = []
    for path in paths:
        table = pacsv.read_csv(path)
        assert table.column_names == [*SYNTH_FEATURES, SYNTH_TIME, SYNTH_EVENT]
        time = table.column(SYNTH_TIME).to_numpy()
        event = table.column(SYNTH_EVENT).to_numpy()
        assert (time >= 1).all() and (time <= 5 * 365 + 1).all()
        assert len(np.unique(time)) < len(time)  # whole days: ties
        rates.append(float(event.mean()))
    assert all(0.4 < r < 0.95 for r in rates) and max(rates) - min(rates) > 0.05  # site shifts
    with pytest.raises(ValueError, match="task"):
        synthesize(1, 10, tmp_path / "c", task="regression")


def test_cli_synth_survival(tmp_path: Path) -> None:
    from fedcare.cli import main

    assert main(["data", "synth", "--task", "survival", "--sites", "2", "--rows", "50",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-1.csv", "site-2.csv"]
    assert (tmp_path / "site-1.csv").read_text().splitlines()[0].endswith('"time","event"')


# ------------------------------------------------------------------------------------------
# Spec


def _job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "j"},
        "spec": {
            "task": "survival",
            "model": {"name": "cox"},
            "data": {"features": ["a", "b"], "time": "t", "event": "e"},
            "rounds": 2,
        },
    }
    base["spec"].update(spec)
    return base


def test_survival_spec_defaults() -> None:
    job = parse_document(FederatedJob, _job(), "job.yaml")
    assert job.spec.task is SURVIVAL and job.spec.headline_metric.value == "cindex"
    assert job.spec.data.target_columns == ["t", "e"]


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"data": {"features": ["a"], "time": "t"}}, "spec.data.event: required when task is"),
        ({"data": {"features": ["a"], "event": "e"}}, "spec.data.time: required when task is"),
        (
            {"data": {"features": ["a"], "time": "t", "event": "e", "label": "y"}},
            "spec.data.label: not used when task is 'survival'",
        ),
        (
            {"model": {"name": "logistic-regression"}},
            "spec.model.name: 'logistic-regression' does not apply to task 'survival'",
        ),
        (
            {"task": "binary-classification", "data": {"features": ["a"], "label": "y"}},
            "spec.model.name: 'cox' applies only to task 'survival'",
        ),
        (
            {"task": "regression", "model": {"name": "mlp"}},
            "spec.data.label: required when task is 'regression'",
        ),
        (
            {"task": "regression", "data": {"features": ["a"], "label": "y", "event": "e"}},
            "spec.data.event: only allowed when task is 'survival'",
        ),
        ({"data": {"features": ["t"], "time": "t", "event": "e"}}, "time column 't' is also"),
        ({"data": {"features": ["a"], "time": "t", "event": "t"}}, "name the same column"),
        ({"evaluation": {"headline": "auroc"}}, "does not apply to task 'survival'"),
    ],
)
def test_survival_spec_errors_name_the_field(patch: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_document(FederatedJob, _job(**patch), "job.yaml")
    assert needle in str(info.value) and "\n" not in str(info.value)
