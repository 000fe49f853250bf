"""Spec models: validation errors name the field path; status helpers keep their contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedcare.errors import SpecError
from fedcare.spec import (
    ConditionStatus,
    FederatedJob,
    FederatedJobStatus,
    RoundStatus,
    load_model,
    parse_document,
)
from fedcare.spec.status import MAX_ROUND_HISTORY

ROOT = Path(__file__).resolve().parents[2]


def _job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "j"},
        "spec": {"data": {"features": ["a", "b"], "label": "y"}, "rounds": 2},
    }
    base["spec"].update(spec)
    return base


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_document(FederatedJob, doc, "job.yaml")
    return str(info.value)


def test_defaults_and_quorum() -> None:
    job = parse_document(FederatedJob, _job(minParticipants=3), "job.yaml")
    assert job.spec.quorum == 3
    assert job.spec.headline_metric.value == "auroc"
    assert job.spec.repository.uri == "file://./fedcare-models"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"rounds": 0}, "job.yaml: spec.rounds: Input should be greater than or equal to 1"),
        ({"task": "survival-ish"}, "spec.task: Input should be"),
        ({"training": {"optimizr": "sgd"}}, "spec.training.optimizr: unknown field"),
        ({"model": {"name": "plugin"}}, "spec.model: model.plugin ('module:callable') is required"),
        ({"minParticipants": 2, "minResponses": 3}, "minResponses (3) cannot exceed"),
        ({"participants": [{"name": "A_b", "data": {"path": "x"}}]}, "spec.participants[0].name"),
        ({"evaluation": {"headline": "mae"}}, "does not apply to task 'binary-classification'"),
    ],
)
def test_errors_name_the_field(patch: dict[str, Any], needle: str) -> None:
    message = _error(_job(**patch))
    assert needle in message
    assert "\n" not in message


def test_unknown_top_level_field_and_wrong_kind() -> None:
    assert "job.yaml: specc: unknown field" in _error({**_job(), "specc": {}})
    assert "kind" in _error({**_job(), "kind": "Job"})


def test_missing_file_and_malformed_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_model(FederatedJob, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(SpecError, match=r"malformed YAML: line \d+, column \d+"):
        load_model(FederatedJob, bad)


def test_set_condition_moves_transition_time_only_on_change() -> None:
    status = FederatedJobStatus()
    status.set_condition("Ready", ConditionStatus.FALSE, "Waiting", "0 of 3")
    first = status.conditions[0].model_copy(update={"last_transition_time": "2020-01-01T00:00:00Z"})
    status.conditions[0] = first
    status.set_condition("Ready", ConditionStatus.FALSE, "Waiting", "1 of 3")
    assert status.conditions[0].last_transition_time == "2020-01-01T00:00:00Z"
    assert status.conditions[0].message == "1 of 3"
    status.set_condition("Ready", ConditionStatus.TRUE, "Joined", "3 of 3")
    assert status.conditions[0].last_transition_time != "2020-01-01T00:00:00Z"
    assert len(status.conditions) == 1


def test_round_history_is_bounded() -> None:
    status = FederatedJobStatus()
    for n in range(1, 31):
        status.add_round(RoundStatus(round=n, duration_seconds=1.0, model_version=f"v{n:04d}"))
    assert len(status.rounds) == MAX_ROUND_HISTORY
    assert status.rounds[0].round == 31 - MAX_ROUND_HISTORY


def test_examples_are_valid() -> None:
    for path in [ROOT / "examples" / "quickstart.yaml"]:
        load_model(FederatedJob, path)


def test_generated_stubs_do_not_drift() -> None:
    """scripts/gen_proto.py --check regenerates the stubs and compares them byte for byte."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
