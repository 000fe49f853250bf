"""Exceptions of differential privacy: a configuration DP cannot train, a spent budget, a
broken ledger. Each is a :class:`~fedcare.errors.FedcareError` with a one-line message."""

from __future__ import annotations

from fedcare.errors import FedcareError


class DpError(FedcareError):
    """DP cannot be applied as asked (task, model or parameters); the message says why."""


class BudgetExhausted(DpError):
    """A round would take a site past its privacy budget; nothing was spent.

    ``needed`` is the epsilon the round would cost, ``spent`` what the site's ledger already
    holds and ``budget`` the site's total epsilon.
    """

    def __init__(self, message: str, *, needed: float, spent: float, budget: float) -> None:
        """Keep the figures next to the message."""
        super().__init__(message)
        self.needed = needed
        self.spent = spent
        self.budget = budget


class LedgerError(DpError):
    """The budget ledger cannot be read or written (the message names the file and line)."""
