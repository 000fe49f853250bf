"""A survival job end to end: three synthetic hospitals, a Cox model, `fedcare run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fedcare.data import SYNTH_EVENT, SYNTH_FEATURES, SYNTH_TIME, synthesize
from fedcare.repository import open_repository
from tests.integration.conftest import JobFactory


def test_three_site_cox_job_reaches_cindex(make_job: JobFactory, tmp_path: Path) -> None:
    """Cox proportional hazards over 3 non-IID sites: Succeeded, C-index above 0.6."""
    sites = synthesize(3, 1500, tmp_path / "surv", task="survival", seed=11)
    job = make_job(
        name="surv",
        sites=sites,
        task="survival",
        model={"name": "cox"},
        data={"features": list(SYNTH_FEATURES), "time": SYNTH_TIME, "event": SYNTH_EVENT},
        rounds=3,
        training={"epochs": 2, "batchSize": 128, "optimizer": "adam", "learningRate": 0.02},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fedcare", "run", str(job), "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["phase"] == "Succeeded"
    final = status["rounds"][-1]
    assert set(final["metrics"]) == {"loss", "cindex"}
    assert final["metrics"]["cindex"] > 0.6, final
    assert final["participants"] == 3

    repo = open_repository(f"file://{tmp_path / 'models'}")
    versions = repo.list_versions("surv")
    assert [v.round for v in versions] == [0, 1, 2, 3]
    assert versions[-1].metrics["cindex"] == final["metrics"]["cindex"]
    weights = repo.read_weights("surv", versions[-1].version)
    assert sorted(weights) == ["core.weight", "input_mean", "input_std"]  # no intercept
