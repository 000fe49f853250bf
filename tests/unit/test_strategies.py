"""Aggregation strategies against hand-computed values; their spec validation; FedProx training.

Every expected number below is worked out by hand in the comments, never by calling the code
under test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fedcare.errors import SpecError
from fedcare.models import build_model
from fedcare.spec import FederatedJob, parse_document
from fedcare.spec.job import (
    ModelName,
    ModelSpec,
    Optimizer,
    StrategyName,
    StrategySpec,
    Task,
    TrainingSpec,
)
from fedcare.strategies import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedProx,
    FedYogi,
    Krum,
    Median,
    MultiKrum,
    TrimmedMean,
    coordinate_median,
    create_strategy,
    krum,
    krum_scores,
    krum_select,
    multi_krum,
    proximal_term,
    trimmed_mean,
)
from fedcare.strategies.trimmed_mean import trimmed_count
from fedcare.training import train_local


def vec(*values: float) -> np.ndarray:
    """A float32 vector."""
    return np.array(values, dtype=np.float32)


# ----------------------------------------------------------------------------- FedAvg, FedProx


def test_fedprox_server_step_is_fedavg_and_proximal_term() -> None:
    # global [1, 2] + mean delta [0.5, -1] = [1.5, 1]
    g = vec(1.0, 2.0)
    np.testing.assert_allclose(FedProx(mu=0.1).apply(g, vec(0.5, -1.0)), [1.5, 1.0])
    # (mu/2)*||w - a||^2 = 0.25 * (1^2 + 2^2) = 1.25
    assert proximal_term(vec(1.0, 2.0), vec(0.0, 0.0), mu=0.5) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="mu > 0"):
        FedProx(mu=0.0)


# ----------------------------------------------------------------------------- server optimizers
# Shared settings: eta 1, beta1 0.5, beta2 0.75, tau 0.5, global [1, 0].


def test_fedadam_two_rounds_keep_state() -> None:
    adam = FedAdam(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    # Round 1, d = [2, -4]: m = 0.5*d = [1, -2]; v = 0.25*d^2 = [1, 4]
    # w = [1, 0] + [1, -2] / ([1, 2] + 0.5) = [1 + 2/3, -0.8]
    w1 = adam.apply(vec(1.0, 0.0), vec(2.0, -4.0))
    np.testing.assert_allclose(w1, [1 + 2 / 3, -0.8], rtol=1e-6)
    np.testing.assert_allclose(adam.m, [1.0, -2.0])
    np.testing.assert_allclose(adam.v, [1.0, 4.0])
    # Round 2, d = [1, 2]: m = 0.5*[1, -2] + 0.5*[1, 2] = [1, 0]
    # v = 0.75*[1, 4] + 0.25*[1, 4] = [1, 4]; w = w1 + [1, 0] / ([1, 2] + 0.5) = [1 + 4/3, -0.8]
    w2 = adam.apply(w1, vec(1.0, 2.0))
    np.testing.assert_allclose(w2, [1 + 4 / 3, -0.8], rtol=1e-6)
    np.testing.assert_allclose(adam.m, [1.0, 0.0])
    np.testing.assert_allclose(adam.v, [1.0, 4.0])
    # Without the state, round 2 alone would be m = [0.5, 1], v = [0.25, 1]: a different step.
    fresh = FedAdam(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5).apply(w1, vec(1.0, 2.0))
    np.testing.assert_allclose(fresh, [1 + 2 / 3 + 0.5 / 1.0, -0.8 + 1 / 1.5], rtol=1e-6)


def test_fedyogi_two_rounds_keep_state() -> None:
    yogi = FedYogi(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    # Round 1, d = [2, -4], d^2 = [4, 16]: v = 0 - 0.25*d^2*sign(0 - d^2) = [1, 4] (as Adam)
    w1 = yogi.apply(vec(1.0, 0.0), vec(2.0, -4.0))
    np.testing.assert_allclose(w1, [1 + 2 / 3, -0.8], rtol=1e-6)
    # Round 2, d = [2, 1], d^2 = [4, 1]: sign(v - d^2) = sign([-3, 3]) = [-1, 1]
    # v = [1 + 0.25*4, 4 - 0.25*1] = [2, 3.75]  (Adam would give [1.75, 3.25])
    # m = 0.5*[1, -2] + 0.5*[2, 1] = [1.5, -0.5]
    w2 = yogi.apply(w1, vec(2.0, 1.0))
    np.testing.assert_allclose(yogi.v, [2.0, 3.75])
    np.testing.assert_allclose(yogi.m, [1.5, -0.5])
    expected = [1 + 2 / 3 + 1.5 / (math.sqrt(2.0) + 0.5), -0.8 - 0.5 / (math.sqrt(3.75) + 0.5)]
    np.testing.assert_allclose(w2, expected, rtol=1e-6)


def test_fedadagrad_two_rounds_accumulate() -> None:
    ada = FedAdagrad(eta=1.0, tau=0.5)  # beta1 defaults to 0: m is the last delta
    # Round 1, d = [2, -4]: v = [4, 16]; w = [1, 0] + [2, -4] / ([2, 4] + 0.5) = [1.8, -8/9]
    w1 = ada.apply(vec(1.0, 0.0), vec(2.0, -4.0))
    np.testing.assert_allclose(w1, [1.8, -8 / 9], rtol=1e-6)
    # Round 2, d = [0, 3]: v = [4, 16 + 9] = [4, 25]; w = w1 + [0, 3] / ([2, 5] + 0.5)
    w2 = ada.apply(w1, vec(0.0, 3.0))
    np.testing.assert_allclose(ada.v, [4.0, 25.0])
    np.testing.assert_allclose(w2, [1.8, -8 / 9 + 3 / 5.5], rtol=1e-6)


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_server_optimizer_state_survives_a_new_instance(cls: type[FedAdam]) -> None:
    """state() / load_state(): a new instance (a restarted coordinator) that takes up the
    stored state makes exactly the step the old one would have made."""
    steps = [vec(2.0, -4.0), vec(1.0, 2.0), vec(-3.0, 0.5)]
    straight = cls(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    w = vec(1.0, 0.0)
    for d in steps:
        w = straight.apply(w, d)
    first = cls(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    assert first.state() == {}  # nothing before the first step
    w_mid = first.apply(first.apply(vec(1.0, 0.0), steps[0]), steps[1])
    stored = {k: v.copy() for k, v in first.state().items()}
    assert sorted(stored) == ["m", "steps", "v"] and stored["steps"][0] == 2
    resumed = cls(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    resumed.load_state(stored)
    np.testing.assert_array_equal(resumed.apply(w_mid, steps[2]), w)
    forgetful = cls(eta=1.0, beta1=0.5, beta2=0.75, tau=0.5)
    assert not np.allclose(forgetful.apply(w_mid, steps[2]), w)  # what resuming used to do
    with pytest.raises(ValueError, match="malformed"):
        resumed.load_state({"m": vec(1.0)})


def test_stateless_strategies_carry_no_state() -> None:
    for strategy in (FedAvg(), FedProx(mu=0.1), Median(), TrimmedMean(beta=0.1), Krum(byzantine=1)):
        assert strategy.state() == {}
        strategy.load_state({})
        with pytest.raises(ValueError, match="keeps no state"):
            strategy.load_state({"m": vec(1.0)})


def test_server_optimizer_defaults_follow_flower() -> None:
    adam, yogi, ada = FedAdam(), FedYogi(), FedAdagrad()
    assert (adam.eta, adam.beta1, adam.beta2, adam.tau) == (0.1, 0.9, 0.99, 1e-3)
    assert (yogi.eta, yogi.beta1, yogi.beta2, yogi.tau) == (0.01, 0.9, 0.99, 1e-3)
    assert (ada.eta, ada.beta1, ada.tau) == (0.1, 0.0, 1e-3)
    with pytest.raises(ValueError, match="model changed size"):
        adam.apply(vec(0.0), vec(1.0))
        adam.apply(vec(0.0, 0.0), vec(1.0, 1.0))


# ----------------------------------------------------------------------------- robust strategies
# Four honest updates and one outlier (index 4).
HONEST = [vec(1.0, 0.0), vec(2.0, 3.0), vec(6.0, -3.0), vec(7.0, 9.0)]
OUTLIER = vec(1000.0, -500.0)
UPDATES = [*HONEST, OUTLIER]


def test_median_ignores_outlier() -> None:
    # column 0 sorted [1, 2, 6, 7, 1000] -> 6; column 1 sorted [-500, -3, 0, 3, 9] -> 0
    np.testing.assert_allclose(coordinate_median(UPDATES), [6.0, 0.0])
    # even count: mean of the two middle values: (2 + 6)/2, (0 + 3)/2
    np.testing.assert_allclose(coordinate_median(HONEST), [4.0, 1.5])
    # unweighted: a huge claimed sample count on the outlier changes nothing
    out = Median().apply_individual(vec(10.0, 10.0), UPDATES, [1, 1, 1, 1, 1e6])
    np.testing.assert_allclose(out, [16.0, 10.0])


def test_trimmed_mean_drops_extremes() -> None:
    # beta 0.2 of 5: drop 1 at each end. column 0: mean(2, 6, 7) = 5; column 1: mean(-3, 0, 3) = 0
    np.testing.assert_allclose(trimmed_mean(UPDATES, 0.2), [5.0, 0.0])
    # beta 0.4: drop 2 at each end, the median remains
    np.testing.assert_allclose(trimmed_mean(UPDATES, 0.4), [6.0, 0.0])
    # beta 0: the plain mean, (1+2+6+7+1000)/5 = 203.2, (0+3-3+9-500)/5 = -98.2
    np.testing.assert_allclose(trimmed_mean(UPDATES, 0.0), [203.2, -98.2], rtol=1e-6)
    assert trimmed_count(5, 0.2) == 1 and trimmed_count(100, 0.29) == 29
    assert trimmed_count(5, 0.1) == 0
    out = TrimmedMean(0.2).apply_individual(vec(1.0, 1.0), UPDATES, [1, 1, 1, 1, 1e6])
    np.testing.assert_allclose(out, [6.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        trimmed_mean(UPDATES, 0.5)


# Krum points: the outlier e is far from a tight group.
A, B, C, D, E = vec(0, 0), vec(1, 0), vec(0, 2), vec(1, 1), vec(10, 10)


def test_krum_scores_and_selection() -> None:
    # squared distances: ab 1, ac 4, ad 2, ae 200, bc 5, bd 1, be 181, cd 2, ce 164, de 162
    # f = 1, n = 5: each score sums the n - f - 2 = 2 smallest distances to the others
    # a: 1+2 = 3; b: 1+1 = 2; c: 2+4 = 6; d: 1+2 = 3; e: 162+164 = 326
    pts = [A, B, C, D, E]
    np.testing.assert_allclose(krum_scores(pts, 1), [3, 2, 6, 3, 326])
    assert krum_select(pts, 1, 3) == [1, 0, 3]  # b, then the tie a/d by index
    np.testing.assert_allclose(krum(pts, 1), B)
    # Multi-Krum m = 3: mean(b, a, d) = [2/3, 1/3]; default m = n - f = 4 adds c: [0.5, 0.75]
    np.testing.assert_allclose(multi_krum(pts, 1, 3), [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(multi_krum(pts, 1), [0.5, 0.75])
    out = Krum(1).apply_individual(vec(5, 5), pts, [1, 1, 1, 1, 1e6])
    np.testing.assert_allclose(out, [6, 5])
    out = MultiKrum(1, 3).apply_individual(vec(0, 0), pts, [1] * 5)
    np.testing.assert_allclose(out, [2 / 3, 1 / 3], rtol=1e-6)
    with pytest.raises(ValueError, match="2f\\+3 = 5 updates, got 4"):
        krum([A, B, C, D], 1)


def test_robust_strategies_need_individual_updates() -> None:
    for s in (Median(), TrimmedMean(0.2), Krum(1), MultiKrum(1)):
        assert s.needs_individual_updates
        with pytest.raises(NotImplementedError):
            s.apply(vec(0.0), vec(0.0))
    for s in (FedAvg(), FedProx(0.1), FedAdam(), FedYogi(), FedAdagrad()):
        assert not s.needs_individual_updates
    with pytest.raises(ValueError, match="2 updates but 1 weights"):
        Median().apply_individual(vec(0.0), [vec(1.0), vec(2.0)], [1.0])
    with pytest.raises(ValueError, match="shape"):
        coordinate_median([vec(1.0), vec(1.0, 2.0)])


# ----------------------------------------------------------------------------- create_strategy


def test_create_strategy_from_spec_and_name() -> None:
    assert isinstance(create_strategy(StrategySpec()), FedAvg)
    assert isinstance(create_strategy("fedavg"), FedAvg)
    assert isinstance(create_strategy("median"), Median)
    prox = create_strategy(StrategySpec(name=StrategyName.FEDPROX, mu=0.01))
    assert isinstance(prox, FedProx) and prox.mu == 0.01
    adam = create_strategy(StrategySpec(name=StrategyName.FEDADAM, server_learning_rate=0.5))
    assert isinstance(adam, FedAdam) and (adam.eta, adam.beta1) == (0.5, 0.9)
    yogi = create_strategy(StrategySpec(name=StrategyName.FEDYOGI, tau=0.01, beta2=0.9))
    assert isinstance(yogi, FedYogi) and (yogi.eta, yogi.tau, yogi.beta2) == (0.01, 0.01, 0.9)
    tm = create_strategy(StrategySpec(name=StrategyName.TRIMMED_MEAN, trim_fraction=0.2))
    assert isinstance(tm, TrimmedMean) and tm.beta == 0.2
    mk = create_strategy(
        StrategySpec(name=StrategyName.MULTI_KRUM, byzantine=2, multi_krum_select=3)
    )
    assert isinstance(mk, MultiKrum) and (mk.byzantine, mk.select) == (2, 3)
    assert type(create_strategy(StrategySpec(name=StrategyName.KRUM, byzantine=1))) is Krum
    with pytest.raises(ValueError, match="unknown strategy 'fedsgd'"):
        create_strategy("fedsgd")
    with pytest.raises(ValueError, match=r"strategy\.mu: required for 'fedprox'"):
        create_strategy("fedprox")
    # a fresh instance each time: server-optimizer state is never shared between jobs
    assert create_strategy("fedadam") is not create_strategy("fedadam")


# ----------------------------------------------------------------------------- spec validation


def _job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "j"},
        "spec": {"data": {"features": ["a", "b"], "label": "y"}, "rounds": 2},
    }
    base["spec"].update(spec)
    return base


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (
            {"strategy": {"name": "fedavg", "mu": 0.1}},
            "job.yaml: spec.strategy.mu: applies only to fedprox, not 'fedavg' (got 0.1)",
        ),
        ({"strategy": {"name": "fedprox"}}, "spec.strategy.mu: required for 'fedprox'"),
        (
            {"strategy": {"name": "fedprox", "mu": 0}},
            "spec.strategy.mu: Input should be greater than 0",
        ),
        (
            {"strategy": {"name": "fedadam", "trimFraction": 0.1}},
            "spec.strategy.trimFraction: applies only to trimmed-mean, not 'fedadam'",
        ),
        (
            {"strategy": {"name": "fedadagrad", "beta2": 0.9}},
            "spec.strategy.beta2: applies only to fedadam, fedyogi, not 'fedadagrad'",
        ),
        (
            {"strategy": {"name": "krum", "byzantine": 1, "multiKrumSelect": 2}},
            "spec.strategy.multiKrumSelect: applies only to multi-krum, not 'krum'",
        ),
        (
            {"strategy": {"name": "median", "byzantine": 1}},
            "spec.strategy.byzantine: applies only to krum, multi-krum, not 'median'",
        ),
        ({"strategy": {"name": "krum"}}, "spec.strategy.byzantine: required for 'krum'"),
        (
            {"strategy": {"name": "trimmed-mean"}},
            "spec.strategy.trimFraction: required for 'trimmed-mean'",
        ),
        (
            {"strategy": {"name": "trimmed-mean", "trimFraction": 0.5}},
            "spec.strategy.trimFraction: Input should be less than 0.5",
        ),
        (
            {"strategy": {"name": "fedyogi", "beta1": 1.0}},
            "spec.strategy.beta1: Input should be less than 1",
        ),
        ({"strategy": {"name": "fedsgd"}}, "spec.strategy.name: Input should be"),
        (
            {"minParticipants": 4, "strategy": {"name": "krum", "byzantine": 1}},
            "job.yaml: spec.strategy.byzantine: krum with f=1 needs at least 2f+3 = 5 updates "
            "per round, but the quorum (minResponses, else minParticipants) is 4 (got 1)",
        ),
        (
            {
                "minParticipants": 9,
                "minResponses": 6,
                "strategy": {"name": "multi-krum", "byzantine": 2},
            },
            "spec.strategy.byzantine: multi-krum with f=2 needs at least 2f+3 = 7 updates",
        ),
        (
            {
                "minParticipants": 5,
                "strategy": {"name": "multi-krum", "byzantine": 1, "multiKrumSelect": 5},
            },
            "spec.strategy.multiKrumSelect: cannot exceed the quorum minus byzantine "
            "(5 - 1 = 4) (got 5)",
        ),
        (
            {"minParticipants": 5, "strategy": {"name": "trimmed-mean", "trimFraction": 0.1}},
            "spec.strategy.trimFraction: trims no update when the quorum (minResponses, else "
            "minParticipants) is 5; use at least 0.2 (got 0.1)",
        ),
        (
            {"minParticipants": 2, "strategy": {"name": "median"}},
            "spec.strategy.name: median needs at least 3 updates per round",
        ),
    ],
)
def test_strategy_validation_names_the_field(patch: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_document(FederatedJob, _job(**patch), "job.yaml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "fedprox", "mu": 0.01},
        {"name": "fedadam", "serverLearningRate": 0.05, "beta1": 0.8, "beta2": 0.9, "tau": 1e-4},
        {"name": "fedyogi"},
        {"name": "fedadagrad", "beta1": 0.5},
        {"name": "median"},
        {"name": "trimmed-mean", "trimFraction": 0.2},
        {"name": "trimmed-mean", "trimFraction": 0.0},
        {"name": "krum", "byzantine": 1},
        {"name": "multi-krum", "byzantine": 1, "multiKrumSelect": 4},
    ],
)
def test_valid_strategies_parse_and_build(strategy: dict[str, Any]) -> None:
    job = parse_document(FederatedJob, _job(minParticipants=5, strategy=strategy), "job.yaml")
    built = create_strategy(job.spec.strategy)
    assert built.name == strategy["name"]
    assert built.needs_individual_updates == job.spec.strategy.robust
    assert job.spec.strategy.to_json_dict() == strategy  # round-trips in camelCase
    assert job.spec.strategy.proximal_mu == strategy.get("mu", 0.0)


# ----------------------------------------------------------------------------- FedProx training


class _Scale(nn.Module):
    """``f(x) = w * x[:, 0]`` with one weight, for hand-checkable gradient steps."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x[:, 0]


def test_proximal_term_in_sgd_steps_by_hand() -> None:
    """MSE on one point (x=1, y=1), SGD lr 0.1, two steps from w = 0.

    mu = 0: grad 2(w-1): w1 = 0.2, w2 = 0.2 - 0.1*2*(0.2-1) = 0.36
    mu = 1: grad 2(w-1) + mu*(w-0): w1 = 0.2 (w = anchor), w2 = 0.2 - 0.1*(-1.6+0.2) = 0.34
    """
    x, y = torch.ones(1, 1), torch.ones(1)
    spec = TrainingSpec(steps=2, batch_size=1, optimizer=Optimizer.SGD, learning_rate=0.1)
    for mu, expected in [(0.0, 0.36), (1.0, 0.34)]:
        model = _Scale()
        out = train_local(model, x, y, spec, Task.REGRESSION, seed=0, proximal_mu=mu)
        assert model.w.item() == pytest.approx(expected, abs=1e-6)
        # the reported loss is the task loss alone: last pass (w = 0.2) gives (0.2 - 1)^2
        assert out["loss"] == pytest.approx(0.64, abs=1e-6)
    with pytest.raises(ValueError, match="proximal_mu"):
        train_local(_Scale(), x, y, spec, Task.REGRESSION, seed=0, proximal_mu=-1.0)


def test_fedprox_pulls_local_weights_toward_global() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=gen)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).float()
    spec = TrainingSpec(epochs=5, batch_size=32, learning_rate=0.05)
    model_spec = ModelSpec(name=ModelName.LOGISTIC_REGRESSION)

    def drift(mu: float) -> float:
        model = build_model(model_spec, Task.BINARY_CLASSIFICATION, 4, seed=0)
        start = [p.detach().clone() for p in model.parameters()]
        train_local(model, x, y, spec, Task.BINARY_CLASSIFICATION, seed=1, proximal_mu=mu)
        return math.sqrt(
            sum(
                float((p.detach() - s).pow(2).sum())
                for p, s in zip(model.parameters(), start, strict=True)
            )
        )

    free, prox_small, prox_large = drift(0.0), drift(0.1), drift(1.0)
    assert prox_large < prox_small < free
    assert prox_large < 0.7 * free
