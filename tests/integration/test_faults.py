"""Failures during a real local run: a trainer killed mid-round, nobody joining in time."""

from __future__ import annotations

import signal
from pathlib import Path

from fedcare.data import synthesize
from fedcare.spec import Phase
from tests.integration.actors import start_job, wait_for
from tests.integration.conftest import JobFactory

SYNTH = [
    "age",
    "sex",
    "num_comorbidities",
    "num_medications",
    "hba1c",
    "creatinine",
    "systolic_bp",
    "bmi",
    "length_of_stay",
    "prior_admissions",
    "emergency_admission",
]


def test_trainer_killed_mid_round_round_closes_at_quorum(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """SIGKILL one of three trainers while round 2 trains: the round closes with the two
    survivors (quorum 2) and the job finishes every round."""
    sites = synthesize(3, 60_000, tmp_path / "data", fmt="parquet", seed=3)
    manifest = make_job(
        sites=sites,
        rounds=4,
        minResponses=2,
        model={"name": "mlp", "hiddenUnits": [64, 64]},
        data={"features": SYNTH, "label": "readmitted"},
        training={"epochs": 2, "batchSize": 64, "learningRate": 0.001},
    )
    run = start_job(manifest, tmp_path / "work")
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        wait_for(run, "s.current_round == 2 and len(s.rounds) == 1", timeout=120)
        victim = run.processes["trainer-hospital-c"]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        final = run.follow()
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message
    assert [r.round for r in final.rounds] == [1, 2, 3, 4]
    assert final.rounds[0].participants == 3
    assert [r.participants for r in final.rounds[1:]] == [2, 2, 2]
    states = {p.name: p.state.value for p in final.participants}
    assert states["hospital-c"] == "Disconnected"


def test_join_timeout_fails_with_reason(make_job: JobFactory, tmp_path: Path) -> None:
    """Too few participants before joinTimeout: the job fails with a clear reason. (20 s, so
    that the one trainer started surely joins in time, even on a busy CI machine.)"""
    run = start_job(make_job(joinTimeoutSeconds=20), tmp_path / "work")
    try:
        run.start_trainer(run.job.spec.participants[0])
        final = run.follow()
    finally:
        run.stop()
    assert final.phase is Phase.FAILED
    assert final.message is not None and "1 of 3 participants joined within 20s" in final.message
    failed = {c.type: c for c in final.conditions}["Failed"]
    assert failed.reason == "JoinTimeout"
