"""Differential privacy: local DP-SGD (Opacus), central DP on the aggregate, and each site's
privacy-budget ledger.

- :mod:`fedcare.privacy.dp.local`: :func:`train_local_dp` and the job's
  :class:`LocalDpState` (noise multiplier, accountant, what the next round costs);
- :mod:`fedcare.privacy.dp.central`: :func:`clip_update`, :func:`add_gaussian_noise` and the
  per-round :class:`CentralAccountant`;
- :mod:`fedcare.privacy.dp.ledger`: :class:`BudgetLedger`, the append-only record of the
  epsilon a site has spent across all its jobs.

``local`` imports torch and Opacus; the other two need neither, so the coordinator can use
them without the ``train`` extra (``CentralAccountant`` imports Opacus only for a sample rate
below 1 or the PRV accountant).

Call sequence, local mode (trainer, one job)::

    ledger = BudgetLedger(ledger_path_for(site_data_path))       # once
    state = LocalDpState.for_job(dp, training, n_train, rounds)    # once (fixes sigma)
    for each training task:
        reserve_round(state, ledger, budget, job, round)          # BEFORE training; raises
                                                                  # BudgetExhausted: refuse
        metrics, state = train_local_dp(model, x, y, training, task, seed, dp, rounds, state)
        send the update with epsilon = metrics[DP_EPSILON]

Central mode: the coordinator clips each update (:func:`clip_update`), sums them, adds
:func:`add_gaussian_noise` and calls ``CentralAccountant.step()`` once per aggregate; each
trainer keeps the same ``CentralAccountant`` (it is deterministic in the job spec) and spends
``next_round_cost()`` on its ledger before training, then calls ``step()``.
"""

from fedcare.privacy.dp.central import (
    CentralAccountant,
    add_gaussian_noise,
    clip_update,
    noise_std,
)
from fedcare.privacy.dp.errors import BudgetExhausted, DpError, LedgerError
from fedcare.privacy.dp.ledger import LEDGER_FILE, BudgetLedger, LedgerEntry, ledger_path_for

__all__ = [
    "LEDGER_FILE",
    "BudgetExhausted",
    "BudgetLedger",
    "CentralAccountant",
    "DpError",
    "LedgerEntry",
    "LedgerError",
    "add_gaussian_noise",
    "clip_update",
    "ledger_path_for",
    "noise_std",
]
