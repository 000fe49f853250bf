"""Pure builders: spec in, manifest dict out. No cluster, no kopf."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcare.pki import identity_of
from fedcare.spec import CoordinatorConfig, FederatedJob, Participant, TrainerConfig
from fedcare_operator import builders, certs
from fedcare_operator.builders import InvalidSpec
from fedcare_operator.settings import OperatorSettings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def _body() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "federatedjob.yaml").read_text())
    doc["metadata"]["namespace"] = "hospitals"
    return doc


def _job() -> FederatedJob:
    return builders.parse_job(_body())


def _participant(**spec: Any) -> Participant:
    body = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "Participant",
        "metadata": {"name": "st-mary", "namespace": "hospitals"},
        "spec": {"job": {"name": "readmission"}, "data": {"path": "/data/st/a.csv"}, **spec},
    }
    return builders.parse_participant(body)


def test_child_names_stay_dns_labels() -> None:
    assert builders.child_name("readmission", "st-mary") == "readmission-st-mary"
    long = builders.child_name("a" * 60, "b" * 60, "trainer")
    assert len(long) == 63 and long != builders.child_name("a" * 60, "b" * 61, "trainer")
    assert builders.child_name("x" * 63, "tls").rsplit("-", 1)[0].isalnum()


def test_invalid_specs_name_the_field() -> None:
    body = _body()
    body["spec"]["minResponses"] = 9
    with pytest.raises(InvalidSpec, match=r"FederatedJob hospitals/readmission: spec: .*minResp"):
        builders.parse_job(body)
    body = _body()
    body["spec"]["participants"][0]["data"]["path"] = "data/site-1.csv"
    with pytest.raises(InvalidSpec, match=r"spec.participants\[0\].data.path: .* absolute"):
        builders.parse_job(body)
    with pytest.raises(InvalidSpec, match="volume needs exactly one"):
        _participant(volume={"hostPath": "/a", "claimName": "b"})


def test_coordinator_configmap_deployment_and_service() -> None:
    job = _job()
    cm = builders.coordinator_config_map(job, "fedcare-operator", "uid-1")
    assert cm["metadata"]["name"] == "readmission-coordinator"
    config = CoordinatorConfig.model_validate(yaml.safe_load(cm["data"]["coordinator.yaml"]))
    assert (config.listen, config.http_listen) == ("0.0.0.0:50051", "0.0.0.0:8080")
    assert config.observers == ["fedcare-operator"] and config.exit_on_completion is False
    assert config.run_id == "uid-1" and config.tls.ca == "/etc/fedcare/tls/ca.crt"
    assert config.job.metadata.name == "readmission"

    dep = builders.coordinator_deployment(job, "img:1", "IfNotPresent", cm)
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert set(spec["selector"]["matchLabels"].items()) <= set(
        spec["template"]["metadata"]["labels"].items()
    )
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["command"] == [
        "fedcare",
        "coordinator",
        "--config",
        "/etc/fedcare/coordinator.yaml",
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {p["containerPort"] for p in container["ports"]} == {50051, 8080, 50052}
    assert config.enrollment is not None and config.enrollment.listen == "0.0.0.0:50052"
    assert config.enrollment.ca_key == "/etc/fedcare/ca/ca.key"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/fedcare/tls"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "readmission-coordinator-tls"
    # A changed config changes the pod template (a rollout).
    job2 = job.model_copy(update={"spec": job.spec.model_copy(update={"rounds": 9})})
    cm2 = builders.coordinator_config_map(job2, "fedcare-operator", "uid-1")
    dep2 = builders.coordinator_deployment(job2, "img:1", "IfNotPresent", cm2)
    key = builders.CONFIG_HASH_ANNOTATION
    assert (
        dep2["spec"]["template"]["metadata"]["annotations"][key]
        != spec["template"]["metadata"]["annotations"][key]
    )

    svc = builders.coordinator_service(job)
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {
        ("grpc", 50051),
        ("http", 8080),
        ("enroll", 50052),
    }
    assert svc["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_repository_storage_of_the_coordinator() -> None:
    """Without settings the working folder is an emptyDir; spec.repository can make it a claim,
    and give an S3 endpoint and a credentials Secret (mounted read-only, named in the env)."""
    job = _job()
    cm = builders.coordinator_config_map(job, "fedcare-operator", "uid-1")
    pod = builders.coordinator_deployment(job, "img:1", "IfNotPresent", cm)["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    assert "s3-credentials" not in volumes
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert not env & {"FEDCARE_S3_ENDPOINT_URL", "FEDCARE_S3_CREDENTIALS_DIR"}

    body = _body()
    body["spec"]["repository"] = {
        "uri": "s3://models/consortium",
        "endpoint": "http://minio.storage:9000",
        "credentialsSecret": "minio-fedcare",
        "persistentVolumeClaim": "readmission-work",
    }
    job = builders.parse_job(body)
    cm = builders.coordinator_config_map(job, "fedcare-operator", "uid-1")
    pod = builders.coordinator_deployment(job, "img:1", "IfNotPresent", cm)["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["work"]["persistentVolumeClaim"] == {"claimName": "readmission-work"}
    assert volumes["s3-credentials"]["secret"]["secretName"] == "minio-fedcare"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FEDCARE_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert env["FEDCARE_S3_CREDENTIALS_DIR"] == mounts["s3-credentials"]["mountPath"]
    assert mounts["s3-credentials"]["readOnly"] is True
    assert mounts["work"]["mountPath"] == "/var/lib/fedcare"

    body["spec"]["repository"] = {"uri": "file://models", "credentialsSecret": "minio-fedcare"}
    with pytest.raises(InvalidSpec, match=r"spec.repository: .*credentialsSecret applies to s3"):
        builders.parse_job(body)


def test_participants_configmap_lists_sites_beyond_the_inline_ones() -> None:
    """Participant objects naming the job, by site identity, minus its inline sites; the
    coordinator reads the list from a folder mount (so kubelet can swap in updates)."""
    job = _job()
    inline = {site.name for site in job.spec.participants}

    def obj(name: str, job_name: str = "readmission", site: str | None = None) -> dict[str, Any]:
        labels = {builders.PARTICIPANT_LABEL: site} if site else {}
        return {"metadata": {"name": name, "labels": labels}, "spec": {"job": {"name": job_name}}}

    found = [
        obj("readmission-st-mary", site="st-mary"),  # inline: admitted by the spec already
        obj("west-valley"),
        obj("east-lab", site="east-laboratory"),
        obj("other", job_name="another-job"),
        obj("west-valley"),
    ]
    sites = builders.admitted_sites("readmission", inline, found)
    assert sites == ["east-laboratory", "west-valley"]
    cm = builders.participants_config_map("readmission", "hospitals", sites)
    assert cm["metadata"]["name"] == "readmission-coordinator-participants"
    assert cm["data"]["names"].splitlines()[1:] == ["east-laboratory", "west-valley"]

    config_map = builders.coordinator_config_map(job, "fedcare-operator", "uid-1")
    config = CoordinatorConfig.model_validate(
        yaml.safe_load(config_map["data"]["coordinator.yaml"])
    )
    assert config.participants_file == "/etc/fedcare/participants/names"
    pod = builders.coordinator_deployment(job, "img:1", "IfNotPresent", config_map)["spec"][
        "template"
    ]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["participants"]["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "participants"]
    assert mount == {
        "name": "participants",
        "mountPath": "/etc/fedcare/participants",
        "readOnly": True,
    }


def test_every_child_is_labelled() -> None:
    job = _job()
    ca = certs.new_ca("readmission")
    objs = [
        builders.ca_secret(job, ca),
        builders.coordinator_tls_secret(job, ca.cert, certs.server_cert(ca, ["x"])),
        builders.observer_secret(job, ca.cert, certs.observer_cert(ca, "fedcare-operator")),
        builders.coordinator_service(job),
        *(builders.inline_participant(job, s) for s in job.spec.participants),
    ]
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["fedcare.io/job"] == "readmission"
        assert labels["app.kubernetes.io/name"] == "fedcare"
        assert labels["app.kubernetes.io/managed-by"] == "fedcare-operator"
        assert obj["metadata"]["namespace"] == "hospitals"


def test_certificates_carry_identity_and_role() -> None:
    job = _job()
    ca = certs.new_ca("readmission")
    server = certs.server_cert(ca, builders.server_sans("readmission", "hospitals"))
    secret = builders.coordinator_tls_secret(job, ca.cert, server)
    assert secret["type"] == "kubernetes.io/tls"
    assert builders.secret_bytes(secret, "ca.crt") == ca.cert
    assert identity_of(builders.secret_bytes(secret, "tls.crt")) == (
        "fedcare-coordinator",
        "coordinator",
    )
    obs = certs.observer_cert(ca, "fedcare-operator")
    assert identity_of(obs.cert) == ("fedcare-operator", "observer")
    client = certs.client_cert(ca, "st-mary")
    assert identity_of(client.cert) == ("st-mary", "participant")
    assert base64.b64decode(builders.ca_secret(job, ca)["data"]["ca.key"]) == ca.key


def test_inline_participants_keep_their_site_identity() -> None:
    job = _job()
    objs = [builders.inline_participant(job, s) for s in job.spec.participants]
    assert [o["metadata"]["name"] for o in objs] == [
        "readmission-st-mary",
        "readmission-city-general",
        "readmission-north-clinic",
    ]
    assert [builders.site_identity(o) for o in objs] == ["st-mary", "city-general", "north-clinic"]
    part = Participant.model_validate(objs[2])
    assert part.spec.volume is not None and part.spec.volume.host_path == "/data/fedcare"


def test_trainer_job_gpu_placement_and_dataset() -> None:
    part = _participant(
        resources={"cpu": "2", "memory": "4Gi", "gpu": 2},
        volume={"claimName": "st-mary-data"},
        nodeSelector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    host = builders.service_host("readmission", "hospitals")
    cm = builders.trainer_config_map(part, f"{host}:50051", host)
    config = TrainerConfig.model_validate(yaml.safe_load(cm["data"]["trainer.yaml"]))
    assert config.participant == "st-mary" and config.job == "readmission"
    assert config.coordinator == "readmission-coordinator.hospitals.svc:50051"
    assert config.server_name == host and config.device == "cuda" and config.threads == 2
    job = builders.trainer_job(part, "img:1", "Always", cm)
    assert job["spec"]["backoffLimit"] == builders.TRAINER_BACKOFF_LIMIT
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["restartPolicy"] == "Never"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dataset"]["persistentVolumeClaim"] == {
        "claimName": "st-mary-data",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["dataset"] == {"name": "dataset", "mountPath": "/data/st", "readOnly": True}
    assert volumes["tls"]["secret"]["secretName"] == "st-mary-tls"


def test_without_a_volume_the_data_folder_comes_from_the_node() -> None:
    part = _participant()
    volume, mount = builders.dataset_volume(part)
    assert volume == {"name": "dataset", "hostPath": {"path": "/data/st", "type": "Directory"}}
    assert mount["readOnly"] is True and mount["mountPath"] == "/data/st"
    cm = builders.trainer_config_map(part, "h:1", "h")
    pod = builders.trainer_job(part, "i", "Never", cm)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_settings_from_the_environment() -> None:
    default = OperatorSettings.from_env({})
    assert default.runtime_image == "ghcr.io/fedcare/runtime:0.1.0"
    assert default.endpoint_for("j", "ns", "j-coordinator", 50051) == "j-coordinator.ns.svc:50051"
    custom = OperatorSettings.from_env(
        {"FEDCARE_RUNTIME_IMAGE": "r:2", "FEDCARE_COORDINATOR_ENDPOINT": "127.0.0.1:7"}
    )
    assert custom.runtime_image == "r:2"
    assert custom.endpoint_for("j", "ns", "s", 1) == "127.0.0.1:7"
    with pytest.raises(SettingsError, match="FEDCARE_COORDINATOR_ENDPOINT"):
        OperatorSettings.from_env({"FEDCARE_COORDINATOR_ENDPOINT": "{nope}:1"})
    with pytest.raises(SettingsError, match="FEDCARE_IMAGE_PULL_POLICY"):
        OperatorSettings.from_env({"FEDCARE_IMAGE_PULL_POLICY": "Sometimes"})
