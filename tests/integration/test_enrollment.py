"""Enrollment of a site from another cluster: one-time token + CSR -> certificate, then it joins.

A real coordinator (in this process) serves the Enrollment service on its own port with
server-authenticated TLS; the site calls it with ``fedcare.enrollment.enroll`` (what
``fedcare enroll`` runs) and then trains as a real trainer process with the certificate it got.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from fedcare.coordinator import Coordinator
from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL, synthesize
from fedcare.enrollment import EnrollmentError, TokenStore, enroll
from fedcare.pki import (
    ROLE_OBSERVER,
    CertPair,
    create_ca,
    create_key_and_csr,
    identity_of,
    issue_client_cert,
    issue_server_cert,
)
from fedcare.spec import CoordinatorConfig, FederatedJobStatus, Phase, TlsFiles, TrainerConfig
from fedcare.transport import make_mtls_channel, make_tls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc
from fedcare.transport._generated import enrollment_pb2 as epb
from fedcare.transport._generated import enrollment_pb2_grpc as epb_grpc

JOB = "enrolled"


def _pki(tmp: Path) -> tuple[CertPair, CertPair, dict[str, CertPair]]:
    ca = create_ca(tmp / "pki", JOB)
    server = issue_server_cert(ca, tmp / "pki")
    clients = {
        "fedcare-observer": issue_client_cert(ca, tmp / "pki", "fedcare-observer", ROLE_OBSERVER),
        **{n: issue_client_cert(ca, tmp / "pki", n) for n in ("site-a", "site-b")},
    }
    return ca, server, clients


def _coordinator(tmp: Path, ca: CertPair, server: CertPair, **spec: Any) -> Coordinator:
    config = CoordinatorConfig.model_validate(
        {
            "job": {
                "metadata": {"name": JOB},
                "spec": {
                    "task": "binary-classification",
                    "model": {"name": "logistic-regression"},
                    "data": {"features": list(SYNTH_FEATURES), "label": SYNTH_LABEL},
                    "rounds": 2,
                    "minParticipants": 3,
                    "joinTimeoutSeconds": 90,
                    "roundTimeoutSeconds": 60,
                    "training": {"epochs": 1, "batchSize": 128, "learningRate": 0.05},
                    "repository": {"uri": f"file://{tmp / 'models'}"},
                    **spec,
                },
            },
            "tls": {"ca": str(ca.cert), "cert": str(server.cert), "key": str(server.key)},
            # Two sites are known in advance; the third enrolls.
            "participants": ["site-a", "site-b"],
            "enrollment": {"tokensFile": str(tmp / "tokens.json"), "caKey": str(ca.key)},
        }
    )
    return Coordinator(config=config).start()


def _endpoint(port: int) -> str:
    return f"127.0.0.1:{port}"


def test_token_reuse_wrong_name_and_unknown_token_are_refused(tmp_path: Path) -> None:
    ca, server, _clients = _pki(tmp_path)
    coordinator = _coordinator(tmp_path, ca, server)
    try:
        store = TokenStore(tmp_path / "tokens.json")
        token = store.issue(JOB, "site-c")
        assert token not in (tmp_path / "tokens.json").read_text()  # stored hashed only
        endpoint = _endpoint(coordinator.enroll_port)

        with pytest.raises(EnrollmentError, match="issued for another participant"):
            enroll(endpoint, ca.cert, token, "site-d", tmp_path / "d")
        assert not (tmp_path / "d" / "site-d.key").exists()  # the key of a refused site goes
        with pytest.raises(EnrollmentError, match="unknown enrollment token"):
            enroll(endpoint, ca.cert, token + "x", "site-c", tmp_path / "c")
        assert not coordinator.engine.is_participant("site-c")

        pair = enroll(endpoint, ca.cert, token, "site-c", tmp_path / "c")  # the wrong name
        # above did not burn it
        assert identity_of(pair.cert.read_bytes()) == ("site-c", "participant")
        assert (tmp_path / "c" / "ca.crt").read_bytes() == ca.cert.read_bytes()
        assert pair.key.stat().st_mode & 0o777 == 0o600
        assert coordinator.engine.is_participant("site-c")

        with pytest.raises(EnrollmentError, match="already used"):
            enroll(endpoint, ca.cert, token, "site-c", tmp_path / "c2")

        # The new certificate works on the mutual-TLS service, as site-c.
        tls = TlsFiles(ca=str(ca.cert), cert=str(pair.cert), key=str(pair.key))
        channel = make_mtls_channel(_endpoint(coordinator.grpc_port), tls, "fedcare-coordinator")
        try:
            stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
            described = stub.DescribeJob(pb.DescribeJobRequest(), timeout=10)
            assert described.job == JOB
        finally:
            channel.close()

        # An expired token, and a CSR for another name (refused before the token is spent).
        late = store.issue(JOB, "site-e", ttl=dt.timedelta(seconds=1))
        doc = json.loads((tmp_path / "tokens.json").read_text())
        for entry in doc["tokens"].values():
            if entry["participant"] == "site-e":
                entry["expiresAt"] = "2000-01-01T00:00:00Z"
        (tmp_path / "tokens.json").write_text(json.dumps(doc))
        with pytest.raises(EnrollmentError, match="expired"):
            enroll(endpoint, ca.cert, late, "site-e", tmp_path / "e")
        fresh = store.issue(JOB, "site-f")
        _, csr = create_key_and_csr(tmp_path / "x", "someone-else")
        channel = make_tls_channel(endpoint, str(ca.cert), "fedcare-coordinator")
        try:
            enroll_stub = epb_grpc.EnrollmentStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as err:
                enroll_stub.Enroll(
                    epb.EnrollRequest(token=fresh, participant="site-f", csr_pem=csr), timeout=10
                )
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        finally:
            channel.close()
        assert [r.used_at for r in store.records() if r.participant == "site-f"] == [None]
    finally:
        coordinator.stop()
    # A restarted coordinator (same token store) admits the site that enrolled, and only it.
    restarted = _coordinator(tmp_path, ca, server)
    try:
        assert store.enrolled(JOB) == ["site-c"] and store.enrolled("another-job") == []
        assert restarted.engine.is_participant("site-c")
        assert not any(restarted.engine.is_participant(n) for n in ("site-d", "site-e", "site-f"))
    finally:
        restarted.stop()


def test_an_enrolled_site_joins_and_trains(tmp_path: Path) -> None:
    """minParticipants 3 with two known sites: the job waits until the third enrolls (token +
    CSR, `fedcare token create` from the command line) and joins; then it trains to the end."""
    ca, server, clients = _pki(tmp_path)
    coordinator = _coordinator(tmp_path, ca, server)
    data = synthesize(3, 800, tmp_path / "data", seed=2)
    result: list[FederatedJobStatus] = []
    engine_thread = threading.Thread(target=lambda: result.append(coordinator.engine.run()))
    engine_thread.start()
    procs: list[subprocess.Popen[bytes]] = []

    def trainer(name: str, pair: CertPair, path: Path) -> None:
        config = TrainerConfig(
            participant=name,
            job=JOB,
            coordinator=_endpoint(coordinator.grpc_port),
            tls=TlsFiles(ca=str(ca.cert), cert=str(pair.cert), key=str(pair.key)),
            data={"path": str(path)},  # type: ignore[arg-type]
            threads=1,
        )
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config.to_json_dict()))
        with (tmp_path / f"{name}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fedcare", "trainer", "--config", str(cfg)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    try:
        trainer("site-a", clients["site-a"], data[0])
        trainer("site-b", clients["site-b"], data[1])
        made = subprocess.run(
            [sys.executable, "-m", "fedcare", "token", "create", JOB, "--participant", "site-c",
             "--tokens", str(tmp_path / "tokens.json")],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        token = made.stdout.strip()
        enrolled = subprocess.run(
            [sys.executable, "-m", "fedcare", "enroll", "--endpoint",
             _endpoint(coordinator.enroll_port), "--ca", str(ca.cert), "--token", token,
             "--participant", "site-c", "--out", str(tmp_path / "site-c")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        pair = CertPair(tmp_path / "site-c" / "site-c.crt", tmp_path / "site-c" / "site-c.key")
        trainer("site-c", pair, data[2])
        engine_thread.join(150)
        assert result, "the job did not end"
        (final,) = result
        assert final.phase is Phase.SUCCEEDED, final.message
        sites = {p.name: p for p in final.participants}
        assert set(sites) == {"site-a", "site-b", "site-c"}
        assert sites["site-c"].last_round == 2 and sites["site-c"].samples > 0
        assert all(r.participants == 3 for r in final.rounds)
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        coordinator.stop()
        engine_thread.join(5)
