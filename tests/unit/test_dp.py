"""Differential privacy: local DP-SGD, central DP, the accountants and the budget ledger.

Epsilons are checked against computations done here independently: Opacus' own accountants
fed the same ``(noise, sample rate, steps)`` history, and, for central DP, the closed-form RDP
of the Gaussian mechanism converted to ``(epsilon, delta)`` in this file.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant  # type: ignore[import-untyped]
from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]
from torch import nn

from fedcare.models import build_model
from fedcare.privacy.dp import (
    BudgetExhausted,
    BudgetLedger,
    CentralAccountant,
    DpError,
    LedgerError,
    add_gaussian_noise,
    clip_update,
    ledger_path_for,
    noise_std,
)
from fedcare.privacy.dp._opacus import has_tied_parameters
from fedcare.privacy.dp.local import (
    DP_EPSILON,
    DP_EPSILON_ROUND,
    LocalDpState,
    poisson_batch,
    reserve_round,
    train_local_dp,
)
from fedcare.spec.job import ModelName, ModelSpec, Optimizer, Task, TrainingSpec
from fedcare.spec.privacy import DifferentialPrivacySpec, PrivacyBudget

BINARY = Task.BINARY_CLASSIFICATION
MLP = ModelSpec(name=ModelName.MLP, hidden_units=[8])
REL = 1e-6


def dp_spec(**kw: object) -> DifferentialPrivacySpec:
    return DifferentialPrivacySpec.model_validate({"mode": "local", **kw})


def data(n: int = 1000, features: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = (x[:, 0] + 0.3 * torch.randn(n, generator=gen) > 0).to(torch.float32)
    return x, y


@contextmanager
def opacus_quiet() -> Iterator[None]:
    """Opacus warns when the best RDP order is the last one searched, and PRV's q = 1 case
    divides by zero inside numpy (harmlessly): neither matters for a reference value."""
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        yield


def opacus_epsilon(
    history: list[tuple[float, float, int]], delta: float, prv: bool = False
) -> float:
    acc = PRVAccountant() if prv else RDPAccountant()
    acc.history = list(history)
    with opacus_quiet():
        return float(acc.get_epsilon(delta=delta))


# ------------------------------------------------------------------------------ sampling
def test_poisson_batch_includes_each_row_with_the_sample_rate() -> None:
    gen = torch.Generator().manual_seed(0)
    n, q, draws = 40, 0.1, 20_000
    counts = torch.zeros(n)
    sizes = []
    for _ in range(draws):
        idx = poisson_batch(n, q, gen)
        assert bool((idx[1:] > idx[:-1]).all()) and (idx.numel() == 0 or idx.min() >= 0)
        assert idx.numel() == 0 or int(idx.max()) < n
        counts[idx] += 1
        sizes.append(idx.numel())
    rate = counts / draws
    # binomial standard error of each rate: sqrt(q (1 - q) / draws) ~ 0.0021
    assert float((rate - q).abs().max()) < 0.011
    assert abs(np.mean(sizes) - n * q) < 0.05
    assert abs(np.var(sizes) - n * q * (1 - q)) < 0.15  # Binomial(n, q), not fixed-size
    assert poisson_batch(5, 1.0, gen).tolist() == [0, 1, 2, 3, 4]
    assert poisson_batch(0, 0.5, gen).numel() == 0


# ------------------------------------------------------------------------------ accounting
def test_local_epsilon_matches_opacus_and_known_figures() -> None:
    # pitfalls.md: noise 1.0, sample rate 0.00512, delta 1e-5: 0.98 / 1.47 / 3.10 after
    # 1 / 10 / 50 epochs. 200k rows at batch 1024 are that sample rate.
    training = TrainingSpec(batch_size=1024, epochs=1)
    state = LocalDpState.for_job(dp_spec(noise_multiplier=1.0), training, 200_000, 50)
    assert state.sample_rate == pytest.approx(0.00512)
    assert state.steps_per_round == 196
    assert state.epsilon() == 0.0
    for epoch in range(1, 51):
        predicted = state.epsilon_after_next_round()
        for _ in range(state.steps_per_round):
            state.record_step()
        assert state.epsilon() == pytest.approx(predicted, rel=1e-12)
        if epoch in (1, 10, 50):
            expected = {1: 0.98, 10: 1.47, 50: 3.10}[epoch]
            assert state.epsilon() == pytest.approx(expected, abs=0.01)
    independent = opacus_epsilon([(1.0, 1024 / 200_000, 196 * 50)], 1e-5)
    assert state.epsilon() == pytest.approx(independent, rel=REL)


def test_target_epsilon_picks_opacus_noise_and_lands_on_target() -> None:
    training = TrainingSpec(batch_size=100, epochs=2)
    dp = dp_spec(target_epsilon=3.0, delta=1e-5)
    state = LocalDpState.for_job(dp, training, 5000, rounds_total=4)
    assert state.steps_per_round == 100
    with opacus_quiet():
        sigma = get_noise_multiplier(
            target_epsilon=3.0, target_delta=1e-5, sample_rate=0.02, steps=400, accountant="rdp"
        )
    assert state.noise_multiplier == pytest.approx(sigma, rel=REL)
    increments = []
    for _ in range(4):
        increments.append(state.next_round_cost())
        for _ in range(state.steps_per_round):
            state.record_step()
    assert 2.95 < state.epsilon() <= 3.0
    assert math.fsum(increments) == pytest.approx(state.epsilon(), rel=1e-9)  # telescopes
    assert increments[0] > increments[1] > increments[3]  # composition is sublinear


def test_prv_accountant_matches_opacus() -> None:
    training = TrainingSpec(batch_size=50, epochs=1)
    state = LocalDpState.for_job(dp_spec(noise_multiplier=1.2, accountant="prv"), training, 1000, 3)
    for _ in range(2 * state.steps_per_round):
        state.record_step()
    assert state.epsilon() == pytest.approx(
        opacus_epsilon([(1.2, 0.05, 40)], 1e-5, prv=True), rel=REL
    )


def test_state_round_trips_and_refuses_changed_data() -> None:
    training = TrainingSpec(batch_size=10, epochs=1)
    state = LocalDpState.for_job(dp_spec(noise_multiplier=1.0), training, 100, 2)
    state.record_step()
    again = LocalDpState.from_dict(state.to_dict())
    assert again == state and again.epsilon() == state.epsilon()
    with pytest.raises(DpError, match="training set changed"):
        again.check_data(training, 101)


# ------------------------------------------------------------------------------ DP-SGD
def test_train_local_dp_keeps_the_state_dict_layout_and_reports_epsilon() -> None:
    x, y = data()
    model = build_model(MLP, BINARY, 4, seed=0)
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training = TrainingSpec(batch_size=100, epochs=1, learning_rate=0.05)
    dp = dp_spec(noise_multiplier=1.0)
    state = None
    reported = []
    for seed in range(2):
        metrics, state = train_local_dp(model, x, y, training, BINARY, seed, dp, 2, state)
        reported.append(metrics)
    assert state is not None and state.rounds_done == 2 and state.steps_done == 20
    assert list(model.state_dict()) == keys  # no "_module." prefix
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    for p in model.parameters():  # Opacus detached: no per-sample attributes left behind
        assert not any(hasattr(p, a) for a in ("grad_sample", "_forward_counter", "_norm_sample"))
    assert reported[1][DP_EPSILON] == pytest.approx(opacus_epsilon([(1.0, 0.1, 20)], 1e-5), rel=REL)
    assert reported[0][DP_EPSILON_ROUND] + reported[1][DP_EPSILON_ROUND] == pytest.approx(
        reported[1][DP_EPSILON], rel=1e-9
    )
    assert math.isfinite(reported[1]["loss"])


def test_ghost_clipping_and_hooks_give_the_same_step() -> None:
    x, y = data(400)
    training = TrainingSpec(batch_size=50, steps=5, learning_rate=0.05)
    dp = dp_spec(noise_multiplier=0.8, max_grad_norm=0.5)
    results = []
    for mode in ("ghost", "hooks"):
        model = build_model(MLP, BINARY, 4, seed=0)
        train_local_dp(model, x, y, training, BINARY, 0, dp, 1, grad_sample_mode=mode, rng_seed=7)
        results.append(model.state_dict())
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-4, atol=1e-5)


def test_per_sample_clipping_bounds_the_step() -> None:
    # Full batch (q = 1), plain SGD with lr 1: the step is the mean of clipped per-sample
    # gradients plus noise (negligible at sigma 1e-6). With 64 copies of one row every
    # per-sample gradient is the same huge vector, so the step is that vector clipped to C.
    x = torch.full((64, 4), 100.0)
    y = torch.ones(64)
    model = build_model(MLP, BINARY, 4, seed=0)
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    training = TrainingSpec(batch_size=64, steps=1, learning_rate=1.0, optimizer=Optimizer.SGD)
    dp = dp_spec(noise_multiplier=1e-6, max_grad_norm=0.01)
    train_local_dp(model, x, y, training, BINARY, 0, dp, 1)
    end = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((end - start).norm()) == pytest.approx(0.01, rel=1e-3)


def test_regression_empty_batches_and_survival() -> None:
    x, y = data(20)
    model = build_model(MLP, Task.REGRESSION, 4, seed=0)
    tiny = TrainingSpec(batch_size=1, epochs=1)  # q = 0.05: many empty Poisson batches
    metrics, state = train_local_dp(
        model, x, y, tiny, Task.REGRESSION, 0, dp_spec(noise_multiplier=1.0), 1, rng_seed=3
    )
    assert state.steps_done == 20 and math.isfinite(metrics[DP_EPSILON])
    with pytest.raises(DpError, match="survival"):
        train_local_dp(model, x, y, tiny, Task.SURVIVAL, 0, dp_spec(noise_multiplier=1.0), 1)


class _Reused(nn.Module):
    """One linear layer applied twice: ghost clipping refuses it on the first step."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(torch.relu(self.inner(torch.relu(self.inner(x)))))
        return out.squeeze(1)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.b(self.a(x)))
        return out.squeeze(1)


def test_auto_mode_falls_back_to_hooks() -> None:
    assert has_tied_parameters(_Tied()) and not has_tied_parameters(_Reused())
    x, y = data(200)
    training = TrainingSpec(batch_size=50, steps=3)
    for model in (_Reused(), _Tied()):
        _, state = train_local_dp(
            model, x, y, training, BINARY, 0, dp_spec(noise_multiplier=1.0), 1
        )
        assert state.steps_done == 3  # the refused ghost step was not counted


def test_batchnorm_is_refused_with_a_clear_error() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 1), nn.Flatten(0))
    x, y = data(100)
    with pytest.raises(DpError, match="cannot be trained with DP-SGD"):
        train_local_dp(
            model, x, y, TrainingSpec(batch_size=10), BINARY, 0, dp_spec(noise_multiplier=1.0), 1
        )


# ------------------------------------------------------------------------------ ledger
BUDGET = PrivacyBudget(epsilon=1.0, delta=1e-5)


def test_ledger_records_and_sums(tmp_path: Path) -> None:
    ledger = BudgetLedger(ledger_path_for(tmp_path / "site.csv"))
    assert ledger.path == tmp_path / ".fedcare-privacy-ledger.jsonl"
    assert ledger.spent() == 0.0 and ledger.entries() == []
    ledger.record("job-a", 1, 0.25, 1e-6)
    ledger.try_spend("job-a", 2, 0.25, 1e-6, BUDGET)
    assert ledger.spent() == pytest.approx(0.5)
    assert ledger.spent_delta() == pytest.approx(1e-6)  # once per job
    assert ledger.spent_by_job() == {"job-a": pytest.approx(0.5)}
    assert [e.round for e in ledger.entries()] == [1, 2]
    assert ledger.can_spend(0.5, BUDGET) and not ledger.can_spend(0.5001, BUDGET)


def test_exhaustion_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.jsonl")
    ledger.try_spend("job-a", 1, 0.9, 1e-6, BUDGET)
    with pytest.raises(BudgetExhausted, match=r"round 2 of job 'job-a' needs epsilon 0\.2") as err:
        ledger.try_spend("job-a", 2, 0.2, 1e-6, BUDGET)
    assert err.value.needed == pytest.approx(0.2) and err.value.spent == pytest.approx(0.9)
    assert len(ledger.entries()) == 1
    ledger.try_spend("job-a", 2, 0.1, 1e-6, BUDGET)  # exactly the rest still fits


def test_two_jobs_share_one_budget(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.jsonl")
    ledger.try_spend("job-a", 1, 0.6, 1e-6, BUDGET)
    ledger.try_spend("job-b", 1, 0.3, 1e-6, BUDGET)
    with pytest.raises(BudgetExhausted):
        ledger.try_spend("job-b", 2, 0.3, 1e-6, BUDGET)
    assert ledger.spent() == pytest.approx(0.9)
    # deltas of jobs add up too: a third job at delta 1e-5 does not fit next to two at 1e-6
    with pytest.raises(BudgetExhausted, match="delta"):
        ledger.try_spend("job-c", 1, 0.01, 1e-5, BUDGET)


def test_concurrent_spenders_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    granted: list[int] = []
    lock = threading.Lock()

    def spend(job: str) -> None:
        ledger = BudgetLedger(path)  # own file descriptions: flock serializes them
        for r in range(20):
            try:
                ledger.try_spend(job, r, 0.05, 1e-7, BUDGET)
            except BudgetExhausted:
                continue
            with lock:
                granted.append(r)

    threads = [threading.Thread(target=spend, args=(f"job-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 20  # 1.0 / 0.05: never more
    assert BudgetLedger(path).spent() == pytest.approx(1.0)


def test_corrupted_ledger_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = BudgetLedger(path)
    ledger.record("job-a", 1, 0.1, 1e-6)
    with path.open("a") as fh:
        fh.write('{"job": "job-a", "round": 2, "epsilon": "lots"}\n')
    with pytest.raises(LedgerError, match=rf"{path}:2: corrupted privacy-ledger entry"):
        ledger.spent()
    with pytest.raises(LedgerError, match=":2:"):
        ledger.try_spend("job-a", 3, 0.1, 1e-6, BUDGET)  # fails closed
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"job": "j", "round": 1, "epsilon": 0.1, "delta": 1e-6, "time": "t"}\n{"jo')
    with pytest.raises(LedgerError, match=rf"{torn}:2: .*incomplete"):
        BudgetLedger(torn).entries()


def test_reserve_round_checks_before_training(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.jsonl")
    training = TrainingSpec(batch_size=100, epochs=1)
    state = LocalDpState.for_job(dp_spec(noise_multiplier=1.0, delta=1e-6), training, 1000, 5)
    two_rounds = LocalDpState.from_dict(state.to_dict())
    for _ in range(2 * state.steps_per_round):
        two_rounds.record_step()
    budget = PrivacyBudget(epsilon=two_rounds.epsilon(), delta=1e-5)
    entry = reserve_round(state, ledger, budget, "job-a", 1)
    assert entry.epsilon == pytest.approx(state.epsilon_after_next_round())
    for _ in range(state.steps_per_round):
        state.record_step()
    reserve_round(state, ledger, budget, "job-a", 2)  # the second round is cheaper
    for _ in range(state.steps_per_round):
        state.record_step()
    assert ledger.spent() == pytest.approx(state.epsilon(), rel=1e-9)
    with pytest.raises(BudgetExhausted):
        reserve_round(state, ledger, budget, "job-a", 3)


# ------------------------------------------------------------------------------ central
def test_clip_update() -> None:
    small = np.array([0.3, 0.4], dtype=np.float32)
    out, clipped = clip_update(small, 1.0)
    assert not clipped and np.array_equal(out, small) and out is not small
    big = np.array([3.0, 4.0], dtype=np.float32)
    out, clipped = clip_update(big, 1.0)
    assert clipped and out.dtype == np.float32
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        clip_update(np.array([np.nan]), 1.0)


def test_gaussian_noise_has_sigma_times_c() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros(200_000, dtype=np.float32)
    noisy = add_gaussian_noise(base, sigma=1.5, max_norm=0.2, rng=rng)
    assert noisy.dtype == np.float32 and np.std(noisy) == pytest.approx(0.3, rel=0.01)
    assert noise_std(1.5, 0.2, [0.25, 0.5]) == pytest.approx(0.15)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        noise_std(1.0, 1.0, [1.5])


def _balle_epsilon(rdp: list[float], orders: list[float], delta: float) -> float:
    """RDP -> (eps, delta): Balle et al. 2020, Theorem 21, written out independently."""
    return min(
        r + math.log1p(-1.0 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for r, a in zip(rdp, orders, strict=True)
    )


@pytest.mark.parametrize(
    ("sigma", "rounds", "delta"), [(1.0, 1, 1e-5), (1.1, 20, 1e-5), (4.0, 100, 1e-6)]
)
def test_central_epsilon_equals_independent_computation(
    sigma: float, rounds: int, delta: float
) -> None:
    acc = CentralAccountant(sigma, delta)
    increments = []
    for _ in range(rounds):
        increments.append(acc.next_round_cost())
        acc.step()
    orders = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]
    rdp = [rounds * a / (2 * sigma**2) for a in orders]  # Gaussian mechanism, no sampling
    independent = _balle_epsilon(rdp, orders, delta)
    assert acc.epsilon() == pytest.approx(independent, rel=REL)
    assert acc.epsilon() == pytest.approx(opacus_epsilon([(sigma, 1.0, rounds)], delta), rel=REL)
    classic = min(r + math.log(1 / delta) / (a - 1) for r, a in zip(rdp, orders, strict=True))
    assert acc.epsilon() <= classic  # the classic conversion is looser, never tighter
    assert math.fsum(increments) == pytest.approx(acc.epsilon(), rel=1e-9)
    assert acc.rounds == rounds


def test_central_subsampled_and_prv_use_opacus() -> None:
    acc = CentralAccountant(1.0, 1e-5, sample_rate=0.5)
    for _ in range(10):
        acc.step()
    acc.step(sample_rate=1.0)
    assert acc.epsilon() == pytest.approx(
        opacus_epsilon([(1.0, 0.5, 10), (1.0, 1.0, 1)], 1e-5), rel=REL
    )
    prv = CentralAccountant(2.0, 1e-5, accountant="prv")
    for _ in range(5):
        prv.step()
    assert prv.epsilon() == pytest.approx(opacus_epsilon([(2.0, 1.0, 5)], 1e-5, prv=True), rel=REL)
    with pytest.raises(DpError, match="noise multiplier > 0"):
        CentralAccountant(0.0, 1e-5)
