"""End to end on the emulated API server: kubectl apply -> the operator builds the pods -> real
coordinator and trainer processes train -> the status daemon streams status -> kubectl shows it.

No kube-apiserver, kubelet or container runtime can run on the machines these tests run on. The
API server is the emulator of :mod:`tests.support.apiserver`, and the test plays the kubelet
(:class:`tests.support.kubelet.FakeKubelet`): it reads the Deployment and the trainer Jobs the
operator built, materializes their mounted Secrets and ConfigMaps into temporary files, rewrites
the in-pod paths (``/etc/fedcare/...``, ``/var/lib/fedcare``, ``/tmp``, the dataset folder) to
those files, the coordinator Service's DNS name to ``127.0.0.1`` and the listen addresses to
ports chosen here, and starts the containers' commands (``fedcare coordinator|trainer
--config ...``) as local processes with the containers' environment. The operator runs for real
(kopf, in-process); ``FEDCARE_COORDINATOR_ENDPOINT`` points its status daemon at the chosen port.
Midway the test kills the coordinator process and starts it again from the same pod (as a
container restart); the trainers and the daemon reconnect and no round is counted twice.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
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
    PARTS,
    get,
    items,
    names,
    operator_running,
    wait_until,
)

SITES = ("st-mary", "city-general", "north-clinic")
#: Enough rounds that the coordinator can be killed midway (a round takes well under 1 s).
ROUNDS = 20


def _job(data: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "federatedjob.yaml").read_text())
    spec = doc["spec"]
    spec.update(
        rounds=ROUNDS,
        minResponses=3,
        joinTimeoutSeconds=120,
        roundTimeoutSeconds=60,
        model={"name": "mlp", "hiddenUnits": [16]},
        training={"epochs": 3, "batchSize": 64, "optimizer": "adam", "learningRate": 0.01},
    )
    for i, site in enumerate(spec["participants"], start=1):
        site["data"] = {"path": f"/data/fedcare/site-{i}.csv"}
        site["volume"] = {"hostPath": str(data), "mountPath": "/data/fedcare"}
    return doc


def _status(api: ApiServer) -> dict[str, Any]:
    status: dict[str, Any] = (get(api, f"{FJ}/readmission") or {}).get("status") or {}
    return status


def test_a_federatedjob_trains_end_to_end(with_crds: ApiServer, tmp_path: Path) -> None:
    """The issue's key scenario; see the module docstring for what the test does as kubelet."""
    api = with_crds
    data = tmp_path / "data"
    synthesize(3, 1500, data, seed=3)
    manifest = tmp_path / "readmission.yaml"
    manifest.write_text(yaml.safe_dump(_job(data), sort_keys=False))
    kubelet, grpc_port = local_kubelet(api, tmp_path / "pods", "readmission")
    use_kubectl = api.kubectl_path is not None or shutil.which("kubectl") is not None
    try:
        with operator_running(api, endpoint=f"127.0.0.1:{grpc_port}", timeout=120):
            if use_kubectl:
                out = api.kubectl("apply", "-f", str(manifest))
                assert out.returncode == 0, out.stderr
            else:
                assert api.request("POST", FJ, _job(data)).status == 201
            trainers = {f"readmission-{s}-trainer" for s in SITES}
            wait_until(lambda: names(api, JOBS) >= trainers, 20, "trainer Jobs")
            deployment = get(api, f"{DEPLOYMENTS}/readmission-coordinator")
            assert deployment is not None
            coordinator_pod = deployment["spec"]["template"]["spec"]
            kubelet.start("coordinator", coordinator_pod)
            for job in items(api, JOBS):
                kubelet.start(job["metadata"]["name"], job["spec"]["template"]["spec"])

            def trained(rounds: int) -> bool:
                status = _status(api)
                return len(status.get("rounds") or []) >= rounds or status.get("phase") in (
                    "Failed",
                    "Succeeded",
                )

            wait_until(lambda: trained(1), 90, "round 1 in .status")
            assert _status(api)["phase"] == "Training", "the job ended before the restart"
            # The daemon's .status may lag the coordinator (a loaded machine): ask the
            # coordinator itself that rounds are still left, so the restart is really mid-job.
            http = kubelet.replace["0.0.0.0:8080"]
            with urllib.request.urlopen(f"http://{http}/status", timeout=10) as r:
                live = json.loads(r.read())
            assert live["phase"] == "Training" and live["currentRound"] < ROUNDS, live
            # A container restart: same pod folder (emptyDir keeps the model repository).
            kubelet.stop("coordinator")
            kubelet.start("coordinator", coordinator_pod)

            def finished() -> dict[str, Any] | None:
                status = _status(api)
                return status if status.get("phase") in ("Succeeded", "Failed") else None

            status = wait_until(finished, 150, "the job to finish")
            assert status["phase"] == "Succeeded", (status, kubelet.log("coordinator"))
            rounds = [r["round"] for r in status["rounds"]]
            assert rounds == list(range(1, ROUNDS + 1)), rounds  # none twice, none missing
            assert status["currentRound"] == ROUNDS and status["totalRounds"] == ROUNDS
            latest = status["latestModel"]
            assert 0.5 < latest["metrics"]["auroc"] <= 1.0
            conds = {c["type"]: c for c in status["conditions"]}
            assert conds["Complete"]["status"] == "True"
            # The daemon saw the stream break and come back; the coordinator resumed its run.
            # (Once, under a loaded full run, Degraded was missing: most likely the job had
            # ended before the kill while .status still said Training; hence the check of the
            # coordinator's own /status above. Diagnostics go into the failure message.)
            assert "Degraded" in conds, (status["conditions"], kubelet.log("coordinator")[-3000:])
            assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == (
                "False",
                "CoordinatorReachable",
            )
            assert conds["Resumed"]["status"] == "True", conds
            assert status["observedGeneration"] == 1

            def participants_done() -> list[dict[str, Any]] | None:
                found = [p.get("status") or {} for p in items(api, PARTS)]
                done = all(s.get("phase") == "Succeeded" for s in found)
                return found if done and len(found) == 3 else None

            for pstatus in wait_until(participants_done, 15, "Participants Succeeded"):
                # minResponses = all 3 sites: every stored round includes every site's update,
                # counted by the coordinator (and recounted from the versions after its restart).
                assert pstatus["roundsCompleted"] == ROUNDS
                assert pstatus["samples"] > 0 and pstatus["lastSeen"]
                ready = {c["type"]: c for c in pstatus["conditions"]}["Ready"]
                assert ready["reason"] in ("Joined", "Disconnected")

            if use_kubectl:
                out = api.kubectl("get", "fedjobs")
                assert out.returncode == 0, out.stderr
                header, row = out.stdout.splitlines()[:2]
                assert header.split()[:7] == [
                    "NAME",
                    "PHASE",
                    "ROUND",
                    "TOTAL",
                    "PARTICIPANTS",
                    "AUROC",
                    "MODEL",
                ]
                cells = row.split()
                assert cells[:4] == ["readmission", "Succeeded", str(ROUNDS), str(ROUNDS)]
                assert abs(float(cells[5]) - latest["metrics"]["auroc"]) < 1e-3
                assert cells[6] == latest["version"]
                parts = api.kubectl("get", "participants")
                assert parts.returncode == 0, parts.stderr
                assert parts.stdout.count("Succeeded") == 3
    finally:
        kubelet.stop_all()
