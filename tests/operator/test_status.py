"""Status: the pure merge functions, and the follower against a real (fake) coordinator stream.

The follower test serves the real ``fedcare.v1.Coordinator`` WatchStatus RPC over mutual TLS
(certificates from the job's PKI), stops that server mid-job and starts another on the same port,
as a coordinator restart; the follower reconnects and no round is counted twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedcare.pki import ROLE_OBSERVER, create_ca, issue_client_cert, issue_server_cert
from fedcare.spec import (
    ConditionStatus,
    FederatedJob,
    FederatedJobStatus,
    ModelRef,
    ParticipantPhase,
    ParticipantResourceStatus,
    ParticipantState,
    ParticipantStatus,
    Phase,
    RoundStatus,
    TlsFiles,
)
from fedcare.transport import add_mtls_port, make_mtls_channel, make_server
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc
from fedcare_operator import conditions
from fedcare_operator.status_daemon import (
    StatusFollower,
    invalid_spec_status,
    merge_job_status,
    participant_resource_status,
    pending_status,
)
from tests.support.operator import free_port


def _round(n: int) -> RoundStatus:
    return RoundStatus(round=n, duration_seconds=1.0, metrics={"auroc": 0.7}, model_version=f"v{n}")


def _reported(phase: Phase, rounds: list[int], **kw: Any) -> FederatedJobStatus:
    status = FederatedJobStatus(
        phase=phase,
        total_rounds=3,
        current_round=max(rounds, default=0),
        rounds=[_round(n) for n in rounds],
        participants=[
            ParticipantStatus(name="st-mary", state=ParticipantState.CONNECTED, samples=100)
        ],
        **kw,
    )
    if rounds:
        status.latest_model = ModelRef(
            version=f"v{max(rounds)}", uri="file://m", round=max(rounds), sha256="0" * 64
        )
    status.set_condition("Ready", ConditionStatus.TRUE, "ParticipantsJoined", "ok")
    return status


def test_merge_keys_rounds_by_number_and_keeps_transition_times() -> None:
    current = _reported(Phase.TRAINING, [1, 2])
    current.conditions[0].last_transition_time = "2026-01-01T00:00:00Z"
    current.set_condition(conditions.DEGRADED, ConditionStatus.FALSE, "CoordinatorReachable")
    again = merge_job_status(current, _reported(Phase.TRAINING, [2, 3]), generation=4)
    assert [r.round for r in again.rounds] == [1, 2, 3]
    assert again.observed_generation == 4 and again.current_round == 3
    ready = {c.type: c for c in again.conditions}["Ready"]
    assert ready.last_transition_time == "2026-01-01T00:00:00Z"  # same status: not moved
    assert ready.observed_generation == 4
    assert conditions.DEGRADED in {c.type for c in again.conditions}  # operator's own stays
    # A restarted coordinator that has not stored a version yet does not erase latestModel.
    fresh = merge_job_status(again, _reported(Phase.WAITING, []), generation=4)
    assert fresh.latest_model is not None and fresh.latest_model.version == "v3"
    assert [r.round for r in fresh.rounds] == [1, 2, 3]
    private = _reported(Phase.TRAINING, [3], epsilon_spent=1.5, delta=1e-5)
    spent = merge_job_status(again, private, 4)
    assert (spent.epsilon_spent, spent.delta) == (1.5, 1e-5)  # privacy spend is carried over
    many = merge_job_status(again, _reported(Phase.TRAINING, list(range(1, 40))), 4)
    assert [r.round for r in many.rounds] == list(range(20, 40))


def test_pending_and_invalid_spec_statuses() -> None:
    job = FederatedJob.model_validate(
        {
            "metadata": {"name": "j"},
            "spec": {"data": {"features": ["a"], "label": "y"}, "rounds": 7},
        }
    )
    failed = invalid_spec_status(None, "spec.rounds: bad", generation=2)
    cond = {c.type: c for c in failed.conditions}["Failed"]
    assert failed.phase is Phase.FAILED and cond.reason == conditions.INVALID_SPEC
    assert cond.message == "spec.rounds: bad" and cond.observed_generation == 2
    fixed = pending_status(failed.to_json_dict(), job, generation=3)
    assert fixed.phase is Phase.PENDING and fixed.total_rounds == 7
    assert {c.type: c.reason for c in fixed.conditions} == {"Ready": "ChildrenCreated"}


def test_participant_status_counts_each_round_once() -> None:
    """roundsCompleted is the coordinator's count: replays do not add, a jump of several rounds
    in one event (or after a coordinator restart) is taken as is, and it never goes back."""
    job = _reported(Phase.TRAINING, [1])
    entry = ParticipantStatus(
        name="st-mary",
        state=ParticipantState.CONNECTED,
        last_round=1,
        rounds_contributed=1,
        samples=80,
        epsilon_spent=0.4,
    )
    first = participant_resource_status(
        ParticipantResourceStatus(), entry, job, 1, "2026-01-01T00:00:00Z"
    )
    assert (first.phase, first.rounds_completed, first.samples) == (
        ParticipantPhase.CONNECTED,
        1,
        80,
    )
    assert first.last_seen == "2026-01-01T00:00:00Z" and first.epsilon_spent == 0.4
    assert {c.type: c.reason for c in first.conditions} == {"Ready": "Joined"}
    replay = participant_resource_status(first, entry, job, 1, "2026-01-01T00:05:00Z")
    assert replay == first  # nothing changed: no write, lastSeen not bumped
    done = participant_resource_status(
        first, entry, _reported(Phase.SUCCEEDED, [1]), 1, "2026-01-01T00:06:00Z"
    )
    assert done.phase is ParticipantPhase.SUCCEEDED and done.rounds_completed == 1
    jump = entry.model_copy(update={"last_round": 4, "rounds_contributed": 3})
    later = participant_resource_status(first, jump, job, 1, "2026-01-01T00:07:00Z")
    assert (later.rounds_completed, later.last_round) == (3, 4)  # it sat out one round
    restarted = entry.model_copy(update={"last_round": 0, "rounds_contributed": 0})
    kept = participant_resource_status(later, restarted, job, 1, "2026-01-01T00:08:00Z")
    assert (kept.rounds_completed, kept.last_round) == (3, 4)
    gone = participant_resource_status(
        first, None, _reported(Phase.FAILED, [1], message="QuorumLost"), 1, "t"
    )
    assert gone.phase is ParticipantPhase.FAILED and "QuorumLost" in str(gone.message)


class _MemorySink:
    def __init__(self) -> None:
        self.job = FederatedJobStatus()
        self.parts = {"st-mary": ("j-st-mary", ParticipantResourceStatus())}
        self.job_writes: list[FederatedJobStatus] = []

    def read_job(self) -> FederatedJobStatus:
        return self.job.model_copy(deep=True)

    def write_job(self, status: FederatedJobStatus) -> None:
        self.job = status.model_copy(deep=True)
        self.job_writes.append(self.job)

    def participants(self) -> dict[str, tuple[str, ParticipantResourceStatus]]:
        return dict(self.parts)

    def write_participant(self, name: str, status: ParticipantResourceStatus) -> None:
        self.parts["st-mary"] = (name, status)


class _Coordinator(pb_grpc.CoordinatorServicer):
    """WatchStatus only: yields ``events``, then holds the stream open until released."""

    def __init__(self, events: list[FederatedJobStatus]) -> None:
        self.events = events
        self.release = threading.Event()

    def WatchStatus(  # noqa: N802 - the RPC's name
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StatusEvent]:
        for status in self.events:
            yield pb.StatusEvent(status_json=status.model_dump_json(by_alias=True))
        self.release.wait(10)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TlsFiles, TlsFiles]:
    ca = create_ca(tmp_path, "j")
    server = issue_server_cert(ca, tmp_path / "s", sans=("j-coordinator.default.svc",))
    observer = issue_client_cert(ca, tmp_path / "o", "fedcare-operator", role=ROLE_OBSERVER)
    return (
        TlsFiles(ca=str(ca.cert), cert=str(server.cert), key=str(server.key)),
        TlsFiles(ca=str(ca.cert), cert=str(observer.cert), key=str(observer.key)),
    )


def _serve(servicer: _Coordinator, port: int, tls: TlsFiles) -> grpc.Server:
    server = make_server(max_workers=4)
    pb_grpc.add_CoordinatorServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    assert add_mtls_port(server, f"127.0.0.1:{port}", tls) == port
    server.start()
    return server


def test_follower_reconnects_after_a_coordinator_restart(pki: tuple[TlsFiles, TlsFiles]) -> None:
    server_tls, observer_tls = pki
    port = free_port()
    sink = _MemorySink()
    first = _Coordinator([_reported(Phase.TRAINING, [1]), _reported(Phase.TRAINING, [1, 2])])
    server = _serve(first, port, server_tls)
    follower = StatusFollower(
        sink,
        lambda: make_mtls_channel(f"127.0.0.1:{port}", observer_tls, "j-coordinator.default.svc"),
        generation=lambda: 1,
        backoff=(0.05, 0.1),
        name="default/j",
    )
    stop = threading.Event()
    result: list[Phase | None] = []
    thread = threading.Thread(target=lambda: result.append(follower.run(stop)))
    thread.start()
    try:
        for _ in range(200):
            if len(sink.job.rounds) == 2:
                break
            threading.Event().wait(0.02)
        assert [r.round for r in sink.job.rounds] == [1, 2]
        server.stop(grace=None).wait()  # the coordinator goes away mid-job
        for _ in range(200):
            if any(c.type == conditions.DEGRADED for c in sink.job.conditions):
                break
            threading.Event().wait(0.02)
        degraded = {c.type: c for c in sink.job.conditions}[conditions.DEGRADED]
        assert degraded.status is ConditionStatus.TRUE
        # It comes back (resumed: it reports rounds 1-2 again, then 3 and the end).
        second = _Coordinator(
            [_reported(Phase.TRAINING, [1, 2]), _reported(Phase.SUCCEEDED, [1, 2, 3])]
        )
        server = _serve(second, port, server_tls)
        thread.join(10)
        assert result == [Phase.SUCCEEDED]
    finally:
        stop.set()
        follower.cancel()
        first.release.set()
        server.stop(grace=None)
        thread.join(5)
    assert follower.connections == 2
    assert [r.round for r in sink.job.rounds] == [1, 2, 3]
    degraded = {c.type: c for c in sink.job.conditions}[conditions.DEGRADED]
    assert (degraded.status, degraded.reason) == (ConditionStatus.FALSE, "CoordinatorReachable")
    _, part = sink.parts["st-mary"]
    assert part.phase is ParticipantPhase.SUCCEEDED and part.samples == 100


def test_follower_stops_when_told(pki: tuple[TlsFiles, TlsFiles]) -> None:
    """``stop`` (kopf's ``stopped``) ends a follower blocked on an open stream at once."""
    server_tls, observer_tls = pki
    port = free_port()
    coordinator = _Coordinator([_reported(Phase.TRAINING, [1])])
    server = _serve(coordinator, port, server_tls)
    sink = _MemorySink()
    follower = StatusFollower(
        sink,
        lambda: make_mtls_channel(f"127.0.0.1:{port}", observer_tls, "j-coordinator.default.svc"),
    )
    stop = threading.Event()
    result: list[Phase | None] = []
    thread = threading.Thread(target=lambda: result.append(follower.run(stop)))
    thread.start()
    try:
        for _ in range(200):
            if sink.job_writes:
                break
            threading.Event().wait(0.02)
        assert sink.job_writes
        stop.set()
        follower.cancel()
        thread.join(5)
        assert not thread.is_alive() and result == [None]
    finally:
        coordinator.release.set()
        server.stop(grace=None)
