"""A Participant created beside a running job (same cluster, not inline) is admitted and trains.

On the emulated API server with the real operator (kopf, in-process) and the test as kubelet
(see ``test_e2e_emulator.py`` for what that means and why). The job lists two inline sites and
needs three; the third is a Participant object created afterwards. The operator issues its
certificate, lists it in the ``<job>-coordinator-participants`` ConfigMap, and holds back its
trainer (Ready False, WaitingForAdmission) until the coordinator, which re-reads that ConfigMap
from its mounted folder, has admitted it; then the trainer starts and the job trains with all
three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedcare.data import synthesize
from tests.operator.conftest import REPO
from tests.support.apiserver import ApiServer
from tests.support.kubelet import local_kubelet
from tests.support.operator import (
    DEPLOYMENTS,
    FJ,
    JOBS,
    NS,
    PARTS,
    get,
    items,
    names,
    operator_running,
    wait_until,
)

ROUNDS = 3
CM = f"/api/v1/namespaces/{NS}/configmaps/readmission-coordinator-participants"


def _job(data: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "federatedjob.yaml").read_text())
    spec = doc["spec"]
    spec.update(
        rounds=ROUNDS,
        minParticipants=3,
        minResponses=3,
        joinTimeoutSeconds=120,
        roundTimeoutSeconds=60,
        model={"name": "mlp", "hiddenUnits": [16]},
        training={"epochs": 1, "batchSize": 64, "optimizer": "adam", "learningRate": 0.01},
    )
    spec["participants"] = spec["participants"][:2]  # north-clinic comes on its own
    for i, site in enumerate(spec["participants"], start=1):
        site["data"] = {"path": f"/data/fedcare/site-{i}.csv"}
        site["volume"] = {"hostPath": str(data), "mountPath": "/data/fedcare"}
    return doc


def _standalone(data: Path) -> dict[str, Any]:
    return {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "Participant",
        "metadata": {"name": "north-clinic", "namespace": NS},
        "spec": {
            "job": {"name": "readmission"},
            "data": {"path": "/data/fedcare/site-3.csv"},
            "volume": {"hostPath": str(data), "mountPath": "/data/fedcare"},
        },
    }


def _ready(api: ApiServer, name: str) -> dict[str, Any]:
    body = get(api, f"{PARTS}/{name}") or {}
    conds = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") or {}


def test_a_participant_created_beside_the_job_is_admitted(
    with_crds: ApiServer, tmp_path: Path
) -> None:
    api = with_crds
    data = tmp_path / "data"
    synthesize(3, 1500, data, seed=3)
    kubelet, grpc_port = local_kubelet(api, tmp_path / "pods", "readmission")
    try:
        with operator_running(api, endpoint=f"127.0.0.1:{grpc_port}", timeout=120):
            assert api.request("POST", FJ, _job(data)).status == 201
            inline = {"readmission-st-mary-trainer", "readmission-city-general-trainer"}
            wait_until(lambda: names(api, JOBS) >= inline, 20, "inline trainer Jobs")
            cm = get(api, CM)
            assert cm is not None and "north-clinic" not in cm["data"]["names"]
            deployment = get(api, f"{DEPLOYMENTS}/readmission-coordinator")
            assert deployment is not None
            coordinator_pod = deployment["spec"]["template"]["spec"]
            kubelet.start("coordinator", coordinator_pod)
            for job in items(api, JOBS):
                kubelet.start(job["metadata"]["name"], job["spec"]["template"]["spec"])

            assert api.request("POST", PARTS, _standalone(data)).status == 201
            wait_until(
                lambda: (
                    "north-clinic\n" in ((get(api, CM) or {}).get("data") or {}).get("names", "")
                ),
                20,
                "north-clinic in the participants ConfigMap",
            )
            waiting = wait_until(
                lambda: (
                    _ready(api, "north-clinic").get("reason") == "WaitingForAdmission"
                    and _ready(api, "north-clinic")
                ),
                20,
                "north-clinic waiting for admission",
            )
            assert waiting["status"] == "False" and "admit 'north-clinic'" in waiting["message"]
            assert "north-clinic-trainer" not in names(api, JOBS)  # it would be refused now
            secrets = names(api, f"/api/v1/namespaces/{NS}/secrets")
            assert "north-clinic-tls" in secrets  # its certificate, from the job's CA

            kubelet.resync("coordinator")  # kubelet's periodic refresh of the mounted ConfigMap
            wait_until(lambda: "north-clinic-trainer" in names(api, JOBS), 30, "its trainer Job")
            trainer = get(api, f"{JOBS}/north-clinic-trainer")
            assert trainer is not None
            kubelet.start("north-clinic-trainer", trainer["spec"]["template"]["spec"])

            def finished() -> dict[str, Any] | None:
                status = (get(api, f"{FJ}/readmission") or {}).get("status") or {}
                return status if status.get("phase") in ("Succeeded", "Failed") else None

            status = wait_until(finished, 120, "the job to finish")
            assert status["phase"] == "Succeeded", (status, kubelet.log("coordinator"))
            assert [r["participants"] for r in status["rounds"]] == [3] * ROUNDS
            wait_until(
                lambda: (
                    ((get(api, f"{PARTS}/north-clinic") or {}).get("status") or {}).get(
                        "roundsCompleted"
                    )
                    == ROUNDS
                ),
                15,
                "north-clinic's rounds in its status",
            )
    finally:
        kubelet.stop_all()
