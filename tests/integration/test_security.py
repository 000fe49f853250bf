"""Identity and bad-update handling against a real coordinator process over mutual TLS."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcare.audit import AuditLog
from fedcare.pki import create_ca, issue_client_cert
from fedcare.spec import Phase
from fedcare.transport._generated import coordinator_pb2 as pb
from tests.integration.actors import (
    http_get,
    join_request,
    metric_value,
    start_job,
    stub_for,
    update_stream,
    wait_for,
)
from tests.integration.conftest import BC_FEATURES, JobFactory

N = len(BC_FEATURES)


def _code(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_unauthenticated_and_impersonating_clients_refused(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """No cert, another CA's cert, an unknown name, wrong roles: refused; the job completes.

    A second connection with a participant's identity replaces the first (never two votes).
    """
    run = start_job(make_job(rounds=3), tmp_path / "work")
    try:
        req = join_request(N)
        err = _code(lambda: stub_for(run, None).Join(req, timeout=10))
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # TLS handshake refused

        other = create_ca(tmp_path / "other", "other-job")
        forged = issue_client_cert(other, tmp_path / "other", "hospital-a")
        err = _code(lambda: stub_for(run, forged).Join(req, timeout=10))
        assert err.code() == grpc.StatusCode.UNAVAILABLE

        eve = issue_client_cert(run.ca, tmp_path / "eve", "eve")
        err = _code(lambda: stub_for(run, eve).Join(req, timeout=10))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'eve' is not a participant of job 'bc'" in str(err.details())
        err = _code(lambda: stub_for(run, eve).DescribeJob(pb.DescribeJobRequest(), timeout=10))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED

        err = _code(lambda: stub_for(run, run.observer_cert).Join(req, timeout=10))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not act as a participant" in str(err.details())

        a_cert = run.client_certs["hospital-a"]
        watch = stub_for(run, a_cert).WatchStatus(pb.WatchRequest(), timeout=10)
        err = _code(lambda: next(iter(watch)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED

        # Two sessions with hospital-a's identity: the second replaces the first.
        rogue = stub_for(run, a_cert)
        first = rogue.Join(req, timeout=10)
        stream = rogue.Tasks(pb.TasksRequest(session_id=first.session_id))
        ended: list[grpc.RpcError] = []

        def drain() -> None:
            try:
                for _ in stream:
                    pass
            except grpc.RpcError as e:
                ended.append(e)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        second = rogue.Join(req, timeout=10)
        assert second.session_id != first.session_id
        t.join(timeout=10)
        assert ended and ended[0].code() == grpc.StatusCode.ABORTED
        s = wait_for(run, "s.ready_participants == 1")
        assert [p.name for p in s.participants if p.state.value == "Connected"] == ["hospital-a"]
        err = _code(lambda: rogue.Tasks(pb.TasksRequest(session_id=first.session_id)).next())
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The real trainers join; hospital-a's real trainer replaces the rogue session.
        for p in run.job.spec.participants:
            run.start_trainer(p)
        final = run.follow()
        assert final.phase is Phase.SUCCEEDED, final.message
        assert all(r.participants == 3 for r in final.rounds)
        assert final.ready_participants <= 3
    finally:
        run.stop()


def test_bad_updates_refused_round_goes_on(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    """NaN, duplicate, stale and wrong-shape updates are refused with a status code and detail,
    counted in /metrics by reason; the round closes with the honest sites' updates."""
    sites = [*breast_cancer_sites, breast_cancer_sites[0]]
    manifest = make_job(sites=sites, rounds=3, minResponses=3)
    text = manifest.read_text().replace("hospital-d", "mallory")
    manifest.write_text(text)
    run = start_job(manifest, tmp_path / "work")
    try:
        for p in run.job.spec.participants:
            if p.name != "mallory":
                run.start_trainer(p)
        mallory = stub_for(run, run.client_certs["mallory"])
        session = mallory.Join(join_request(N), timeout=10).session_id
        tasks = mallory.Tasks(pb.TasksRequest(session_id=session))
        task = next(tasks)
        assert task.kind == pb.Task.TRAIN and task.round == 1
        model = b"".join(
            c.data
            for c in mallory.DownloadModel(
                pb.ModelRequest(session_id=session, model_version=task.model_version)
            )
        )
        from fedcare.repository import from_safetensors_bytes

        weights = from_safetensors_bytes(model)
        layout = [(k, list(weights[k].shape)) for k in sorted(weights)]  # canonical order
        size = sum(v.size for v in weights.values())

        future = pb.Task(round=task.round + 1, model_version=task.model_version)
        err = _code(
            lambda: mallory.UploadUpdate(
                update_stream(session, future, layout, np.zeros(size)), timeout=10
            )
        )
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "has not started" in str(err.details())

        nan = np.zeros(size, dtype=np.float32)
        nan[3] = np.nan
        err = _code(
            lambda: mallory.UploadUpdate(update_stream(session, task, layout, nan), timeout=10)
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "NaN or Inf" in str(err.details())

        again = _code(
            lambda: mallory.UploadUpdate(
                update_stream(session, task, layout, np.zeros(size)), timeout=10
            )
        )
        assert again.code() == grpc.StatusCode.ALREADY_EXISTS  # one vote per round, refused or not

        metrics = http_get(run, "/metrics")
        assert (
            metric_value(metrics, "fedcare_updates_rejected_total", job="bc", reason="non_finite")
            == 1.0
        )
        assert (
            metric_value(metrics, "fedcare_updates_rejected_total", job="bc", reason="future_round")
            == 1.0
        )

        # Round 1 closes with the three honest updates; mallory then replays round 1.
        evaluate = next(tasks)
        assert evaluate.kind == pb.Task.EVALUATE and evaluate.round == 1
        report = pb.EvaluationReport(
            session_id=session,
            round=1,
            num_samples=20,
            model_version=evaluate.model_version,
            metrics={"auroc": float("nan")},
        )
        err = _code(lambda: mallory.ReportEvaluation(report, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        task2 = next(tasks)
        assert task2.kind == pb.Task.TRAIN
        bad_shape = [(layout[0][0], [layout[0][1][0] + 1, *layout[0][1][1:]]), *layout[1:]]
        err = _code(
            lambda: mallory.UploadUpdate(
                update_stream(session, task2, bad_shape, np.zeros(size + 1)), timeout=10
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shape" in str(err.details())
        err = _code(
            lambda: mallory.UploadUpdate(
                update_stream(session, task, layout, np.zeros(size)), timeout=10
            )
        )
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is closed" in str(err.details())
        assert task2.round == 2
        tasks.cancel()  # mallory leaves; the job goes on with the quorum of three

        final = run.follow()
        assert final.phase is Phase.SUCCEEDED, final.message
        assert final.rounds[0].participants == 3
        # The audit trail: mallory's refused updates are logged as rejected, with their
        # reasons, and never as accepted.
        records = AuditLog(tmp_path / "models" / "bc" / "audit.jsonl").read("bc")
        mine = [r for r in records if r.participant == "mallory"]
        assert {r.event for r in mine} == {"rejected"}
        reasons = [r.reason for r in mine]  # type: ignore[union-attr]
        assert sorted(reasons) == sorted(
            ["future_round", "non_finite", "duplicate", "wrong_shape", "stale_round"]
        )
        assert sum(r.event == "accepted" for r in records) == 3 * 3
        # Every refused upload counted once, and the refused (NaN) evaluation report.
        assert final.rejected_updates == len(mine) + 1
        assert final.rounds[-1].metrics["auroc"] >= 0.9
    finally:
        run.stop()
