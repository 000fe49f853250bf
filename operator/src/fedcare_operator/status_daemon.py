"""Status: from the coordinator's WatchStatus stream onto the resources' ``.status``.

One daemon per FederatedJob (:func:`follow`, started by kopf) runs a :class:`StatusFollower` in
its own thread: it dials the job's coordinator over mutual TLS with the operator's observer
certificate, and on every status the coordinator sends it

- merges it into the FederatedJob's ``.status`` (:func:`merge_job_status`: conditions through
  ``set_condition``, rounds keyed by round number so a replayed round is never counted twice,
  ``observedGeneration``), and
- derives each Participant's ``.status`` (:func:`participant_resource_status`).

When the stream breaks (coordinator restarted, pod rescheduled) it reconnects with backoff; once
it had reached the coordinator, it marks the job ``Degraded`` until it is back. It ends when the
job ends, when the FederatedJob is deleted, or when kopf sets ``stopped``.

The pure functions at the top are what the handlers use too (initial and invalid-spec status).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc
from pydantic import ValidationError

from fedcare.errors import FedcareError
from fedcare.spec import (
    ConditionStatus,
    FederatedJob,
    FederatedJobStatus,
    ParticipantPhase,
    ParticipantResourceStatus,
    ParticipantState,
    ParticipantStatus,
    Phase,
    TlsFiles,
)
from fedcare.spec.status import MAX_ROUND_HISTORY, utcnow
from fedcare.transport import make_mtls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc
from fedcare_operator import builders, conditions
from fedcare_operator.builders import JsonDict
from fedcare_operator.kube import Kube, KubeError
from fedcare_operator.reconcile import Context, NotReadyYet

log = logging.getLogger("fedcare.operator.status")

#: Seconds between reconnection attempts (the last one repeats).
DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED})
_FJ_API = f"{builders.GROUP}/{builders.VERSION}"

#: Status fields merged rather than copied from the coordinator's report.
_MERGED_FIELDS = frozenset(
    {"conditions", "rounds", "latest_model", "start_time", "observed_generation"}
)

_STATE_PHASE = {
    ParticipantState.PENDING: ParticipantPhase.PENDING,
    ParticipantState.CONNECTED: ParticipantPhase.CONNECTED,
    ParticipantState.TRAINING: ParticipantPhase.TRAINING,
    ParticipantState.DISCONNECTED: ParticipantPhase.DISCONNECTED,
}


# --------------------------------------------------------------------------------------------
# Pure status functions


def parse_job_status(raw: Mapping[str, Any] | None) -> FederatedJobStatus:
    """A FederatedJob's ``.status`` as the model (a fresh one when absent or unreadable)."""
    if not raw:
        return FederatedJobStatus()
    try:
        return FederatedJobStatus.model_validate(dict(raw))
    except ValidationError:
        log.warning("unreadable FederatedJob status; starting from an empty one")
        return FederatedJobStatus()


def parse_participant_status(raw: Mapping[str, Any] | None) -> ParticipantResourceStatus:
    """A Participant's ``.status`` as the model (a fresh one when absent or unreadable)."""
    if not raw:
        return ParticipantResourceStatus()
    try:
        return ParticipantResourceStatus.model_validate(dict(raw))
    except ValidationError:
        log.warning("unreadable Participant status; starting from an empty one")
        return ParticipantResourceStatus()


def pending_status(
    current: Mapping[str, Any] | None, job: FederatedJob, generation: int | None
) -> FederatedJobStatus:
    """The status after the operator created a job's children (the coordinator takes over)."""
    status = parse_job_status(current)
    if status.phase is Phase.FAILED and any(
        c.reason == conditions.INVALID_SPEC for c in status.conditions
    ):
        # The spec was fixed: start over.
        status = FederatedJobStatus()
    status.total_rounds = job.spec.rounds
    status.min_participants = job.spec.min_participants
    status.observed_generation = generation
    if not any(c.type == conditions.READY for c in status.conditions):
        status.message = "coordinator starting"
        status.set_condition(
            conditions.READY,
            ConditionStatus.FALSE,
            conditions.CHILDREN_CREATED,
            "coordinator and trainers created; waiting for the coordinator",
            observed_generation=generation,
        )
    return status


def invalid_spec_status(
    current: Mapping[str, Any] | None, message: str, generation: int | None
) -> FederatedJobStatus:
    """The status of a job whose spec fedcare refuses: Failed, reason InvalidSpec."""
    status = parse_job_status(current)
    status.phase = Phase.FAILED
    status.message = message
    status.observed_generation = generation
    status.set_condition(
        conditions.FAILED,
        ConditionStatus.TRUE,
        conditions.INVALID_SPEC,
        message,
        observed_generation=generation,
    )
    return status


def merge_job_status(
    current: FederatedJobStatus, reported: FederatedJobStatus, generation: int | None
) -> FederatedJobStatus:
    """``current`` (the resource's status) updated with what the coordinator ``reported``.

    Rounds are keyed by round number (a round the coordinator reports again after a reconnect
    or a resume replaces its entry instead of adding one), the last ``MAX_ROUND_HISTORY`` kept.
    Conditions go through ``set_condition``; operator-only conditions (Degraded) stay.
    """
    merged = current.model_copy(deep=True)
    # Every other field (phase, rounds in progress, participants, privacy spend, ...) is the
    # coordinator's to report, including fields added to the status model later.
    for name in type(reported).model_fields:
        if name not in _MERGED_FIELDS:
            setattr(merged, name, copy.deepcopy(getattr(reported, name)))
    merged.start_time = reported.start_time or current.start_time
    if reported.latest_model is not None:
        merged.latest_model = reported.latest_model
    by_round = {r.round: r for r in current.rounds}
    by_round.update({r.round: r for r in reported.rounds})
    merged.rounds = [by_round[n] for n in sorted(by_round)][-MAX_ROUND_HISTORY:]
    for cond in reported.conditions:
        merged.set_condition(
            cond.type, cond.status, cond.reason, cond.message, observed_generation=generation
        )
    merged.observed_generation = generation
    return merged


def participant_resource_status(
    current: ParticipantResourceStatus,
    entry: ParticipantStatus | None,
    job: FederatedJobStatus,
    generation: int | None,
    now: str,
) -> ParticipantResourceStatus:
    """A Participant's ``.status`` from its entry in the job's status (``None``: not listed)."""
    new = current.model_copy(deep=True)
    new.observed_generation = generation
    if entry is not None:
        new.phase = _STATE_PHASE[entry.state]
        new.message = None
        if entry.state in (ParticipantState.CONNECTED, ParticipantState.TRAINING):
            new.set_condition(
                conditions.READY,
                ConditionStatus.TRUE,
                conditions.JOINED,
                "the trainer joined the coordinator",
                generation,
            )
        elif entry.state is ParticipantState.DISCONNECTED:
            new.set_condition(
                conditions.READY,
                ConditionStatus.FALSE,
                conditions.DISCONNECTED,
                "the trainer lost its coordinator connection",
                generation,
            )
        if entry.samples:
            new.samples = entry.samples
        if entry.epsilon_spent is not None:
            new.epsilon_spent = entry.epsilon_spent
        # The coordinator's own count (it recounts from the stored versions after a restart);
        # counting changes here would miss rounds whenever two arrive in one status event.
        new.rounds_completed = max(current.rounds_completed, entry.rounds_contributed)
        new.last_round = max(current.last_round, entry.last_round)
    if job.phase is Phase.SUCCEEDED:
        new.phase = ParticipantPhase.SUCCEEDED
        new.message = None
    elif job.phase is Phase.FAILED:
        new.phase = ParticipantPhase.FAILED
        new.message = f"the job failed: {job.message}" if job.message else "the job failed"
    seen = entry is not None and entry.state in (
        ParticipantState.CONNECTED,
        ParticipantState.TRAINING,
    )
    unchanged = new.model_copy(update={"last_seen": current.last_seen}) == current
    if seen and (not unchanged or current.last_seen is None):
        new.last_seen = now
    return new


# --------------------------------------------------------------------------------------------
# Where statuses go


class JobGone(Exception):
    """The FederatedJob was deleted: nothing left to follow."""


class StatusSink(Protocol):
    """Reads and writes the statuses of one job and its Participants."""

    def read_job(self) -> FederatedJobStatus:
        """The job's current ``.status`` (raises :class:`JobGone` when the job is deleted)."""

    def write_job(self, status: FederatedJobStatus) -> None:
        """Write the job's ``.status``."""

    def participants(self) -> dict[str, tuple[str, ParticipantResourceStatus]]:
        """The job's Participants: site identity -> (object name, current ``.status``)."""

    def write_participant(self, name: str, status: ParticipantResourceStatus) -> None:
        """Write a Participant's ``.status``."""


class KubeStatusSink:
    """:class:`StatusSink` on the API server."""

    def __init__(self, kube: Kube, namespace: str, job: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._job = job

    def read_job(self) -> FederatedJobStatus:
        """The job's current ``.status``."""
        body = self._kube.get(_FJ_API, "FederatedJob", self._namespace, self._job)
        if body is None:
            raise JobGone(f"FederatedJob {self._namespace}/{self._job} was deleted")
        return parse_job_status(body.get("status"))

    def write_job(self, status: FederatedJobStatus) -> None:
        """Write the job's ``.status``."""
        try:
            self._kube.patch_status(
                _FJ_API, "FederatedJob", self._namespace, self._job, status.to_json_dict()
            )
        except KubeError as err:
            if err.not_found:
                raise JobGone(f"FederatedJob {self._namespace}/{self._job} was deleted") from None
            raise

    def participants(self) -> dict[str, tuple[str, ParticipantResourceStatus]]:
        """Participants of this job in its namespace, by site identity."""
        out: dict[str, tuple[str, ParticipantResourceStatus]] = {}
        for obj in self._kube.list(_FJ_API, "Participant", self._namespace):
            if ((obj.get("spec") or {}).get("job") or {}).get("name") != self._job:
                continue
            ident = builders.site_identity(obj)
            out[ident] = (obj["metadata"]["name"], parse_participant_status(obj.get("status")))
        return out

    def write_participant(self, name: str, status: ParticipantResourceStatus) -> None:
        """Write a Participant's ``.status`` (a deleted one is skipped)."""
        try:
            self._kube.patch_status(
                _FJ_API, "Participant", self._namespace, name, status.to_json_dict()
            )
        except KubeError as err:
            if not err.not_found:
                raise


# --------------------------------------------------------------------------------------------
# The follower


class StatusFollower:
    """Follows one coordinator's status stream into a :class:`StatusSink` (blocking).

    ``on_status`` sees every merged job status (the operator's metrics), ``on_gone`` is called
    when the job turns out to be deleted.
    """

    def __init__(
        self,
        sink: StatusSink,
        open_channel: Callable[[], grpc.Channel],
        generation: Callable[[], int | None] = lambda: None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        name: str = "",
        on_status: Callable[[FederatedJobStatus], None] | None = None,
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        self._sink = sink
        self._on_status = on_status
        self._on_gone = on_gone
        self._open_channel = open_channel
        self._generation = generation
        self._backoff = tuple(backoff) or (1.0,)
        self._name = name
        self._lock = threading.Lock()
        self._call: Any = None
        self._cancelled = False
        self._degraded = False
        #: Status events applied (for tests and logs).
        self.events = 0
        #: Streams opened successfully (1 + reconnections).
        self.connections = 0

    def cancel(self) -> None:
        """Cancel the stream in progress (from another thread); :meth:`run` then returns."""
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()

    def run(self, stop: threading.Event) -> Phase | None:
        """Follow until the job ends (its final phase), it is deleted or ``stop`` is set (None)."""
        attempt = 0
        reached = False
        while not stop.is_set():
            channel: grpc.Channel | None = None
            error = ""
            try:
                channel = self._open_channel()
                stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
                call = stub.WatchStatus(pb.WatchRequest())
                with self._lock:
                    self._call = call
                    if self._cancelled or stop.is_set():
                        call.cancel()
                counted = False
                for event in call:
                    if not counted:
                        self.connections += 1
                        counted = True
                    reported = FederatedJobStatus.model_validate_json(event.status_json)
                    self._apply(reported)
                    reached = True
                    attempt = 0
                    if reported.phase in TERMINAL:
                        log.info("job %s ended: %s", self._name, reported.phase.value)
                        return reported.phase
                error = "the status stream ended before the job did"
            except grpc.RpcError as err:
                if stop.is_set() or self._cancelled:
                    break
                code = err.code() if isinstance(err, grpc.Call) else None
                details = err.details() if isinstance(err, grpc.Call) else str(err)
                error = f"{code.name if code else 'error'}: {details}"
            except JobGone:
                log.info("job %s was deleted; stop following it", self._name)
                if self._on_gone is not None:
                    self._on_gone()
                return None
            except (KubeError, NotReadyYet, FedcareError, ValidationError, OSError) as err:
                error = f"{type(err).__name__}: {err}"
            finally:
                with self._lock:
                    self._call = None
                if channel is not None:
                    channel.close()
            if stop.is_set() or self._cancelled:
                break
            if reached and not self._degraded:
                with contextlib.suppress(KubeError, JobGone):
                    self._mark(conditions.DEGRADED, ConditionStatus.TRUE, error)
                    self._degraded = True
            delay = self._backoff[min(attempt, len(self._backoff) - 1)]
            log.debug("job %s: status stream: %s; retrying in %gs", self._name, error, delay)
            attempt += 1
            stop.wait(delay)
        return None

    def _mark(self, type_: str, status: ConditionStatus, message: str) -> None:
        current = self._sink.read_job()
        reason = (
            conditions.COORDINATOR_UNREACHABLE
            if status is ConditionStatus.TRUE
            else conditions.COORDINATOR_REACHABLE
        )
        current.set_condition(type_, status, reason, message, self._generation())
        self._sink.write_job(current)

    def _apply(self, reported: FederatedJobStatus) -> None:
        generation = self._generation()
        current = self._sink.read_job()
        merged = merge_job_status(current, reported, generation)
        if self._degraded:
            merged.set_condition(
                conditions.DEGRADED,
                ConditionStatus.FALSE,
                conditions.COORDINATOR_REACHABLE,
                "the status stream is live again",
                generation,
            )
            self._degraded = False
        if merged != current:
            self._sink.write_job(merged)
        if self._on_status is not None:
            self._on_status(merged)
        entries = {p.name: p for p in merged.participants}
        now = utcnow()
        for ident, (obj_name, cur) in self._sink.participants().items():
            new = participant_resource_status(cur, entries.get(ident), merged, generation, now)
            if new != cur:
                self._sink.write_participant(obj_name, new)
        self.events += 1


# --------------------------------------------------------------------------------------------
# The kopf daemon's body


class _ObserverChannel:
    """Opens mTLS channels to a job's coordinator with the operator's observer certificate."""

    def __init__(self, ctx: Context, namespace: str, job: str) -> None:
        self._ctx = ctx
        self._namespace = namespace
        self._job = job
        self._dir: Path | None = None

    def __call__(self) -> grpc.Channel:
        secret = self._ctx.kube.get(
            "v1", "Secret", self._namespace, builders.observer_secret_name(self._job)
        )
        if secret is None:
            raise NotReadyYet("the operator's observer certificate is not created yet")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"fedcare-observer-{self._job}-"))
        files = {}
        for key in ("ca.crt", "tls.crt", "tls.key"):
            path = self._dir / key
            path.touch(mode=0o600)
            path.write_bytes(builders.secret_bytes(secret, key))
            files[key] = str(path)
        tls = TlsFiles(ca=files["ca.crt"], cert=files["tls.crt"], key=files["tls.key"])
        settings = self._ctx.settings
        endpoint = settings.endpoint_for(
            self._job, self._namespace, builders.coordinator_name(self._job), builders.GRPC_PORT
        )
        return make_mtls_channel(endpoint, tls, builders.service_host(self._job, self._namespace))

    def close(self) -> None:
        """Remove the certificate files."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class Stopped(Protocol):
    """What kopf passes as ``stopped`` to an async daemon."""

    def wait(self, timeout: float | None = None) -> Any:
        """An awaitable that resolves once the daemon should stop."""


async def follow(
    ctx: Context,
    namespace: str,
    name: str,
    stopped: Stopped,
    generation: Callable[[], int | None],
    backoff: Sequence[float] = DEFAULT_BACKOFF,
) -> Phase | None:
    """Follow job ``namespace/name`` until it ends, is deleted, or ``stopped`` is set."""
    channel = _ObserverChannel(ctx, namespace, name)
    follower = StatusFollower(
        KubeStatusSink(ctx.kube, namespace, name),
        channel,
        generation=generation,
        backoff=backoff,
        name=f"{namespace}/{name}",
        on_status=lambda status: ctx.metrics.observe(namespace, name, status),
        on_gone=lambda: ctx.metrics.forget(namespace, name),
    )
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Phase | None] = loop.create_future()

    def settle(result: Phase | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def target() -> None:
        try:
            result = follower.run(stop)
        except BaseException as err:  # noqa: BLE001 - handed to the daemon's task
            loop.call_soon_threadsafe(settle, None, err)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    thread = threading.Thread(target=target, name=f"fedcare-status-{namespace}-{name}", daemon=True)
    thread.start()
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        follower.cancel()
        stopping.cancel()
        await asyncio.wait({done}, timeout=10)
        channel.close()
    return done.result() if done.done() else None


def status_patch(status: FederatedJobStatus) -> JsonDict:
    """The wire form of a job status, for ``patch.status`` in handlers."""
    return status.to_json_dict()


__all__ = [
    "DEFAULT_BACKOFF",
    "JobGone",
    "KubeStatusSink",
    "StatusFollower",
    "StatusSink",
    "follow",
    "invalid_spec_status",
    "merge_job_status",
    "parse_job_status",
    "parse_participant_status",
    "participant_resource_status",
    "pending_status",
    "status_patch",
]
