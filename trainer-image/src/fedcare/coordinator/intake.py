"""Update intake: checking the sites' uploaded updates and folding them into the open round.

:class:`UpdateIntake` checks an update's header against the open round, reads its bytes (at
most ``max_concurrent_uploads`` at once, outside the lock), folds it into the round's
aggregation under the engine's condition variable, and audits and counts what it accepts or
refuses. The open round and the model's tensor layout stay the engine's; the intake reads them
through the accessors it is given, under the same lock as before. Status changes go through the
engine's :class:`StatusPublisher`, whose ``_`` methods it calls with that lock held.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

import grpc

from fedcare.audit import AuditLog
from fedcare.coordinator.rounds import TrainRound
from fedcare.coordinator.sessions import Session
from fedcare.coordinator.status import StatusPublisher
from fedcare.coordinator.uploads import CONTENT_REASONS, Rejected, layout_diff, payload_digest
from fedcare.monitoring.metrics import CoordinatorMetrics
from fedcare.privacy.dp.central import CentralAccountant
from fedcare.spec import DpMode, FederatedJobSpec, ParticipantState
from fedcare.transport import TensorLayout
from fedcare.transport._generated import coordinator_pb2 as pb


class UpdateIntake:
    """The sites' updates to the engine's open round: checked, read, folded, audited, counted."""

    def __init__(
        self,
        job_name: str,
        spec: FederatedJobSpec,
        cond: threading.Condition,
        status: StatusPublisher,
        metrics: CoordinatorMetrics,
        audit: AuditLog | None,
        central: CentralAccountant | None,
        open_round: Callable[[], TrainRound | None],
        layout: Callable[[], TensorLayout],
        max_concurrent_uploads: int,
    ) -> None:
        self._job_name = job_name
        self._spec = spec
        #: the engine's condition variable: guards the open round and the status
        self._cond = cond
        #: the engine's status document (its ``_`` methods expect ``_cond`` held)
        self._status = status
        self._metrics = metrics
        self._audit = audit
        #: central DP: the engine's accountant, for the epsilon audited with an update
        self._central = central
        #: the engine's open round (read under ``_cond``)
        self._open_round = open_round
        #: the model's tensor layout (set by the engine before the first round)
        self._layout = layout
        self._upload_slots = threading.BoundedSemaphore(max_concurrent_uploads)

    def check_header(self, session: Session, header: pb.UpdateHeader) -> TrainRound:
        """Validate an update's header against the open round; returns that round."""
        with self._cond:
            rnd = self._open_round()
            name = session.participant
            current = rnd.number if rnd is not None else 0
            if (
                rnd is not None
                and header.round == current
                and (name in rnd.received or name in rnd.refused)
            ):  # the more specific reason, whether or not the round has closed since
                raise Rejected(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "duplicate",
                    f"{name!r} already sent its update for round {rnd.number}",
                )
            if rnd is None or header.round < current or (rnd.closed and header.round == current):
                raise Rejected(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "stale_round",
                    f"round {header.round} is closed (current round: {current})",
                )
            if header.round > current:
                raise Rejected(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "future_round",
                    f"round {header.round} has not started (current round: {current})",
                )
            if rnd.selected.get(name) != session.session_id:
                raise Rejected(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "not_selected",
                    f"{name!r} was not selected for round {rnd.number}",
                )
            if header.base_version != rnd.base_version:
                raise Rejected(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "wrong_base",
                    f"update trained from {header.base_version!r}, round "
                    f"{rnd.number} trains from {rnd.base_version!r}",
                )
        if not 0 < header.num_samples <= session.train_samples:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_sample_count",
                f"num_samples {header.num_samples} outside 1..{session.train_samples}"
                " (the training samples announced at join)",
            )
        if header.encoding != rnd.aggregation.encoding:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "wrong_encoding",
                f"round {rnd.number} takes {pb.UpdateEncoding.Name(rnd.aggregation.encoding)} "
                f"updates, got {pb.UpdateEncoding.Name(header.encoding)}",
            )
        got = tuple((t.name, tuple(int(d) for d in t.shape)) for t in header.tensors)
        layout = self._layout()
        if got != layout:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT, "wrong_shape", layout_diff(layout, got)
            )
        return rnd

    def receive_update(
        self, session: Session, header: pb.UpdateHeader, chunks: Iterator[bytes]
    ) -> None:
        """Read, validate and fold one update; raises :class:`Rejected` when refused.

        An update refused for its content (shape, size, sample count, NaN/Inf) ends that
        participant's part in the round: the round goes on with the rest and may close without
        waiting for it.
        """
        try:
            self._receive_update(session, header, chunks)
        except Rejected as rej:
            if self._audit is not None:
                self._audit.rejected(
                    self._job_name, int(header.round), session.participant, rej.reason, rej.detail
                )
            if rej.reason in CONTENT_REASONS:
                with self._cond:
                    rnd = self._open_round()
                    name = session.participant
                    if (
                        rnd is not None
                        and rnd.number == header.round
                        and rnd.selected.get(name) == session.session_id
                        and name not in rnd.received
                    ):
                        rnd.refused[name] = rej.reason
                        self._cond.notify_all()
            raise

    def _receive_update(
        self, session: Session, header: pb.UpdateHeader, chunks: Iterator[bytes]
    ) -> None:
        rnd = self.check_header(session, header)
        with self._upload_slots:
            payload = rnd.aggregation.read(chunks)
            sha256, nbytes = payload_digest(payload)
            self._metrics.bytes_in.inc(nbytes)
            loss = header.train_metrics.get("loss")
            with self._cond:
                if rnd.closed or self._open_round() is not rnd:
                    raise Rejected(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "round_closed",
                        f"round {rnd.number} closed while the update was in flight",
                    )
                if session.participant in rnd.received:
                    raise Rejected(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "duplicate",
                        f"{session.participant!r} already sent round {rnd.number}",
                    )
                rnd.aggregation.accept(session.participant, payload, float(header.num_samples))
                rnd.record(
                    session.participant,
                    int(header.num_samples),
                    loss if loss is not None and math.isfinite(loss) else None,
                )
                self._metrics.updates_accepted.inc()
                if self._audit is not None:
                    self._audit.accepted(
                        self._job_name, rnd.number, session.participant, int(header.num_samples),
                        self._epsilon_of(header), sha256,
                    )  # fmt: skip
                if self._spec.privacy.dp.mode is DpMode.LOCAL:
                    self._status._note_epsilon(
                        session.participant, float(header.epsilon), self._spec.privacy.dp.delta
                    )
                self._status._participant_state(
                    session.participant,
                    ParticipantState.CONNECTED,
                    last_round=rnd.number,
                    samples=int(header.num_samples),
                )
                self._status._publish()

    def _epsilon_of(self, header: pb.UpdateHeader) -> float | None:
        """Epsilon to audit with an accepted update (local: the site's; central: the job's
        after this round)."""
        if self._central is not None:
            return self._central.epsilon_after_next_round()
        return float(header.epsilon) if header.epsilon else None

    def rejected(self, reason: str) -> None:
        """Count a refused update or report in metrics and status."""
        self._metrics.rejected(reason)
        with self._cond:
            self._status.status.rejected_updates += 1
            self._status._publish()
