"""The Cox proportional-hazards loss in torch: negative partial log-likelihood, Breslow ties.

Targets are ``(n, 2)`` tensors ``[time, event]``; the model's output is the log relative
hazard (risk score) of each row. Within a mini-batch the risk set of an event at time ``t`` is
every row of the batch with time ``>= t`` (every site trains on its own rows, so the risk sets
never mix hospitals: the federated model is a Cox model stratified by site).
"""

from __future__ import annotations

import torch

__all__ = ["cox_ph_loss", "split_survival_target"]


def split_survival_target(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(time, event)`` of an ``(n, 2)`` survival target; ValueError for any other shape."""
    if y.dim() != 2 or y.shape[1] != 2:
        raise ValueError(
            f"a survival target has shape (n, 2) with columns [time, event], got {tuple(y.shape)}"
        )
    return y[:, 0], y[:, 1]


def cox_ph_loss(risk: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood per event, with Breslow's handling of tied times.

    ``-(1/d) * sum over events i of (risk_i - log sum_{j: t_j >= t_i} exp(risk_j))``, d the
    number of events in the batch (the loss is 0, with zero gradient, when there is none).
    Vectorized: rows sorted by time descending, ``logcumsumexp`` gives every prefix's log risk
    set, and each row takes the value at the end of its tie group, so tied rows share one
    risk set that includes all of them.
    """
    time, event = split_survival_target(y)
    risk = risk.reshape(-1)
    if risk.shape[0] != time.shape[0]:
        raise ValueError(f"risk has {risk.shape[0]} values but y has {time.shape[0]} rows")
    order = torch.argsort(time, descending=True, stable=True)
    t_sorted = time[order]
    r_sorted = risk[order]
    e_sorted = event[order].to(dtype=risk.dtype)
    log_cum = torch.logcumsumexp(r_sorted, dim=0)
    _, inverse, counts = torch.unique_consecutive(t_sorted, return_inverse=True, return_counts=True)
    last_of_tie = torch.cumsum(counts, dim=0) - 1
    log_risk_set = log_cum[last_of_tie[inverse]]
    events = e_sorted.sum()
    total = -(e_sorted * (r_sorted - log_risk_set)).sum()
    return total / events.clamp(min=1.0)
