"""kind-cluster/: shellcheck-clean scripts, valid configs and manifests, and the demo's steps.

No Docker engine runs here, so the scripts run against stand-ins for docker, kind, kubectl and
helm (tests/deploy/fake_tools.py) that record every call and answer like the real tools (a node
address, a token, the job CA, phase Succeeded). The test then checks the order of the steps, the
objects applied (each Participant validated against the CRD and fedcare's model) and that the
enrollment token never appears on a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fedcare.spec import Participant
from tests.deploy.conftest import REPO, tool
from tests.support import kschema

KIND = REPO / "kind-cluster"
SCRIPTS = sorted(KIND.glob("*.sh"))
FAKE = Path(__file__).with_name("fake_tools.py")
TOKEN = "fct_fake-one-time-token"
NODE_IP = "172.18.0.7"


def test_the_scripts_are_there() -> None:
    names = {p.name for p in SCRIPTS}
    assert {
        "lib.sh",
        "multi-cluster.sh",
        "single-cluster.sh",
        "enroll.sh",
        "build-images.sh",
        "down.sh",
    } <= names
    for script in SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script.name
        if script.name != "lib.sh":
            assert "set -euo pipefail" in text, script.name
            assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_shellcheck_is_clean() -> None:
    result = subprocess.run(
        [tool("shellcheck"), "--external-sources", "--severity=style", "--format=gcc"]
        + [str(p) for p in SCRIPTS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_bash_parses(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_kind_configs_name_the_clusters_the_scripts_use() -> None:
    names = {}
    for path in sorted((KIND / "config").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert (doc["kind"], doc["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
        assert [n["role"] for n in doc["nodes"]] == ["control-plane"]
        names[path.stem] = doc["name"]
    assert names == {
        "coordinator": "fedcare-coordinator",
        "hospital-a": "fedcare-hospital-a",
        "hospital-b": "fedcare-hospital-b",
        "single": "fedcare",
    }
    subnets = [
        yaml.safe_load((KIND / "config" / f"{n}.yaml").read_text())["networking"]["podSubnet"]
        for n in ("coordinator", "hospital-a", "hospital-b")
    ]
    assert len(set(subnets)) == 3


def test_the_built_in_manifests_validate() -> None:
    service = yaml.safe_load((KIND / "manifests" / "coordinator-external.yaml").read_text())
    kubernetes_validate.validate(service, "1.33.0", strict=True)
    # It selects the coordinator pods the operator builds.
    from fedcare_operator import builders

    assert service["spec"]["selector"] == builders.selector("readmission", "coordinator")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == builders.GRPC_PORT
    assert ports["enroll"]["port"] == builders.ENROLL_PORT
    job = yaml.safe_load((KIND / "manifests" / "readmission.yaml").read_text())
    assert job["spec"].get("participants", []) == [], "the hospitals enroll; none inline"
    assert job["spec"]["minParticipants"] == 2


# ---- the scripts' steps, against stand-in tools --------------------------------------------


def _run(tmp_path: Path, script: str, *args: str) -> list[dict[str, Any]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("docker", "kind", "kubectl", "helm", "sleep"):
        stub = bin_dir / name
        stub.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
        stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "FAKE_TOOLS_LOG": str(log),
        "FAKE_TOOLS_TOKEN": TOKEN,
        "FAKE_TOOLS_NODE_IP": NODE_IP,
    }
    result = subprocess.run(
        ["bash", str(KIND / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _calls(calls: list[dict[str, Any]], tool_name: str, *words: str) -> list[dict[str, Any]]:
    return [c for c in calls if c["tool"] == tool_name and all(w in c["argv"] for w in words)]


def _applied(calls: list[dict[str, Any]], kind: str) -> list[tuple[list[str], dict[str, Any]]]:
    out = []
    for call in _calls(calls, "kubectl", "apply"):
        for doc in yaml.safe_load_all(call.get("stdin") or ""):
            if doc and doc.get("kind") == kind:
                out.append((call["argv"], doc))
    return out


def _context(argv: list[str]) -> str:
    return next(
        a.split("=", 1)[1] if "=" in a else argv[argv.index(a) + 1]
        for a in argv
        if a.startswith("--context")
    )


def _check_participant(doc: dict[str, Any]) -> None:
    crd = yaml.safe_load((REPO / "crds" / "participants.fedcare.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    body = {k: v for k, v in doc.items() if k != "metadata"}
    assert kschema.prune(body, schema) == []
    kschema.apply_defaults(body, schema)
    assert kschema.SchemaValidator(schema).errors(body) == []
    Participant.model_validate(doc)


def _no_token_on_a_command_line(calls: list[dict[str, Any]]) -> None:
    for call in calls:
        assert not any(TOKEN in a for a in call["argv"]), call["argv"]


def test_multi_cluster_builds_installs_enrolls_and_watches(tmp_path: Path) -> None:
    calls = _run(tmp_path, "multi-cluster.sh")
    clusters = ["fedcare-coordinator", "fedcare-hospital-a", "fedcare-hospital-b"]
    builds = _calls(calls, "docker", "build")
    assert len(builds) == 2
    assert any("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in b["argv"] for b in builds)
    for cluster in clusters:
        (create,) = _calls(calls, "kind", "create", "cluster", cluster)
        config = create["argv"][create["argv"].index("--config") + 1]
        assert yaml.safe_load(Path(config).read_text())["name"] == cluster
        assert _calls(calls, "kind", "load", "docker-image", cluster)
        (install,) = _calls(calls, "helm", "upgrade", "--install", f"kind-{cluster}")
        argv = install["argv"]
        assert str(REPO / "helm-chart" / "fedcare") in argv
        assert "image.repository=ghcr.io/fedcare/operator" in argv
        assert "runtimeImage.tag=0.1.0" in argv
    # Each hospital's table goes to its own node only.
    copies = _calls(calls, "docker", "cp")
    assert [(Path(c["argv"][1]).name, c["argv"][2]) for c in copies] == [
        ("site-1.csv", "fedcare-hospital-a-control-plane:/data/fedcare/"),
        ("site-2.csv", "fedcare-hospital-b-control-plane:/data/fedcare/"),
    ]
    jobs = _applied(calls, "FederatedJob") + [
        (c["argv"], {})
        for c in _calls(calls, "kubectl", "apply", "-f")
        if any(a.endswith("manifests/readmission.yaml") for a in c["argv"])
    ]
    assert jobs and all(_context(argv) == "kind-fedcare-coordinator" for argv, _ in jobs)
    tokens = _calls(calls, "kubectl", "exec", "token", "create")
    assert [t["argv"][t["argv"].index("--participant") + 1] for t in tokens] == [
        "hospital-a",
        "hospital-b",
    ]
    participants = _applied(calls, "Participant")
    assert [(_context(a), d["metadata"]["name"]) for a, d in participants] == [
        ("kind-fedcare-hospital-a", "hospital-a"),
        ("kind-fedcare-hospital-b", "hospital-b"),
    ]
    for _, doc in participants:
        _check_participant(doc)
        spec = doc["spec"]
        assert spec["job"] == {"name": "readmission", "endpoint": f"{NODE_IP}:30051"}
        assert spec["enrollment"]["endpoint"] == f"{NODE_IP}:30052"
        assert spec["enrollment"]["serverName"] == "fedcare-coordinator"
        assert spec["enrollment"]["tokenSecret"] == f"{doc['metadata']['name']}-token"
    secrets = _calls(calls, "kubectl", "create", "secret", "generic")
    assert len(secrets) == 2
    for secret in secrets:
        assert any(a.startswith("--from-file=token=") for a in secret["argv"])
        assert any(a.startswith("--from-file=ca.crt=") for a in secret["argv"])
    _no_token_on_a_command_line(calls)
    # Steps in order: the job before its tokens, the tokens before the Participants, then watch.
    order = [i for i, c in enumerate(calls) if c["tool"] == "kubectl"]
    first_token = calls.index(tokens[0])
    watch = _calls(calls, "kubectl", "get", "fedjobs", "-w")
    assert watch and calls.index(watch[0]) > first_token > min(order)


def test_single_cluster_uses_three_namespaces_and_the_service_dns_name(tmp_path: Path) -> None:
    calls = _run(tmp_path, "single-cluster.sh")
    assert len(_calls(calls, "kind", "create", "cluster")) == 1
    (install,) = _calls(calls, "helm", "upgrade", "--install")
    assert "namespaced=true" not in install["argv"]
    participants = _applied(calls, "Participant")
    service = "readmission-coordinator.fedcare-coordinator.svc"
    got = []
    for argv, doc in participants:
        _check_participant(doc)
        got.append((argv[argv.index("-n") + 1], doc["spec"]["job"]["endpoint"]))
        assert doc["spec"]["enrollment"] == {
            "tokenSecret": f"{doc['metadata']['name']}-token",
            "endpoint": f"{service}:50052",
            "serverName": service,
        }
    assert got == [("hospital-a", f"{service}:50051"), ("hospital-b", f"{service}:50051")]
    (copy,) = _calls(calls, "docker", "cp")[:1]
    assert copy["argv"][2] == "fedcare-control-plane:/data/fedcare/"
    _no_token_on_a_command_line(calls)


def test_single_cluster_with_one_namespaced_operator_per_institution(tmp_path: Path) -> None:
    calls = _run(tmp_path, "single-cluster.sh", "--per-namespace-operators")
    installs = _calls(calls, "helm", "upgrade", "--install")
    namespaces = [i["argv"][i["argv"].index("--namespace") + 1] for i in installs]
    assert namespaces == ["fedcare-coordinator", "hospital-a", "hospital-b"]
    assert all("namespaced=true" in i["argv"] for i in installs)


def test_down_deletes_only_existing_clusters(tmp_path: Path) -> None:
    calls = _run(tmp_path, "down.sh")
    assert _calls(calls, "kind", "get", "clusters")
    assert not _calls(calls, "kind", "delete")


def test_the_ca_and_token_reach_the_secret_files(tmp_path: Path) -> None:
    # The fake kubectl records the files --from-file names while they exist.
    calls = _run(tmp_path, "enroll.sh", "hospital-c", "kind-fedcare-hospital-c", "fedcare",
                 "/data/fedcare/site-3.csv")  # fmt: skip
    (secret,) = _calls(calls, "kubectl", "create", "secret", "generic")
    files = secret["files"]
    assert files["token"].strip() == TOKEN
    assert files["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    ((_, participant),) = _applied(calls, "Participant")
    assert participant["spec"]["job"]["endpoint"] == f"{NODE_IP}:30051"
