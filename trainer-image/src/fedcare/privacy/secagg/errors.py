"""Exceptions of the secure-aggregation protocol.

Malformed or out-of-place *messages* raise :class:`ValueError` (with the reason); calling a
method in the wrong *phase* raises :class:`RuntimeError`. The two classes below are the
protocol's own outcomes: the round cannot complete, or a client will not answer.
"""

from __future__ import annotations

from fedcare.errors import FedcareError


class SecAggError(FedcareError):
    """Base of the secure-aggregation outcomes below."""


class SecAggAborted(SecAggError):
    """The round cannot produce a sum (too few participants, inconsistent shares, ...).

    No partial or approximate sum is ever returned; ``reason`` says why in one line.
    """

    def __init__(self, reason: str) -> None:
        """Keep ``reason`` and format the message from it."""
        super().__init__(f"secure aggregation aborted: {reason}")
        self.reason = reason


class SecAggRefused(SecAggError):
    """A client refuses a server request that would reveal more than the sum.

    Raised for example when the unmask request asks for both the self-mask share and the
    key share of the same participant, or when a client is asked to unmask twice.
    """

    def __init__(self, reason: str) -> None:
        """Keep ``reason`` and format the message from it."""
        super().__init__(f"secure aggregation request refused: {reason}")
        self.reason = reason
