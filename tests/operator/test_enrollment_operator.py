"""A Participant in a hospital's own cluster enrolls at a remote coordinator through its operator.

The hospital's cluster is the emulated API server (no kube-apiserver can run here) with the real
operator; the remote job's coordinator runs in this process with its Enrollment service on a
loopback port (its cluster is not emulated: only its endpoint matters to the hospital). The
Participant names that endpoint and a Secret with a one-time token and the job CA; the operator
creates the key and CSR, enrolls, stores the certificate and builds the trainer.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from fedcare.coordinator import Coordinator
from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL
from fedcare.enrollment import TokenStore
from fedcare.pki import create_ca, identity_of, issue_server_cert
from fedcare.spec import CoordinatorConfig
from tests.support.apiserver import ApiServer
from tests.support.operator import (
    CONFIGMAPS,
    JOBS,
    PARTS,
    SECRETS,
    get,
    operator_running,
    wait_until,
)


def _coordinator(tmp: Path) -> tuple[Coordinator, Path]:
    ca = create_ca(tmp / "pki", "regional")
    server = issue_server_cert(ca, tmp / "pki", sans=("coordinator.regional.example",))
    config = CoordinatorConfig.model_validate(
        {
            "job": {
                "metadata": {"name": "regional"},
                "spec": {
                    "data": {"features": list(SYNTH_FEATURES), "label": SYNTH_LABEL},
                    "rounds": 1,
                    "repository": {"uri": f"file://{tmp / 'models'}"},
                },
            },
            "tls": {"ca": str(ca.cert), "cert": str(server.cert), "key": str(server.key)},
            "participants": [],
            "enrollment": {"tokensFile": str(tmp / "tokens.json"), "caKey": str(ca.key)},
        }
    )
    return Coordinator(config=config).start(), ca.cert


def _secret(name: str, token: str, ca: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {
            "token": base64.b64encode(token.encode()).decode(),
            "ca.crt": base64.b64encode(ca).decode(),
        },
    }


def _participant(name: str, secret: str, coordinator: Coordinator) -> dict[str, Any]:
    return {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "Participant",
        "metadata": {"name": name},
        "spec": {
            "job": {
                "name": "regional",
                "endpoint": f"127.0.0.1:{coordinator.grpc_port}",
            },
            "data": {"path": "/data/admissions.csv"},
            "enrollment": {
                "tokenSecret": secret,
                "endpoint": f"127.0.0.1:{coordinator.enroll_port}",
                "serverName": "coordinator.regional.example",
            },
        },
    }


def test_the_operator_enrolls_a_remote_site_once(with_crds: ApiServer, tmp_path: Path) -> None:
    """Token + CSR -> certificate Secret and trainer; the same token for another site is refused
    (condition Failed, reason EnrollmentRefused)."""
    api = with_crds
    coordinator, ca_cert = _coordinator(tmp_path)
    try:
        token = TokenStore(tmp_path / "tokens.json").issue("regional", "st-luke")
        assert api.request("POST", SECRETS, _secret("st-luke-token", token, ca_cert.read_bytes()))
        with operator_running(api):
            created = api.request(
                "POST", PARTS, _participant("st-luke", "st-luke-token", coordinator)
            )
            assert created.status == 201, created.body
            secret = wait_until(lambda: get(api, f"{SECRETS}/st-luke-tls"), 20, "the certificate")
            cert = base64.b64decode(secret["data"]["tls.crt"])
            assert identity_of(cert) == ("st-luke", "participant")
            assert base64.b64decode(secret["data"]["ca.crt"]) == ca_cert.read_bytes()
            assert coordinator.engine.is_participant("st-luke")
            trainer = wait_until(lambda: get(api, f"{JOBS}/st-luke-trainer"), 10, "the trainer")
            assert trainer["metadata"]["ownerReferences"][0]["name"] == "st-luke"
            config = get(api, f"{CONFIGMAPS}/st-luke-trainer")
            assert config is not None
            trainer_yaml = yaml.safe_load(config["data"]["trainer.yaml"])
            assert trainer_yaml["coordinator"] == f"127.0.0.1:{coordinator.grpc_port}"
            assert trainer_yaml["serverName"] == "coordinator.regional.example"

            # The same token presented for another name (its own Participant) is refused.
            api.request("POST", PARTS, _participant("st-luke-2", "st-luke-token", coordinator))

            def refused() -> dict[str, Any] | None:
                status = (get(api, f"{PARTS}/st-luke-2") or {}).get("status") or {}
                return status if status.get("phase") == "Failed" else None

            status = wait_until(refused, 20, "the second enrollment refused")
            cond = {c["type"]: c for c in status["conditions"]}["Failed"]
            assert cond["reason"] == "EnrollmentRefused"
            assert "issued for another participant" in cond["message"]
            assert get(api, f"{SECRETS}/st-luke-2-tls") is None
    finally:
        coordinator.stop()
