"""The real operator (kopf, ``kopf run -m fedcare_operator``) against the emulated API server.

No kube-apiserver can run on the machines these tests run on, so the API server is the emulator
of :mod:`tests.support.apiserver`. No controller runs either: Deployments and Jobs stay objects
(no pods); the end-to-end test in ``test_e2e_emulator.py`` plays the kubelet.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.operator.conftest import FIXTURES, REPO
from tests.support.apiserver import ApiServer
from tests.support.operator import (
    CONFIGMAPS,
    DEPLOYMENTS,
    FJ,
    JOBS,
    PARTS,
    SECRETS,
    SERVICES,
    get,
    items,
    names,
    operator_running,
    wait_until,
)

EXAMPLE = REPO / "examples" / "federatedjob.yaml"
SITES = ("st-mary", "city-general", "north-clinic")


def _example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


def _create(api: ApiServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result = api.request("POST", path, body)
    assert result.status == 201, result.body
    created: dict[str, Any] = result.body
    return created


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(
        r["uid"] == owner["metadata"]["uid"] and r["kind"] == owner["kind"] and r["controller"]
        for r in refs
    )


def test_a_federatedjob_gets_its_children_and_pending_status(with_crds: ApiServer) -> None:
    """examples/federatedjob.yaml -> CA, certificates, config, coordinator, Service, three
    Participants, each with a certificate and a trainer Job; every child owned and labelled.
    Deleting the job removes them all (the emulator garbage-collects like the real one)."""
    api = with_crds
    with operator_running(api):
        job = _create(api, FJ, _example())
        parts = {f"readmission-{s}" for s in SITES}
        wait_until(lambda: names(api, JOBS) >= {f"{p}-trainer" for p in parts}, 20, "trainers")
        assert names(api, SECRETS) >= {
            "readmission-ca",
            "readmission-coordinator-tls",
            "readmission-operator-tls",
            *(f"{p}-tls" for p in parts),
        }
        assert names(api, CONFIGMAPS) >= {
            "readmission-coordinator",
            *(f"{p}-trainer" for p in parts),
        }
        assert names(api, DEPLOYMENTS) == {"readmission-coordinator"}
        assert names(api, SERVICES) == {"readmission-coordinator"}
        assert names(api, PARTS) == parts

        for path in (SECRETS, CONFIGMAPS, DEPLOYMENTS, SERVICES, PARTS):
            for obj in items(api, path):
                if obj["metadata"]["name"].endswith(("-trainer", "-tls")) and obj["metadata"][
                    "name"
                ].startswith(tuple(parts)):
                    continue
                assert _owned_by(obj, job), obj["metadata"]
                labels = obj["metadata"]["labels"]
                assert labels["fedcare.io/job"] == "readmission"
                assert labels["app.kubernetes.io/part-of"] == "fedcare"
                assert labels["app.kubernetes.io/managed-by"] == "fedcare-operator"
        for part in items(api, PARTS):
            pname = part["metadata"]["name"]
            for path in (f"{SECRETS}/{pname}-tls", f"{JOBS}/{pname}-trainer"):
                child = get(api, path)
                assert child is not None and _owned_by(child, part), path
        trainer = get(api, f"{JOBS}/readmission-st-mary-trainer")
        assert trainer is not None
        pod = trainer["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "ghcr.io/fedcare/runtime:test"
        assert pod["securityContext"]["runAsNonRoot"] is True

        def pending() -> dict[str, Any] | None:
            body = get(api, f"{FJ}/readmission")
            status = (body or {}).get("status") or {}
            return status if status.get("phase") == "Pending" else None

        status = wait_until(pending, 10, "status Pending")
        assert status["totalRounds"] == 5 and status["minParticipants"] == 3
        assert status["observedGeneration"] == 1
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "ChildrenCreated")

        def parts_pending() -> bool:
            return all((p.get("status") or {}).get("phase") == "Pending" for p in items(api, PARTS))

        wait_until(parts_pending, 10, "Participants Pending")
        annotations = get(api, f"{FJ}/readmission")["metadata"]["annotations"]  # type: ignore[index]
        assert any(k.startswith("fedcare.io/") for k in annotations)  # kopf's progress storage

        assert api.request("DELETE", f"{FJ}/readmission").status == 200
        wait_until(lambda: get(api, f"{FJ}/readmission") is None, 15, "job deleted")
        wait_until(lambda: not names(api, JOBS) and not names(api, PARTS), 15, "cascade")
        assert not names(api, SECRETS) and not names(api, DEPLOYMENTS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"minResponses": 5}, "minResponses (5) cannot exceed minParticipants (3)"),
        ({"participants": [{"name": "a", "data": {"path": "relative/a.csv"}}]}, "data.path"),
    ],
)
def test_an_invalid_spec_fails_with_reason_invalid_spec(
    with_crds: ApiServer, change: dict[str, Any], field: str
) -> None:
    """A spec the CRD schema accepts but fedcare refuses: Failed/InvalidSpec naming the field,
    no children."""
    api = with_crds
    doc = _example()
    doc["spec"].update(change)
    if "participants" in change:
        doc["spec"]["minParticipants"] = 1
        doc["spec"]["minResponses"] = 1
    with operator_running(api):
        _create(api, FJ, doc)

        def failed() -> dict[str, Any] | None:
            status = (get(api, f"{FJ}/readmission") or {}).get("status") or {}
            return status if status.get("phase") == "Failed" else None

        status = wait_until(failed, 15, "status Failed")
        cond = {c["type"]: c for c in status["conditions"]}["Failed"]
        assert (cond["status"], cond["reason"]) == ("True", "InvalidSpec")
        assert field in cond["message"] and field in status["message"]
        assert not names(api, DEPLOYMENTS) and not names(api, SECRETS)


def test_a_participant_of_a_job_in_the_same_cluster(with_crds: ApiServer) -> None:
    """A Participant created on its own (st-mary, for job readmission) gets a certificate issued
    by the job's CA and a trainer Job with its GPU, once the job exists."""
    api = with_crds
    participant = yaml.safe_load((FIXTURES / "participant.yaml").read_text())
    with operator_running(api):
        _create(api, PARTS, participant)

        def waiting() -> bool:
            status = (get(api, f"{PARTS}/st-mary") or {}).get("status") or {}
            return "does not exist" in str(status.get("message"))

        wait_until(waiting, 10, "Participant waiting for its job")
        job = copy.deepcopy(_example())
        _create(api, FJ, job)
        trainer = wait_until(lambda: get(api, f"{JOBS}/st-mary-trainer"), 20, "trainer Job")
        pod = trainer["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        config = get(api, f"{CONFIGMAPS}/st-mary-trainer")
        assert config is not None
        trainer_yaml = yaml.safe_load(config["data"]["trainer.yaml"])
        assert trainer_yaml["participant"] == "st-mary"
        assert trainer_yaml["coordinator"] == "fedcare-readmission-coordinator.fedcare.svc:50051"
        assert trainer_yaml["device"] == "cuda"
