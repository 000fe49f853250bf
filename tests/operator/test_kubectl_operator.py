"""The real kubectl with the real operator running, as a user drives them.

The API server is the emulator of :mod:`tests.support.apiserver` (no kube-apiserver can run on the
machines these tests run on); no controller or kubelet runs, so the coordinator and trainers stay
objects here (``test_e2e_emulator.py`` runs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.operator.conftest import CRDS, REPO
from tests.support.apiserver import ApiServer
from tests.support.operator import operator_running, wait_until

pytestmark = pytest.mark.kubectl

EXAMPLE = REPO / "examples" / "federatedjob.yaml"


def _ok(api: ApiServer, *args: str) -> str:
    result = api.kubectl(*args)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_apply_the_example_then_get_its_children(apiserver: ApiServer) -> None:
    """``kubectl apply -f examples/federatedjob.yaml``: the operator's children appear with owner
    references, ``kubectl get fedjobs`` and ``participants`` show their columns."""
    _ok(apiserver, "apply", "-f", str(CRDS))
    with operator_running(apiserver):
        out = _ok(apiserver, "apply", "-f", str(EXAMPLE))
        assert out.strip() == "federatedjob.fedcare.io/readmission created"

        def children() -> list[str]:
            out = _ok(
                apiserver,
                "get",
                "deployments,services,secrets,configmaps,jobs,participants",
                "-l",
                "fedcare.io/job=readmission",
                "-o",
                "name",
            )
            found = out.split()
            return found if len(found) >= 15 else []

        found = set(wait_until(children, 20, "the job's children"))
        assert {
            "deployment.apps/readmission-coordinator",
            "service/readmission-coordinator",
            "secret/readmission-ca",
            "secret/readmission-coordinator-tls",
            "configmap/readmission-coordinator",
            "participant.fedcare.io/readmission-st-mary",
            "job.batch/readmission-st-mary-trainer",
            "secret/readmission-north-clinic-tls",
        } <= found
        owner = _ok(
            apiserver,
            "get",
            "deployment",
            "readmission-coordinator",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        )
        assert owner == "FederatedJob/readmission"
        owner = _ok(
            apiserver,
            "get",
            "job",
            "readmission-city-general-trainer",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        )
        assert owner == "Participant/readmission-city-general"

        def pending() -> list[str]:
            lines = _ok(apiserver, "get", "fedjobs").splitlines()
            return lines if len(lines) == 2 and "Pending" in lines[1] else []

        header, row = wait_until(pending, 10, "Pending in kubectl get fedjobs")
        assert header.split() == [
            "NAME",
            "PHASE",
            "ROUND",
            "TOTAL",
            "PARTICIPANTS",
            "AUROC",
            "MODEL",
            "AGE",
        ]
        assert row.split()[:5] == ["readmission", "Pending", "0", "5", "0"]
        parts = _ok(apiserver, "get", "participants").splitlines()
        assert parts[0].split() == ["NAME", "PHASE", "JOB", "ROUNDS", "EPSILON", "AGE"]
        assert sorted(line.split()[0] for line in parts[1:]) == [
            "readmission-city-general",
            "readmission-north-clinic",
            "readmission-st-mary",
        ]
        out = _ok(apiserver, "delete", "-f", str(EXAMPLE))
        assert out.strip() == 'federatedjob.fedcare.io "readmission" deleted'
        wait_until(
            lambda: not _ok(apiserver, "get", "jobs,participants,secrets", "-o", "name").strip(),
            15,
            "children deleted",
        )


def test_invalid_spec_shows_in_describe_and_jsonpath(apiserver: ApiServer, tmp_path: Path) -> None:
    """A spec the schema accepts but fedcare refuses (minResponses > minParticipants): phase
    Failed, condition Failed with reason InvalidSpec naming the field."""
    _ok(apiserver, "apply", "-f", str(CRDS))
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = "bad-quorum"
    doc["spec"]["minResponses"] = 4
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with operator_running(apiserver):
        _ok(apiserver, "apply", "-f", str(path))

        def reason() -> str:
            return _ok(
                apiserver,
                "get",
                "fedjob",
                "bad-quorum",
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Failed")].reason}',
            )

        assert wait_until(reason, 15, "the Failed condition") == "InvalidSpec"
        phase = _ok(apiserver, "get", "fedjob", "bad-quorum", "-o", "jsonpath={.status.phase}")
        assert phase == "Failed"
        described = _ok(apiserver, "describe", "fedjob", "bad-quorum")
        assert "InvalidSpec" in described
        assert "minResponses (4) cannot exceed minParticipants (3)" in described
        assert not _ok(apiserver, "get", "deployments", "-o", "name").strip()
