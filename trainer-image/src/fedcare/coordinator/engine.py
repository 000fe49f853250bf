"""The round engine: admission, rounds with deadlines, streaming aggregation, evaluation.

All state lives behind one condition variable. gRPC handlers (``service.py``) call the public
methods here; the engine's own thread (:meth:`Engine.run`) drives the job from admission to the
end. Heavy work (reading an update, the strategy step, writing a version) happens outside the
lock; folding an update into the aggregate happens under it, so nothing is folded into a round
after it closed. The status document and its watchers are in ``status.py`` (the engine's base
class), checking and folding the sites' updates in ``intake.py``, the secure-aggregation steps
with the sites in ``secure.py``; all use the engine's lock.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import grpc
import numpy as np

from fedcare.audit import AuditLog
from fedcare.coordinator.aggregation import CkksAggregation, MaskedAggregation, PlainAggregation
from fedcare.coordinator.intake import UpdateIntake
from fedcare.coordinator.rounds import Evaluation, JobFailure, TrainRound, check_asked
from fedcare.coordinator.secure import RoundSetup, SecureExchange, coordinator_ckks_context
from fedcare.coordinator.sessions import Session, SessionTable
from fedcare.coordinator.status import StatusPublisher
from fedcare.coordinator.uploads import Rejected
from fedcare.errors import RepositoryError
from fedcare.monitoring.metrics import CoordinatorMetrics
from fedcare.privacy.dp.central import CentralAccountant
from fedcare.repository import (
    ModelRepository,
    NewVersion,
    ParticipantContribution,
    VersionMetadata,
    load_model_ref,
)
from fedcare.repository.safetensors_io import to_safetensors_bytes
from fedcare.spec import (
    ConditionStatus,
    DpMode,
    FederatedJob,
    FederatedJobStatus,
    ModelRef,
    ParticipantState,
    ParticipantStatus,
    Phase,
    RoundStatus,
    SecureAggregationMode,
)
from fedcare.spec.status import utcnow
from fedcare.strategies import create_strategy
from fedcare.transport import TensorLayout, flatten, unflatten
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport.tensors import F32

__all__ = ["Engine", "InitialWeights", "JobFailure"]

log = logging.getLogger("fedcare.coordinator")

#: Builds the initial weights from (job, input mean, input std).
InitialWeights = Callable[[FederatedJob, np.ndarray, np.ndarray], dict[str, np.ndarray]]


class Engine(StatusPublisher):
    """Runs one FederatedJob: the coordinator's state machine.

    The status document and its publishing come from :class:`StatusPublisher`; checking and
    folding the sites' updates is :class:`UpdateIntake`'s, the steps of secure rounds are
    :class:`SecureExchange`'s. All share the engine's one lock, ``_cond``.
    """

    def __init__(
        self,
        job: FederatedJob,
        repository: ModelRepository,
        initial_weights: InitialWeights,
        participants: list[str],
        metrics: CoordinatorMetrics,
        run_id: str | None = None,
        max_concurrent_uploads: int = 2,
        audit: AuditLog | None = None,
        ckks_public_context: bytes | None = None,
    ) -> None:
        self.job = job
        self.spec = job.spec
        self.name = job.metadata.name
        self._repo = repository
        self._initial_weights = initial_weights
        self._allowed = set(participants)
        self.metrics = metrics
        self.run_id = run_id or secrets.token_hex(8)
        self._strategy = create_strategy(self.spec.strategy)
        dp = self.spec.privacy.dp
        #: central DP: the coordinator's accountant (one Gaussian mechanism per round)
        self._central = (
            CentralAccountant(dp.noise_multiplier or 0.0, dp.delta, dp.accountant)
            if dp.mode is DpMode.CENTRAL
            else None
        )
        ckks = coordinator_ckks_context(
            self.spec.privacy.secure_aggregation.mode, ckks_public_context
        )
        # the one lock of all the job's state, shared with the status, the intake and the
        # secure steps
        cond = threading.Condition()
        self._sessions = SessionTable()
        super().__init__(
            FederatedJobStatus(
                phase=Phase.PENDING,
                total_rounds=self.spec.rounds,
                min_participants=self.spec.min_participants,
                participants=[
                    ParticipantStatus(name=n, state=ParticipantState.PENDING)
                    for n in sorted(self._allowed)
                ],
            ),
            cond,
        )
        self._intake = UpdateIntake(
            self.name, self.spec, cond, self, metrics, audit, self._central,
            open_round=lambda: self._round, layout=lambda: self._layout,
            max_concurrent_uploads=max_concurrent_uploads,
        )  # fmt: skip
        self._secure = SecureExchange(
            self.name, self.spec, cond, self._sessions, self._strategy, ckks, self.rejected
        )
        self._layout: TensorLayout = ()
        self._global: F32 = np.zeros(0, dtype=np.float32)
        self._global_version = ""
        #: version id -> safetensors bytes served by DownloadModel (the global and a candidate)
        self._served: dict[str, bytes] = {}
        self._round: TrainRound | None = None
        self._eval: Evaluation | None = None

    # ----------------------------------------------------------------- sessions
    def allow(self, name: str) -> None:
        """Admit a new participant name (an enrolled site); it takes part from the next round."""
        with self._cond:
            if name not in self._allowed:
                self._allowed.add(name)
                self._participant_state(name, ParticipantState.PENDING)
                self._publish()

    def is_participant(self, name: str) -> bool:
        """Whether ``name`` may take part in this job."""
        return name in self._allowed

    def join(self, name: str, request: pb.JoinRequest) -> Session:
        """Admit ``name`` (from its certificate); a newer session replaces the older one."""
        if not self.is_participant(name):
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED,
                "unknown_participant",
                f"certificate for {name!r} is not a participant of job {self.name!r}",
            )
        n_features = len(self.spec.data.features)
        fsum = np.asarray(request.feature_sum, dtype=np.float64)
        fsq = np.asarray(request.feature_sum_sq, dtype=np.float64)
        if request.train_samples <= 0 or request.validation_samples < 0:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT, "bad_join", "train_samples must be positive"
            )
        if fsum.size != n_features or fsq.size != n_features:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_join",
                f"feature statistics have {fsum.size} values, the job has {n_features} features",
            )
        if not (np.isfinite(fsum).all() and np.isfinite(fsq).all()):
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_join",
                "feature statistics contain NaN or Inf",
            )
        session = Session(
            participant=name,
            train_samples=int(request.train_samples),
            validation_samples=int(request.validation_samples),
            feature_sum=fsum,
            feature_sum_sq=fsq,
        )
        with self._cond:
            if self.finished.is_set():
                raise Rejected(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "job_finished",
                    f"job {self.name!r} has ended ({self.status.phase.value})",
                )
            old = self._sessions.add(session)
            if old is not None:
                log.info("%s: new session replaces the previous one", name)
            self._participant_state(name, ParticipantState.CONNECTED, samples=session.train_samples)
            self._resend_open_tasks(session)
            self._refresh_ready()
            self._publish()
        return session

    def _resend_open_tasks(self, session: Session) -> None:
        """A participant that reconnects mid-round gets the task its old session was sent."""
        rnd = self._round
        name = session.participant
        if (
            rnd is not None
            and not rnd.closed
            and rnd.aggregation.encoding == pb.PLAIN_F32  # secure rounds cannot be re-joined
            and name in rnd.pending()
        ):
            rnd.selected[name] = session.session_id
            session.send(self._train_task(rnd, name))
        ev = self._eval
        if ev is not None and name in ev.waiting_for():
            ev.expected[name] = session.session_id
            session.send(
                pb.Task(
                    kind=pb.Task.EVALUATE,
                    round=ev.round,
                    model_version=ev.version,
                    deadline_seconds=max(0.0, ev.deadline - time.monotonic()),
                )
            )

    def session_for(self, name: str, session_id: str) -> Session:
        """The caller's live session, or a FAILED_PRECONDITION rejection."""
        with self._cond:
            s = self._sessions.current(name, session_id)
        if s is None:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION,
                "unknown_session",
                "session unknown or replaced by a newer one; join again",
            )
        return s

    def stream_ended(self, session: Session) -> None:
        """The participant's task stream ended (disconnect, replacement or job end)."""
        with self._cond:
            current = self._sessions.get(session.participant)
            session.close()
            if current is session:
                self._participant_state(session.participant, ParticipantState.DISCONNECTED)
            self._refresh_ready()
            self._publish()

    def wait_streams_ended(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every participant's task stream has ended, as they
        do once the job's DONE task went out; whether they all did."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._sessions.live(), timeout=timeout)

    def _refresh_ready(self) -> None:
        live = len(self._sessions.live())
        self.status.ready_participants = live
        self.metrics.participants_connected.set(live)

    # ----------------------------------------------------------------- models
    def model_bytes(self, version: str) -> bytes:
        """safetensors bytes of a version the coordinator serves."""
        with self._cond:
            data = self._served.get(version)
        if data is None:
            raise Rejected(
                grpc.StatusCode.NOT_FOUND,
                "unknown_version",
                f"model version {version!r} is not served",
            )
        return data

    # ----------------------------------------------------------------- updates
    def receive_update(
        self, session: Session, header: pb.UpdateHeader, chunks: Iterator[bytes]
    ) -> None:
        """Read, validate and fold one update; raises :class:`Rejected` when refused.

        A site's decryption of a CKKS aggregate goes to the secure exchange, every other upload
        to the update intake (:meth:`UpdateIntake.receive_update`).
        """
        if header.encoding == pb.DECRYPTED_AGGREGATE:
            self._secure.receive_decrypted(session, header, chunks, self._layout, self._global.size)
            return
        self._intake.receive_update(session, header, chunks)

    def leave(self, session: Session, request: pb.LeaveRequest) -> None:
        """A participant leaves for good (e.g. its privacy budget is spent); the job goes on
        without it while the quorum holds."""
        name = session.participant
        reason = request.reason if request.reason.isidentifier() else "ParticipantLeft"
        message = f"{name}: {request.message or 'left the job'}"
        with self._cond:
            eps = float(request.epsilon) if request.epsilon else None
            self._participant_state(
                name, ParticipantState.BUDGET_EXHAUSTED, epsilon_spent=eps, message=message
            )
            self.status.set_condition("Degraded", ConditionStatus.TRUE, reason, message)
            session.close()
            self._refresh_ready()
            self._publish()
        log.warning("%s", message)

    def rejected(self, reason: str) -> None:
        """Count a refused update or report in metrics and status."""
        self._intake.rejected(reason)

    def report_evaluation(self, session: Session, report: pb.EvaluationReport) -> None:
        """Fold one site's evaluation of the candidate model.

        A report refused for its content ends that site's part in the evaluation, as with
        updates, so the evaluation does not wait for it until the deadline.
        """
        metrics = dict(report.metrics)
        name = session.participant
        with self._cond:
            ev = self._eval
            open_ = ev is not None and (ev.round, ev.version) == (
                report.round,
                report.model_version,
            )
            check_asked(
                session, ev.expected if ev and open_ else None,
                answered=ev is not None and (name in ev.reports or name in ev.refused),
                what=f"evaluation of round {report.round}",
            )  # fmt: skip
            assert ev is not None
            problem = None
            if not 0 < report.num_samples <= session.validation_samples:
                problem = Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "bad_sample_count",
                    f"num_samples {report.num_samples} outside 1..{session.validation_samples}",
                )
            elif not all(math.isfinite(v) for v in metrics.values()):
                problem = Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "non_finite",
                    "evaluation metrics contain NaN or Inf",
                )
            if problem is not None:
                ev.refused.add(name)
                self._cond.notify_all()
                raise problem
            ev.add(name, int(report.num_samples), metrics)
            self._cond.notify_all()

    # ----------------------------------------------------------------- the job
    def run(self) -> FederatedJobStatus:
        """Drive the job to its end; returns the final status (Succeeded or Failed)."""
        try:
            done = self._resume()
            self._admit(resumed=done is not None)
            for number in range((done or 0) + 1, self.spec.rounds + 1):
                self._train_round(number)
            self._finish(
                Phase.SUCCEEDED,
                "Completed",
                f"{self.spec.rounds} rounds completed; model {self._global_version}",
            )
        except JobFailure as fail:
            log.error("job failed: %s", fail)
            self._finish(Phase.FAILED, fail.reason, str(fail))
        except Exception as err:
            log.exception("coordinator error")
            self._finish(Phase.FAILED, "InternalError", f"{type(err).__name__}: {err}")
        return self.status

    def _resume(self) -> int | None:
        """Pick up this run's last stored version after a coordinator restart.

        Returns the last completed round (0: only the initial model was stored), or None when
        this run stored nothing yet. Status rounds are rebuilt from the stored versions, so a
        round is never counted twice and no version is written again.
        """
        mine = [m for m in self._repo.list_versions(self.name) if m.run_id == self.run_id]
        if not mine:
            return None
        latest = mine[-1]
        weights = self._repo.read_weights(self.name, latest.version)
        self._layout, self._global = flatten(weights)
        # The server optimizer's moments (FedAdam, FedYogi, FedAdagrad) go on where they were.
        self._strategy.load_state(self._repo.read_server_state(self.name, latest.version))
        with self._cond:
            self._global_version = latest.version
            self._served = {latest.version: self._served_bytes(self._global)}
            previous = None
            for meta in mine:
                if meta.round > 0:
                    self._credit(meta)
                if meta.round > 0 and previous is not None:
                    self.status.add_round(
                        RoundStatus(
                            round=meta.round,
                            duration_seconds=_seconds_between(previous.created_at, meta.created_at),
                            metrics=meta.metrics,
                            model_version=meta.version,
                            participants=len(meta.participants),
                            samples=sum(p.samples for p in meta.participants),
                        )
                    )
                previous = meta
            self.status.current_round = latest.round
            if latest.round > 0:
                self.status.latest_model = ModelRef(
                    version=latest.version,
                    uri=self._repo.version_uri(self.name, latest.version),
                    round=latest.round,
                    sha256=latest.sha256,
                    metrics=latest.metrics,
                )
            self.status.set_condition(
                "Resumed",
                ConditionStatus.TRUE,
                "CoordinatorRestarted",
                f"resumed after round {latest.round} from {latest.version}",
            )
            self._publish()
        log.info("resuming run %s after round %d (%s)", self.run_id, latest.round, latest.version)
        return latest.round

    def _admit(self, resumed: bool = False) -> None:
        deadline = time.monotonic() + self.spec.join_timeout_seconds
        need = self.spec.min_participants
        with self._cond:
            self.status.start_time = utcnow()
            self._set_phase(Phase.WAITING, f"waiting for {need} participant(s)")
            self.status.set_condition(
                "Ready",
                ConditionStatus.FALSE,
                "WaitingForParticipants",
                f"0 of {need} participants connected",
            )
            self._publish()
            ok = self._cond.wait_for(
                lambda: len(self._sessions.live()) >= need,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            live = self._sessions.live()
            if not ok:
                raise JobFailure(
                    "JoinTimeout",
                    f"only {len(live)} of {need} participants joined within "
                    f"{self.spec.join_timeout_seconds:g}s",
                )
            total = sum(s.train_samples for s in live)
            fsum = sum((s.feature_sum for s in live), np.zeros(len(self.spec.data.features)))
            fsq = sum((s.feature_sum_sq for s in live), np.zeros(len(self.spec.data.features)))
        if not resumed:
            # The input standardization is fixed once per run, from the first admitted sites.
            mean = fsum / total
            std = np.sqrt(np.maximum(fsq / total - mean * mean, 0.0))
            weights = self._initial_weights(
                self.job, mean.astype(np.float32), std.astype(np.float32)
            )
            parent = None
            if self.spec.initial_model is not None:
                # Fine-tune from a stored model, keeping its own input standardization: its
                # weights were trained on that scale.
                try:
                    loaded = load_model_ref(
                        self.spec.initial_model, self._repo, self.name, expected=weights
                    )
                except RepositoryError as err:
                    raise JobFailure("InitialModelInvalid", str(err)) from err
                weights = loaded.weights
                parent = loaded.metadata.version if loaded.same_job else None
            self._layout, self._global = flatten(weights)
            meta = self._store(0, parent, {}, {}, [])
            with self._cond:
                self._global_version = meta.version
                self._served = {meta.version: self._served_bytes(self._global)}
        with self._cond:
            self._set_phase(Phase.TRAINING, None)
            self.status.set_condition(
                "Ready",
                ConditionStatus.TRUE,
                "ParticipantsJoined",
                f"{len(self._sessions.live())} participants connected",
            )
            self.status.set_condition(
                "Training", ConditionStatus.TRUE, "RoundsRunning", f"0 of {self.spec.rounds} rounds"
            )
            self._publish()

    def _served_bytes(self, flat: F32) -> bytes:
        return to_safetensors_bytes(unflatten(self._layout, flat))

    def _store(
        self,
        round_number: int,
        parent: str | None,
        metrics: dict[str, float],
        train_metrics: dict[str, float],
        participants: list[ParticipantContribution],
        flat: F32 | None = None,
        encoded: bytes | None = None,
    ) -> VersionMetadata:
        weights = unflatten(self._layout, self._global if flat is None else flat)
        return self._repo.write_version(
            self.name,
            weights,
            NewVersion(
                round=round_number,
                parent_version=parent,
                metrics=metrics,
                train_metrics=train_metrics,
                participants=participants,
                strategy=self._strategy.name,
                run_id=self.run_id,
            ),
            server_state=self._strategy.state(),
            encoded=encoded,
        )

    def _train_task(self, rnd: TrainRound, name: str) -> pb.Task:
        return pb.Task(
            kind=pb.Task.TRAIN,
            round=rnd.number,
            model_version=rnd.base_version,
            deadline_seconds=max(0.0, rnd.deadline - time.monotonic()),
            payload=rnd.payloads.get(name, b""),
            weight=rnd.weights.get(name, 0.0),
        )

    def _round_done(self, rnd: TrainRound) -> bool:
        """Closed early when every selected participant still connected has answered."""
        waiting = [
            n for n in rnd.pending() if self._sessions.current(n, rnd.selected[n]) is not None
        ]
        return len(rnd.received) >= self.spec.quorum and not waiting

    def _train_round(self, number: int) -> None:
        quorum = self.spec.quorum
        timeout = self.spec.round_timeout_seconds
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._cond.wait_for(
                lambda: len(self._sessions.live()) >= quorum, timeout=timeout
            ):
                raise JobFailure(
                    "QuorumLost",
                    f"round {number}: only "
                    f"{len(self._sessions.live())} participants connected, "
                    f"quorum is {quorum}",
                )
            selected = {s.participant: s.session_id for s in self._sessions.live()}
            self.status.current_round = number
            self.metrics.current_round.set(number)
            self._publish()
        aggregation, weights, payloads = self._round_aggregation(number, selected, deadline)
        with self._cond:
            if payloads:  # secure setup: only the sites that completed it train
                selected = {n: sid for n, sid in selected.items() if n in payloads}
            rnd = TrainRound(
                number=number,
                base_version=self._global_version,
                deadline=deadline,
                aggregation=aggregation,
                selected=selected,
                weights=weights,
                payloads=payloads,
            )
            self._round = rnd
            for name, sid in selected.items():
                session = self._sessions.current(name, sid)
                if session is not None:
                    session.send(self._train_task(rnd, name))
                    self._participant_state(name, ParticipantState.TRAINING)
            self._publish()
            self._cond.wait_for(
                lambda: self._round_done(rnd), timeout=max(0.0, deadline - time.monotonic())
            )
            rnd.closed = True
            received = dict(rnd.received)
            if len(received) < quorum:
                raise JobFailure(
                    "RoundFailed",
                    f"round {number}: {len(received)} of {quorum} required updates before the "
                    f"{timeout:g}s deadline",
                )
        candidate = self._round_candidate(rnd)
        if not np.isfinite(candidate).all():
            raise JobFailure("RoundFailed", f"round {number}: aggregate is not finite")
        metrics = self._evaluate(number, candidate)
        total = sum(received.values())
        train_metrics = {"loss": rnd.train_loss_sum / total} if rnd.train_loss_sum else {}
        meta = self._store(
            number,
            self._global_version,
            metrics,
            train_metrics,
            [ParticipantContribution(name=n, samples=k) for n, k in sorted(received.items())],
            flat=candidate,
            # The candidate was encoded once already, to be served for evaluation.
            encoded=self._served.get(f"candidate-r{number}"),
        )
        duration = time.monotonic() - rnd.started
        with self._cond:
            self._global = candidate
            self._global_version = meta.version
            # The candidate's bytes, served for evaluation, are the new version's: no re-encode.
            served = self._served.get(f"candidate-r{number}") or self._served_bytes(candidate)
            self._served = {meta.version: served}
            self.status.add_round(
                RoundStatus(
                    round=number,
                    duration_seconds=round(duration, 3),
                    metrics=metrics,
                    model_version=meta.version,
                    participants=len(received),
                    samples=total,
                )
            )
            self.status.latest_model = ModelRef(
                version=meta.version,
                uri=self._repo.version_uri(self.name, meta.version),
                round=number,
                sha256=meta.sha256,
                metrics=metrics,
            )
            self._credit(meta)
            self.status.set_condition(
                "Training",
                ConditionStatus.TRUE,
                "RoundsRunning",
                f"{number} of {self.spec.rounds} rounds",
            )
            self.metrics.rounds_completed.inc()
            self.metrics.round_duration.observe(duration)
            self._round = None
            self._publish()

    # ----------------------------------------------------------------- aggregation
    def _round_aggregation(
        self, number: int, selected: dict[str, str], deadline: float
    ) -> RoundSetup:
        """The round's aggregation; secure modes run their set-up steps with the sites here."""
        mode = self.spec.privacy.secure_aggregation.mode
        if mode is SecureAggregationMode.MASKING:
            return self._secure.masked_setup(number, selected, deadline, self._global.size)
        if mode is SecureAggregationMode.CKKS:
            return self._secure.ckks_setup(selected, self._global.size)
        clip = self.spec.privacy.dp.max_grad_norm if self._central is not None else None
        return PlainAggregation(self._strategy, self._layout, self._global.size, clip), {}, {}

    def _round_candidate(self, rnd: TrainRound) -> F32:
        """The next global weights from the round's aggregation."""
        agg = rnd.aggregation
        if isinstance(agg, PlainAggregation):
            if self._central is None:
                return agg.candidate(self._global)
            sigma = float(self.spec.privacy.dp.noise_multiplier or 0.0)
            candidate = agg.noisy_candidate(self._global, sigma, np.random.default_rng())
            self._central.step()
            with self._cond:
                self.status.epsilon_spent = self._central.epsilon()
                self.status.delta = self._central.delta
            return candidate
        if isinstance(agg, CkksAggregation):
            return self._secure.ckks_candidate(rnd, agg, self._global, self._served)
        assert isinstance(agg, MaskedAggregation)
        return self._secure.masked_candidate(rnd, agg, self._global)

    def submit_privacy(self, session: Session, message: pb.PrivacyMessage) -> None:
        """A site's answer to the open secure-aggregation step."""
        self._secure.submit(session, message)

    def _evaluate(self, number: int, candidate: F32) -> dict[str, float]:
        """Ask every connected site to evaluate the candidate on its validation split."""
        version = f"candidate-r{number}"
        data = self._served_bytes(candidate)
        with self._cond:
            self._served[version] = data
            live = self._sessions.live()
            deadline = time.monotonic() + self.spec.round_timeout_seconds
            ev = Evaluation(
                round=number,
                version=version,
                deadline=deadline,
                expected={s.participant: s.session_id for s in live},
            )
            self._eval = ev
            for s in live:
                s.send(
                    pb.Task(
                        kind=pb.Task.EVALUATE,
                        round=number,
                        model_version=version,
                        deadline_seconds=self.spec.round_timeout_seconds,
                    )
                )

            def done() -> bool:
                return not [
                    n
                    for n in ev.waiting_for()
                    if self._sessions.current(n, ev.expected[n]) is not None
                ]

            self._cond.wait_for(done, timeout=self.spec.round_timeout_seconds)
            self._eval = None
            return ev.means()

    def _finish(self, phase: Phase, reason: str, message: str) -> None:
        with self._cond:
            self._round = None
            self._eval = None
            self._set_phase(phase, message)
            self.status.completion_time = utcnow()
            ok = phase is Phase.SUCCEEDED
            self.status.set_condition(
                "Complete" if ok else "Failed", ConditionStatus.TRUE, reason, message
            )
            self.status.set_condition("Training", ConditionStatus.FALSE, reason, message)
            done = pb.Task(kind=pb.Task.DONE, succeeded=ok, message=message)
            for s in self._sessions.live():
                s.send(done)
            self.finished.set()
            self._publish()


def _seconds_between(start: str, end: str) -> float:
    """Seconds between two RFC 3339 timestamps (0 when either does not parse)."""
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (b - a).total_seconds())
