"""A coordinator killed mid-round and restarted resumes from the last completed round."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np

from fedcare.data import synthesize
from fedcare.repository import open_repository
from fedcare.spec import Phase
from tests.integration.actors import start_job, wait_for
from tests.integration.conftest import JobFactory
from tests.integration.test_faults import SYNTH


def test_coordinator_killed_mid_round_resumes(make_job: JobFactory, tmp_path: Path) -> None:
    """SIGKILL the coordinator while round 2 trains, start it again with the same config: the
    job ends with exactly the configured rounds and versions, none counted twice."""
    sites = synthesize(3, 60_000, tmp_path / "data", fmt="parquet", seed=5)
    manifest = make_job(
        sites=sites, rounds=4,
        model={"name": "mlp", "hiddenUnits": [32]},
        data={"features": SYNTH, "label": "readmitted"},
        training={"epochs": 2, "batchSize": 64, "learningRate": 0.001},
    )  # fmt: skip
    run = start_job(manifest, tmp_path / "work")
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        wait_for(run, "s.current_round == 2 and len(s.rounds) == 1", timeout=120)
        coordinator = run.processes["coordinator"]
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=10)
        run.restart_coordinator()
        final = run.follow()
        run.reap()
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message
    assert [r.round for r in final.rounds] == [1, 2, 3, 4]
    assert {c.type: c.status.value for c in final.conditions}["Resumed"] == "True"
    versions = open_repository(f"file://{tmp_path / 'models'}").list_versions("bc")
    assert [v.round for v in versions] == [0, 1, 2, 3, 4]
    assert len({v.run_id for v in versions}) == 1
    assert [v.parent_version for v in versions[1:]] == [v.version for v in versions[:-1]]
    assert final.latest_model is not None and final.latest_model.version == versions[-1].version
    assert [r.model_version for r in final.rounds] == [v.version for v in versions[1:]]
    # Each site's count of rounds is what the stored versions say, across the restart.
    contributed = {p.name: p.rounds_contributed for p in final.participants}
    assert contributed == {
        name: sum(name in {c.name for c in v.participants} for v in versions)
        for name in contributed
    }
    assert sorted(contributed.values()) == [4, 4, 4]  # minResponses = every site
    for code in (p.returncode for name, p in run.processes.items() if name != "coordinator"):
        assert code == 0


def test_resumed_server_optimizer_goes_on_with_its_moments(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """FedAdam's moments are stored with every version: a coordinator killed after round 1 and
    restarted ends with the model an uninterrupted run makes (a restart from zero moments
    would not)."""
    import fedcare

    sites = synthesize(3, 20_000, tmp_path / "data", fmt="parquet", seed=5)
    spec = {
        "sites": sites, "rounds": 3,
        "model": {"name": "mlp", "hiddenUnits": [16]},
        "data": {"features": SYNTH, "label": "readmitted"},
        "training": {"epochs": 1, "batchSize": 64, "learningRate": 0.001},
        "strategy": {"name": "fedadam", "serverLearningRate": 0.05},
    }  # fmt: skip
    straight = fedcare.run(make_job(name="straight", **spec))
    run = start_job(make_job(name="resumed", **spec), tmp_path / "work")
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        wait_for(run, "len(s.rounds) >= 1", timeout=120)
        coordinator = run.processes["coordinator"]
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=10)
        run.restart_coordinator()
        resumed = run.follow()
        run.reap()
    finally:
        run.stop()
    assert resumed.phase is Phase.SUCCEEDED, resumed.message
    assert {c.type: c.status.value for c in resumed.conditions}["Resumed"] == "True"
    repo = open_repository(f"file://{tmp_path / 'models'}")
    assert [v.round for v in repo.list_versions("resumed")] == [0, 1, 2, 3]
    stored = repo.list_versions("resumed")
    assert stored[0].server_state_sha256 is None  # the initial model: no step taken yet
    assert all(v.server_state_sha256 for v in stored[1:])
    assert straight.latest_model is not None and resumed.latest_model is not None
    a = repo.read_weights("straight", straight.latest_model.version)
    b = repo.read_weights("resumed", resumed.latest_model.version)
    assert a.keys() == b.keys()
    for name in a:  # equal up to float32 summation order (updates arrive in any order)
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)
    state = repo.read_server_state("resumed", resumed.latest_model.version)
    assert int(state["steps"][0]) == 3


def test_initial_model_fine_tunes_from_a_stored_version(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """`spec.initialModel` (a version URI of another job) is the new job's round-0 model."""
    import fedcare

    first = fedcare.run(make_job(name="base", rounds=2))
    assert first.latest_model is not None
    ref = first.latest_model.uri
    tuned = fedcare.run(make_job(name="tuned", rounds=1, initialModel=ref))
    repo = open_repository(f"file://{tmp_path / 'models'}")
    base_weights = repo.read_weights("base", first.latest_model.version)
    start = repo.list_versions("tuned")[0]
    assert start.round == 0 and start.parent_version is None  # another job's version
    start_weights = repo.read_weights("tuned", start.version)
    for name, value in base_weights.items():
        assert (start_weights[name] == value).all(), name
    assert tuned.phase is Phase.SUCCEEDED
    assert tuned.rounds[0].metrics["auroc"] >= 0.95
