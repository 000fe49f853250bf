"""Errors fedcare raises on purpose; each carries a one-line message for the user."""

from __future__ import annotations


class FedcareError(Exception):
    """Base of fedcare's expected errors: printed as one line, never a traceback."""


class SpecError(FedcareError):
    """A manifest or config is malformed; the message names the file and field path."""


class DataError(FedcareError):
    """A site's data does not fit the job's schema; the message names file, column and row."""


class RepositoryError(FedcareError):
    """A model version cannot be read or written."""


class PkiError(FedcareError):
    """Certificates or keys are missing, invalid or do not match."""


class JobFailed(FedcareError):
    """The federated job ended in phase Failed."""
