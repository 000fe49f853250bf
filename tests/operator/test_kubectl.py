"""The real kubectl against fedcare's CRDs, as a user drives them.

The API server here is an emulator (:mod:`tests.support.apiserver`): no kube-apiserver can run on
the machines these tests run on. It validates custom resources against the CRD schemas and
answers in the real API server's words, which is what these tests check kubectl prints.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.operator.conftest import CRDS, FIXTURES
from tests.support.apiserver import ApiServer

pytestmark = pytest.mark.kubectl

JOBS = "/apis/fedcare.io/v1alpha1/namespaces/default/federatedjobs"
HEADER = ["NAME", "PHASE", "ROUND", "TOTAL", "PARTICIPANTS", "AUROC", "MODEL", "AGE"]
STATUS: dict[str, Any] = {
    "phase": "Training",
    "currentRound": 3,
    "totalRounds": 20,
    "readyParticipants": 3,
    "minParticipants": 2,
    "latestModel": {
        "version": "v3",
        "uri": "file://./fedcare-models/readmission/v3",
        "round": 3,
        "sha256": "0" * 64,
        "metrics": {"auroc": 0.87, "loss": 0.41},
    },
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "QuorumReached",
            "message": "3 of 3 participants joined",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
}


def _ok(api: ApiServer, *args: str) -> str:
    result = api.kubectl(*args)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def _install(api: ApiServer) -> None:
    out = _ok(api, "apply", "-f", str(CRDS))
    assert "customresourcedefinition.apiextensions.k8s.io/federatedjobs.fedcare.io created" in out
    assert "customresourcedefinition.apiextensions.k8s.io/participants.fedcare.io created" in out
    out = _ok(api, "apply", "-f", str(FIXTURES / "readmission.yaml"))
    assert out.strip() == "federatedjob.fedcare.io/readmission created"


def _patch_status(api: ApiServer, status: dict[str, Any]) -> None:
    result = api.request(
        "PATCH",
        f"{JOBS}/readmission/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    assert result.status == 200, result.body


def test_apply_crds_then_a_valid_federatedjob(apiserver: ApiServer) -> None:
    """``kubectl apply`` of crds/ and of a valid job; the API server is an emulator (no
    kube-apiserver can run here)."""
    _install(apiserver)
    stored = apiserver.request("GET", f"{JOBS}/readmission").body
    assert stored["metadata"]["generation"] == 1
    assert stored["metadata"]["uid"] and stored["metadata"]["creationTimestamp"]
    assert stored["spec"]["strategy"] == {"name": "fedavg"}  # defaulted by the CRD schema
    assert "status" not in stored
    again = _ok(apiserver, "apply", "-f", str(CRDS))
    assert "federatedjobs.fedcare.io unchanged" in again


def test_get_fedjobs_prints_the_printer_columns(apiserver: ApiServer) -> None:
    """``kubectl get fedjobs`` (short name) shows the CRD's printer columns; the API server is
    an emulator (no kube-apiserver can run here)."""
    _install(apiserver)
    lines = _ok(apiserver, "get", "fedjobs").splitlines()
    assert lines[0].split() == HEADER
    name, age = lines[1].split()  # no status yet: every status column is empty
    assert name == "readmission" and age.endswith("s")
    _patch_status(apiserver, STATUS)
    for name in ("fedjobs", "fedjob", "fj", "federatedjobs"):
        lines = _ok(apiserver, "get", name).splitlines()
        assert lines[0].split() == HEADER
        assert lines[1].split()[:7] == ["readmission", "Training", "3", "20", "3", "0.87", "v3"]
    wide = _ok(apiserver, "get", "fedjobs", "-o", "wide").splitlines()
    assert wide[0].split() == [*HEADER[:6], "MSE", "MODEL", "AGE"]


def test_get_status_phase_with_jsonpath(apiserver: ApiServer) -> None:
    """A status written through the API shows in ``kubectl get -o jsonpath``; the API server is
    an emulator (no kube-apiserver can run here)."""
    _install(apiserver)
    before = _ok(apiserver, "get", "fedjob", "readmission", "-o", "jsonpath={.status.phase}")
    assert before == ""
    _patch_status(apiserver, STATUS)
    phase = _ok(apiserver, "get", "fedjob", "readmission", "-o", "jsonpath={.status.phase}")
    assert phase == "Training"
    ready = _ok(
        apiserver,
        "get",
        "fedjob",
        "readmission",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    )
    assert ready == "True"
    stored = apiserver.request("GET", f"{JOBS}/readmission").body
    assert stored["metadata"]["generation"] == 1  # a status write is not a spec change


@pytest.mark.parametrize(
    ("fixture", "name", "expected"),
    [
        (
            "invalid-task.yaml",
            "bad-task",
            'The FederatedJob "bad-task" is invalid: spec.task: Unsupported value: '
            '"multiclass-classification": supported values: "binary-classification", '
            '"regression"',
        ),
        (
            "invalid-rounds.yaml",
            "bad-rounds",
            'The FederatedJob "bad-rounds" is invalid: spec.rounds: Invalid value: -1: '
            "spec.rounds in body should be greater than or equal to 1",
        ),
        (
            "invalid-unknown-field.yaml",
            "bad-field",
            # The real API server refuses unknown fields under fieldValidation=Strict with a
            # 400 BadRequest (strict decoding error), not a 422; kubectl prints it so.
            'Error from server (BadRequest): error when creating "{path}": FederatedJob in '
            'version "v1alpha1" cannot be handled as a FederatedJob: strict decoding error: '
            'unknown field "spec.learningRate"',
        ),
    ],
)
def test_apply_of_an_invalid_federatedjob_fails_with_the_field_path(
    apiserver: ApiServer, fixture: str, name: str, expected: str
) -> None:
    """``kubectl apply`` of an invalid job exits non-zero and names the field; the API server is
    an emulator (no kube-apiserver can run here)."""
    _ok(apiserver, "apply", "-f", str(CRDS))
    path = FIXTURES / fixture
    result = apiserver.kubectl("apply", "-f", str(path))
    assert result.returncode != 0
    assert expected.format(path=path) in result.stderr
    missing = apiserver.kubectl("get", "fedjob", name)
    assert missing.returncode != 0
    assert f'federatedjobs.fedcare.io "{name}" not found' in missing.stderr


def test_invalid_value_error_is_a_422_status(with_crds: ApiServer) -> None:
    """The emulated API server's 422 has the real ``Status`` shape with causes; no
    kube-apiserver can run here."""
    body = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "x"},
        "spec": {"data": {"features": ["a"], "label": "y"}, "rounds": -1},
    }
    result = with_crds.request("POST", JOBS, body)
    assert result.status == 422
    assert result.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'FederatedJob.fedcare.io "x" is invalid: spec.rounds: Invalid value: -1: '
        "spec.rounds in body should be greater than or equal to 1",
        "reason": "Invalid",
        "details": {
            "name": "x",
            "group": "fedcare.io",
            "kind": "FederatedJob",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: spec.rounds in body should be greater than "
                    "or equal to 1",
                    "field": "spec.rounds",
                }
            ],
        },
        "code": 422,
    }


def test_immutable_spec_fields_refuse_changes(apiserver: ApiServer, tmp_path: Any) -> None:
    """``spec.task``, ``spec.model`` and ``spec.data`` cannot change (CEL ``self == oldSelf``),
    ``spec.rounds`` can and bumps the generation; the API server is an emulator (no
    kube-apiserver can run here)."""
    _install(apiserver)
    original = (FIXTURES / "readmission.yaml").read_text()
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        original.replace("task: binary-classification", "task: regression").replace(
            "headline: auroc", "headline: mse"
        )
    )
    result = apiserver.kubectl("apply", "-f", str(changed))
    assert result.returncode != 0
    assert (
        'The FederatedJob "readmission" is invalid: spec.task: Invalid value: "string": '
        "spec.task is immutable" in result.stderr
    )
    changed.write_text(original.replace("label: readmitted_30d", "label: readmitted_90d"))
    result = apiserver.kubectl("apply", "-f", str(changed))
    assert "spec.data is immutable" in result.stderr
    changed.write_text(original.replace("rounds: 20", "rounds: 40"))
    out = _ok(apiserver, "apply", "-f", str(changed))
    assert out.strip() == "federatedjob.fedcare.io/readmission configured"
    stored = apiserver.request("GET", f"{JOBS}/readmission").body
    assert (stored["spec"]["rounds"], stored["metadata"]["generation"]) == (40, 2)


def test_participants_have_their_columns(apiserver: ApiServer) -> None:
    """``kubectl get part`` shows a Participant's printer columns; the API server is an
    emulator (no kube-apiserver can run here)."""
    _install(apiserver)
    out = _ok(apiserver, "apply", "-f", str(FIXTURES / "participant.yaml"))
    assert out.strip() == "participant.fedcare.io/st-mary created"
    path = "/apis/fedcare.io/v1alpha1/namespaces/default/participants/st-mary/status"
    status = {"phase": "Training", "roundsCompleted": 2, "samples": 1200, "epsilonSpent": 0.42}
    result = apiserver.request(
        "PATCH", path, {"status": status}, content_type="application/merge-patch+json"
    )
    assert result.status == 200, result.body
    lines = _ok(apiserver, "get", "part").splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "JOB", "ROUNDS", "EPSILON", "AGE"]
    assert lines[1].split()[:5] == ["st-mary", "Training", "readmission", "2", "0.42"]
    both = _ok(apiserver, "get", "fedcare", "-o", "name").split()
    assert sorted(both) == ["federatedjob.fedcare.io/readmission", "participant.fedcare.io/st-mary"]


def test_wait_for_a_status_phase_watches(apiserver: ApiServer) -> None:
    """``kubectl wait --for=jsonpath`` sees a status written while it watches; the API server is
    an emulator (no kube-apiserver can run here)."""
    _install(apiserver)
    timer = threading.Timer(0.5, _patch_status, args=(apiserver, STATUS))
    timer.start()
    try:
        started = time.monotonic()
        out = _ok(
            apiserver,
            "wait",
            "fedjob/readmission",
            "--for=jsonpath={.status.phase}=Training",
            "--timeout=20s",
        )
        assert "federatedjob.fedcare.io/readmission condition met" in out
        assert time.monotonic() - started < 15
    finally:
        timer.join()


def test_delete_cascades_to_owned_objects(apiserver: ApiServer) -> None:
    """``kubectl delete fedjob`` removes what the job owns (ownerReferences); the API server is
    an emulator (no kube-apiserver can run here)."""
    _install(apiserver)
    job = apiserver.request("GET", f"{JOBS}/readmission").body
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "readmission-coordinator",
            "ownerReferences": [
                {
                    "apiVersion": "fedcare.io/v1alpha1",
                    "kind": "FederatedJob",
                    "name": "readmission",
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"round": "0"},
    }
    created = apiserver.request("POST", "/api/v1/namespaces/default/configmaps", owned)
    assert created.status == 201, created.body
    assert _ok(apiserver, "get", "configmaps", "-o", "name").split() == [
        "configmap/readmission-coordinator"
    ]
    out = _ok(apiserver, "delete", "fedjob", "readmission")
    assert out.strip() == 'federatedjob.fedcare.io "readmission" deleted'
    result = apiserver.kubectl("get", "configmap", "readmission-coordinator")
    assert result.returncode != 0
    assert 'configmaps "readmission-coordinator" not found' in result.stderr


def test_imperative_create_of_builtins(apiserver: ApiServer) -> None:
    """``kubectl create namespace|configmap|secret`` (protobuf bodies) work; the API server is
    an emulator (no kube-apiserver can run here)."""
    assert _ok(apiserver, "create", "namespace", "site-a").strip() == "namespace/site-a created"
    out = _ok(apiserver, "create", "configmap", "cfg", "-n", "site-a", "--from-literal=a=b")
    assert out.strip() == "configmap/cfg created"
    out = _ok(
        apiserver, "create", "secret", "generic", "pw", "-n", "site-a", "--from-literal=key=hunter2"
    )
    assert out.strip() == "secret/pw created"
    cfg = apiserver.request("GET", "/api/v1/namespaces/site-a/configmaps/cfg").body
    assert cfg["data"] == {"a": "b"} and "generateName" not in cfg["metadata"]
    secret = apiserver.request("GET", "/api/v1/namespaces/site-a/secrets/pw").body
    assert secret["data"] == {"key": "aHVudGVyMg=="}
    assert _ok(apiserver, "delete", "namespace", "site-a").strip() == 'namespace "site-a" deleted'
    assert apiserver.request("GET", "/api/v1/namespaces/site-a/configmaps/cfg").status == 404
