"""A site's privacy-budget ledger: the epsilon it has spent, across every job it takes part in.

The ledger is a JSON-lines file next to the site's data (:func:`ledger_path_for`), one line
per trained round::

    {"job": "readmission", "round": 3, "epsilon": 0.0412, "delta": 1e-06, "time": "..."}

``epsilon`` is the round's *increment* (the job's epsilon after the round minus before it),
so a job's lines add up to the job's composed epsilon at its ``delta``.

**Composition across jobs** is basic (sequential) composition: jobs at ``(eps_j, delta_j)``
together cost ``(sum eps_j, sum delta_j)``. :meth:`BudgetLedger.spent` is the sum of every
line's epsilon; :meth:`BudgetLedger.spent_delta` sums each job's delta once. Both must stay
within the site's :class:`~fedcare.spec.privacy.PrivacyBudget`. Basic composition is loose
(RDP curves would compose tighter) but needs nothing but the numbers on each line, whatever
accountant a job used. Note what it implies for delta: a budget with ``delta = 1e-5`` holds
one job at ``delta = 1e-5``, or ten at ``1e-6``.

**Concurrency and durability.** Every read and append holds an ``fcntl.flock`` on the file
(exclusive for writers), so two jobs (two processes) at the same site cannot both take the
last of the budget: :meth:`BudgetLedger.try_spend` checks and appends under one lock. Lines
are appended with ``O_APPEND`` in a single ``write`` and fsynced. ``flock`` is reliable on
local file systems; on NFS it depends on the server, so keep the ledger on local storage.

**Failure closed.** A line that does not parse stops every later check with
:class:`~fedcare.privacy.dp.errors.LedgerError` naming the file and line: the ledger is
append-only, and repairing it is an operator's decision, never the trainer's. A round that is
retrained (a coordinator restart) draws fresh noise, so it is recorded again.
"""

from __future__ import annotations

import fcntl
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedcare.privacy.dp.errors import BudgetExhausted, LedgerError
from fedcare.spec.privacy import PrivacyBudget

__all__ = ["EPSILON_SLACK", "LEDGER_FILE", "BudgetLedger", "LedgerEntry", "ledger_path_for"]

#: The ledger's file name, in the directory of the site's data file.
LEDGER_FILE = ".fedcare-privacy-ledger.jsonl"
#: Absolute slack allowed when comparing sums of epsilon increments with a budget, so that
#: float rounding in the telescoping sum does not refuse the last round of a job whose
#: epsilon equals the budget.
EPSILON_SLACK = 1e-9


def ledger_path_for(data_path: str | Path) -> Path:
    """The ledger of the site whose data is ``data_path``: ``<its directory>/`` +
    :data:`LEDGER_FILE` (a directory ``data_path`` holds the ledger itself)."""
    path = Path(data_path)
    folder = path if path.is_dir() else path.parent
    return folder / LEDGER_FILE


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LedgerEntry(BaseModel):
    """One trained round: the epsilon it added to ``job`` at ``delta``, and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(min_length=1, max_length=253)
    round: int = Field(ge=0)
    epsilon: float = Field(ge=0.0)
    delta: float = Field(gt=0.0, lt=1.0)
    #: RFC 3339, UTC.
    time: str = Field(min_length=1)

    @field_validator("epsilon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("epsilon must be finite")
        return value


class BudgetLedger:
    """The append-only ledger at ``path`` (created on the first record)."""

    def __init__(self, path: str | Path) -> None:
        """Use the ledger file at ``path``."""
        self.path = Path(path)

    def __repr__(self) -> str:
        """``BudgetLedger('<path>')``."""
        return f"BudgetLedger({str(self.path)!r})"

    # ----------------------------------------------------------------------------- locking
    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[int | None]:
        """The file's descriptor under ``flock``; ``None`` if it does not exist (readers)."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT if exclusive else os.O_RDONLY
        try:
            created = exclusive and not self.path.exists()
            if exclusive:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise LedgerError(f"cannot open privacy ledger {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if created:
                _fsync_dir(self.path.parent)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _read(self, fd: int | None) -> list[LedgerEntry]:
        if fd is None:
            return []
        chunks: list[bytes] = []
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        entries: list[LedgerEntry] = []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            raise LedgerError(
                f"{self.path}:{len(lines)}: the last line of the privacy ledger is incomplete "
                "(no newline: a write was cut off); the ledger is append-only, so fedcare "
                "will not guess: check and repair the file by hand"
            )
        for number, raw in enumerate(lines, start=1):
            try:
                entries.append(LedgerEntry.model_validate_json(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise LedgerError(
                    f"{self.path}:{number}: corrupted privacy-ledger entry ({where}: "
                    f"{first['msg']}); the ledger is append-only, so fedcare will not guess: "
                    "check and repair the file by hand"
                ) from exc
        return entries

    # ----------------------------------------------------------------------------- reading
    def entries(self) -> list[LedgerEntry]:
        """Every recorded round, oldest first (an empty list when the file does not exist)."""
        with self._locked(exclusive=False) as fd:
            return self._read(fd)

    @staticmethod
    def _eps(entries: list[LedgerEntry]) -> float:
        return math.fsum(e.epsilon for e in entries)

    @staticmethod
    def _job_deltas(entries: list[LedgerEntry]) -> dict[str, float]:
        deltas: dict[str, float] = {}
        for e in entries:
            deltas[e.job] = max(deltas.get(e.job, 0.0), e.delta)
        return deltas

    def spent(self) -> float:
        """Total epsilon spent at this site, all jobs (basic composition: the sum)."""
        return self._eps(self.entries())

    def spent_delta(self) -> float:
        """Total delta spent at this site: each job's (largest) delta, summed once per job."""
        return math.fsum(self._job_deltas(self.entries()).values())

    def spent_by_job(self) -> dict[str, float]:
        """Epsilon spent per job (for the site's status)."""
        out: dict[str, float] = {}
        for e in self.entries():
            out[e.job] = out.get(e.job, 0.0) + e.epsilon
        return out

    @classmethod
    def _refusal(
        cls,
        entries: list[LedgerEntry],
        additional_eps: float,
        budget: PrivacyBudget,
        job: str | None,
        delta: float | None,
    ) -> str | None:
        """Why ``additional_eps`` (for ``job`` at ``delta``) does not fit; ``None`` if it does."""
        if not (math.isfinite(additional_eps) and additional_eps >= 0.0):
            return f"epsilon increment must be a finite number >= 0, got {additional_eps}"
        spent = cls._eps(entries)
        if spent + additional_eps > budget.epsilon + EPSILON_SLACK:
            return (
                f"needs epsilon {additional_eps:.6g} but {spent:.6g} of the site's "
                f"{budget.epsilon:.6g} is already spent"
            )
        if delta is not None:
            deltas = cls._job_deltas(entries)
            key = job if job is not None else "\0new job"
            deltas[key] = max(deltas.get(key, 0.0), delta)
            total = math.fsum(deltas.values())
            if total > budget.delta * (1.0 + 1e-12):
                return (
                    f"its delta {delta:.3g} would take the site's delta to {total:.3g}, over "
                    f"its budget of {budget.delta:.3g} (deltas of jobs add up)"
                )
        return None

    def can_spend(
        self,
        additional_eps: float,
        budget: PrivacyBudget,
        *,
        job: str | None = None,
        delta: float | None = None,
    ) -> bool:
        """Whether ``additional_eps`` more fits in ``budget`` (and, with ``delta``, whether
        ``job``'s delta fits next to the other jobs'). Advisory: use :meth:`try_spend` to
        check and record atomically."""
        return self._refusal(self.entries(), additional_eps, budget, job, delta) is None

    # ----------------------------------------------------------------------------- writing
    def _append(self, fd: int, entry: LedgerEntry) -> None:
        line = entry.model_dump_json().encode() + b"\n"
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            raise LedgerError(f"cannot append to privacy ledger {self.path}: {exc}") from exc

    @staticmethod
    def _entry(job: str, round_number: int, epsilon: float, delta: float) -> LedgerEntry:
        try:
            return LedgerEntry(
                job=job, round=round_number, epsilon=epsilon, delta=delta, time=_now()
            )
        except ValidationError as exc:
            raise ValueError(f"invalid ledger entry: {exc.errors()[0]['msg']}") from exc

    def record(
        self, job: str, round_number: int, epsilon_increment: float, delta: float
    ) -> LedgerEntry:
        """Append a round's epsilon increment unconditionally (no budget check)."""
        entry = self._entry(job, round_number, epsilon_increment, delta)
        with self._locked(exclusive=True) as fd:
            if fd is None:  # pragma: no cover - writers always get a descriptor
                raise LedgerError(f"cannot open privacy ledger {self.path}")
            self._read(fd)  # refuse to append after a corrupted line
            self._append(fd, entry)
        return entry

    def try_spend(
        self,
        job: str,
        round_number: int,
        epsilon_increment: float,
        delta: float,
        budget: PrivacyBudget,
    ) -> LedgerEntry:
        """Record ``epsilon_increment`` for ``job``'s round if it fits in ``budget``; check
        and append under one exclusive lock. Raises
        :class:`~fedcare.privacy.dp.errors.BudgetExhausted` (nothing recorded) if not."""
        entry = self._entry(job, round_number, epsilon_increment, delta)
        with self._locked(exclusive=True) as fd:
            if fd is None:  # pragma: no cover - writers always get a descriptor
                raise LedgerError(f"cannot open privacy ledger {self.path}")
            entries = self._read(fd)
            why = self._refusal(entries, epsilon_increment, budget, job, delta)
            if why is not None:
                raise BudgetExhausted(
                    f"privacy budget exhausted ({self.path}): round {round_number} of job "
                    f"{job!r} {why}",
                    needed=epsilon_increment,
                    spent=self._eps(entries),
                    budget=budget.epsilon,
                )
            self._append(fd, entry)
        return entry


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
