"""The end-to-end scenario of ``tests/operator/test_e2e_emulator.py`` on a real cluster (kind).

Skipped unless pytest gets ``--with-e2e``; see the README ("On Kubernetes") for the set-up:
a kind cluster whose node has the synthetic tables in ``/data/fedcare``, the runtime image
loaded into it, and kubectl on PATH. Here the kubelet, the Deployment and Job controllers and
the cluster DNS are real. The operator runs on this machine (out of cluster, like ``kopf run``
during development) with the current kubeconfig; its status daemon reaches the coordinator
through ``kubectl port-forward`` of the coordinator Service.

Environment: ``FEDCARE_E2E_CONTEXT`` (kubeconfig context, default ``kind-fedcare``),
``FEDCARE_E2E_IMAGE`` (runtime image, default ``ghcr.io/fedcare/runtime:0.1.0``),
``FEDCARE_E2E_TIMEOUT`` (seconds for the job to finish, default 900).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONTEXT = os.environ.get("FEDCARE_E2E_CONTEXT", "kind-fedcare")
IMAGE = os.environ.get("FEDCARE_E2E_IMAGE", "ghcr.io/fedcare/runtime:0.1.0")
TIMEOUT = float(os.environ.get("FEDCARE_E2E_TIMEOUT", "900"))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(int(TIMEOUT) + 300)]


def _kubectl(*args: str, check: bool = True) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH")
    result = subprocess.run(
        [kubectl, f"--context={CONTEXT}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace, deleted afterwards (with everything the job created)."""
    name = f"fedcare-e2e-{secrets.token_hex(3)}"
    _kubectl("apply", "-f", str(REPO / "crds"))
    _kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        _kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_a_federatedjob_trains_on_kind(namespace: str, tmp_path: Path) -> None:
    """kubectl apply -> operator -> coordinator and trainer pods -> Succeeded in get fedjobs."""
    doc = yaml.safe_load((REPO / "examples" / "federatedjob.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["rounds"] = 3
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    port = _free_port()
    env = {
        **os.environ,
        "FEDCARE_RUNTIME_IMAGE": IMAGE,
        "FEDCARE_IMAGE_PULL_POLICY": "IfNotPresent",
        "FEDCARE_COORDINATOR_ENDPOINT": f"127.0.0.1:{port}",
    }
    log = (tmp_path / "operator.log").open("wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "fedcare_operator", "--standalone", "--namespace", namespace],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    forward: subprocess.Popen[bytes] | None = None
    try:
        _kubectl("config", "use-context", CONTEXT)
        _kubectl("apply", "-n", namespace, "-f", str(manifest))
        deadline = time.monotonic() + TIMEOUT
        while not _kubectl("get", "-n", namespace, "svc", "-o", "name").strip():
            assert time.monotonic() < deadline, "no coordinator Service"
            time.sleep(2)
        _kubectl(
            "rollout", "status", "-n", namespace, "deployment/readmission-coordinator",
            f"--timeout={int(TIMEOUT)}s",
        )  # fmt: skip
        forward = subprocess.Popen(
            [
                "kubectl", f"--context={CONTEXT}", "port-forward", "-n", namespace,
                "svc/readmission-coordinator", f"{port}:50051",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        phase = ""
        while phase not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"job still {phase!r} after {TIMEOUT:g}s"
            time.sleep(5)
            phase = _kubectl(
                "get", "-n", namespace, "fedjob", "readmission", "-o", "jsonpath={.status.phase}"
            )
        assert phase == "Succeeded", _kubectl("describe", "-n", namespace, "fedjob", "readmission")
        row = _kubectl("get", "-n", namespace, "fedjobs", "--no-headers").split()
        assert row[:4] == ["readmission", "Succeeded", "3", "3"], row
        assert float(row[5]) > 0.5 and row[6].startswith("v")
        parts = _kubectl("get", "-n", namespace, "participants", "--no-headers").splitlines()
        assert len(parts) == 3 and all(line.split()[1] == "Succeeded" for line in parts)
        jobs = _kubectl(
            "get", "-n", namespace, "jobs", "-o", "jsonpath={.items[*].status.succeeded}"
        ).split()
        assert jobs == ["1", "1", "1"]
    finally:
        if forward is not None:
            forward.terminate()
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()
