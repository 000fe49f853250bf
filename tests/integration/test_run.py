"""`fedcare run` end to end: real coordinator and trainer processes, mutual TLS on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from fedcare.repository import open_repository
from tests.integration.conftest import JobFactory


def _fedcare(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcare", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=240,
        env=dict(os.environ),
    )


def test_breast_cancer_three_sites_reaches_auroc(make_job: JobFactory, tmp_path: Path) -> None:
    """A 3-site job on breast-cancer data reaches validation AUROC >= 0.95; --json is the status."""
    job = make_job(rounds=5)
    proc = _fedcare("run", str(job), "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["phase"] == "Succeeded"
    assert status["currentRound"] == 5
    assert [r["round"] for r in status["rounds"]] == [1, 2, 3, 4, 5]
    final = status["rounds"][-1]
    assert final["metrics"]["auroc"] >= 0.95, final
    assert final["participants"] == 3
    assert set(final["metrics"]) == {"loss", "accuracy", "auroc", "auprc", "brier", "ece"}
    assert status["latestModel"]["version"] == final["modelVersion"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"

    repo = open_repository(f"file://{tmp_path / 'models'}")
    versions = repo.list_versions("bc")
    # v0001 is the initial model (round 0), then one version per round, chained by parent.
    assert [v.round for v in versions] == [0, 1, 2, 3, 4, 5]
    assert [v.parent_version for v in versions[1:]] == [v.version for v in versions[:-1]]
    last = versions[-1]
    assert last.version == status["latestModel"]["version"]
    assert last.sha256 == status["latestModel"]["sha256"]
    assert last.metrics["auroc"] == final["metrics"]["auroc"]
    assert sorted(p.name for p in last.participants) == ["hospital-a", "hospital-b", "hospital-c"]
    weights = repo.read_weights("bc", last.version)
    assert set(weights) >= {"input_mean", "input_std"}


def test_cli_table_output_and_models_list(make_job: JobFactory, tmp_path: Path) -> None:
    """Without --json: per-round progress and a summary table; `models list` shows versions.

    Runs with `--launcher spawn` (fresh interpreters), the other tests with the fork server."""
    job = make_job(rounds=2)
    proc = _fedcare("run", str(job), "--launcher", "spawn")  # the other launcher, end to end
    assert proc.returncode == 0, proc.stderr
    assert "round 2/2" in proc.stdout
    assert "Succeeded" in proc.stdout
    listing = _fedcare("models", "list", "--repo", str(tmp_path / "models"))
    assert listing.returncode == 0, listing.stderr
    assert "v0003" in listing.stdout and "auroc=" in listing.stdout
    show = _fedcare("models", "show", "bc", "v0003", "--repo", str(tmp_path / "models"))
    assert json.loads(show.stdout)["round"] == 2
    out = tmp_path / "export"
    exported = _fedcare(
        "models", "export", "bc", "v0003", "--out", str(out), "--repo", str(tmp_path / "models")
    )
    assert exported.returncode == 0, exported.stderr
    assert Path(exported.stdout.strip()).exists()


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_bad_manifests_give_one_line_errors(make_job: JobFactory, tmp_path: Path) -> None:
    """Malformed YAML, an unknown field, a wrong type: non-zero exit, one line naming the field."""
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("apiVersion: fedcare.io/v1alpha1\nkind: FederatedJob\nspec: [a, b\n")
    line = _one_line_error(_fedcare("run", str(bad_yaml)))
    assert "malformed YAML" in line and "line" in line

    good = yaml.safe_load(make_job().read_text())

    unknown = dict(good, spec=dict(good["spec"], roundz=3))
    path = tmp_path / "unknown.yaml"
    path.write_text(yaml.safe_dump(unknown))
    line = _one_line_error(_fedcare("run", str(path)))
    assert "spec.roundz" in line and "unknown field" in line

    wrong = dict(good, spec=dict(good["spec"], rounds="many"))
    path.write_text(yaml.safe_dump(wrong))
    line = _one_line_error(_fedcare("run", str(path)))
    assert "spec.rounds" in line and "'many'" in line

    nested = dict(good, spec=dict(good["spec"], training={"batchSize": -4}))
    path.write_text(yaml.safe_dump(nested))
    line = _one_line_error(_fedcare("run", str(path)))
    assert "spec.training.batchSize" in line

    missing = dict(
        good,
        spec=dict(
            good["spec"],
            participants=[{"name": "hospital-a", "data": {"path": str(tmp_path / "nope.csv")}}],
            minParticipants=1,
        ),
    )
    path.write_text(yaml.safe_dump(missing))
    line = _one_line_error(_fedcare("run", str(path)))
    assert "spec.participants[0].data.path" in line and "no such file" in line

    # Valid for the operator (sites may enroll later), never met by `fedcare run`.
    short = dict(good, spec=dict(good["spec"], minParticipants=4))
    path.write_text(yaml.safe_dump(short))
    assert _fedcare("validate", str(path)).returncode == 0
    line = _one_line_error(_fedcare("run", str(path)))
    assert "spec.minParticipants: 4 sites needed" in line and "only the 3 listed" in line
