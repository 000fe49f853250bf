"""Pure builders: a validated spec (and PEM bytes) in, a Kubernetes manifest dict out.

Nothing here talks to the API server, reads a clock or draws randomness, so every function is
unit-tested without a cluster. Handlers add owner references (``kopf.adopt``) and create what
these functions return.

What one FederatedJob ``J`` in namespace ``N`` becomes::

    Secret     J-ca                 the job CA (ca.crt, ca.key); signs every certificate of J
    Secret     J-coordinator-tls    the coordinator's server certificate (kubernetes.io/tls)
    Secret     J-operator-tls       the operator's observer certificate (to watch status)
    ConfigMap  J-coordinator        coordinator.yaml (a CoordinatorConfig)
    Deployment J-coordinator        one coordinator pod (Recreate), probes on /healthz
    Service    J-coordinator        grpc 50051, http 8080, enroll 50052 (token + CSR)
    Participant J-<site>            one per inline participant

and one Participant ``P`` (site identity ``S``) becomes::

    Secret     P-tls                the site's client certificate, issued by the job CA
    ConfigMap  P-trainer            trainer.yaml (a TrainerConfig)
    Job        P-trainer            the trainer pod: dataset mounted read-only, GPUs as requested
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fedcare.spec import (
    API_VERSION,
    CoordinatorConfig,
    DatasetVolume,
    EnrollmentConfig,
    FederatedJob,
    InlineParticipant,
    Participant,
    TlsFiles,
    TrainerConfig,
)
from fedcare.spec.loader import format_validation_error

JsonDict = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

GROUP: Final = "fedcare.io"
VERSION: Final = "v1alpha1"

#: Ports of the coordinator container and Service.
GRPC_PORT: Final = 50051
HTTP_PORT: Final = 8080
#: The coordinator's Enrollment service (sites of other clusters; server-authenticated TLS).
ENROLL_PORT: Final = 50052
#: In-pod paths (the e2e test on the emulator maps them to temporary folders).
CONFIG_DIR: Final = "/etc/fedcare"
TLS_DIR: Final = "/etc/fedcare/tls"
COORDINATOR_CONFIG: Final = "/etc/fedcare/coordinator.yaml"
#: The job CA (its key signs enrolled sites' certificates) in the coordinator pod.
CA_DIR: Final = "/etc/fedcare/ca"
#: The enrollment token store in the coordinator pod (``kubectl exec ... fedcare token create``).
TOKENS_FILE: Final = "/var/lib/fedcare/tokens.json"
TRAINER_CONFIG: Final = "/etc/fedcare/trainer.yaml"
#: The coordinator's working folder (an emptyDir, or ``spec.repository.persistentVolumeClaim``):
#: relative ``file://`` repositories and the enrollment tokens live here.
WORK_DIR: Final = "/var/lib/fedcare"
#: Where the coordinator pod sees the participants ConfigMap (file ``names``), re-read live.
PARTICIPANTS_DIR: Final = "/etc/fedcare/participants"
PARTICIPANTS_KEY: Final = "names"
#: Where ``spec.repository.credentialsSecret`` is mounted in the coordinator pod.
S3_CREDENTIALS_DIR: Final = "/etc/fedcare/s3"
#: Non-root user and group of every pod the operator builds (the runtime image's ``fedcare``).
RUN_AS: Final = 10001
#: Trainer pod retries before its Job fails.
TRAINER_BACKOFF_LIMIT: Final = 4

# Label keys
NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
JOB_LABEL: Final = "fedcare.io/job"
#: On a Participant: the site's identity (its certificate's common name), when the object's name
#: is not that identity (inline sites are named ``<job>-<site>``).
PARTICIPANT_LABEL: Final = "fedcare.io/participant"
#: On pod templates: a hash of the mounted config, so a changed config rolls the pod.
CONFIG_HASH_ANNOTATION: Final = "fedcare.io/config-hash"

_MAX_NAME = 63


class InvalidSpec(ValueError):
    """A resource's spec cannot be built; the message names the field (``spec.x.y: ...``)."""


# --------------------------------------------------------------------------------------------
# Names and labels


def child_name(*parts: str) -> str:
    """``parts`` joined with ``-``, at most 63 characters (a hash suffix keeps long ones unique)."""
    name = "-".join(p.strip("-") for p in parts if p)
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9].rstrip('-')}-{digest}"


def ca_secret_name(job: str) -> str:
    """The Secret holding job ``job``'s CA."""
    return child_name(job, "ca")


def coordinator_name(job: str) -> str:
    """Name of the coordinator's Deployment, Service and ConfigMap."""
    return child_name(job, "coordinator")


def coordinator_tls_secret_name(job: str) -> str:
    """The Secret holding the coordinator's server certificate."""
    return child_name(job, "coordinator-tls")


def observer_secret_name(job: str) -> str:
    """The Secret holding the operator's observer certificate for ``job``."""
    return child_name(job, "operator-tls")


def participant_name(job: str, site: str) -> str:
    """Name of the Participant built for inline site ``site`` of ``job``."""
    return child_name(job, site)


def participant_tls_secret_name(participant: str) -> str:
    """The Secret holding a Participant's client certificate."""
    return child_name(participant, "tls")


def trainer_name(participant: str) -> str:
    """Name of a Participant's trainer Job and ConfigMap."""
    return child_name(participant, "trainer")


def service_host(job: str, namespace: str) -> str:
    """The coordinator Service's cluster DNS name (what trainers dial, and the TLS name)."""
    return f"{coordinator_name(job)}.{namespace}.svc"


def server_sans(job: str, namespace: str) -> tuple[str, ...]:
    """Names the coordinator's certificate answers to."""
    svc = coordinator_name(job)
    return (
        svc,
        f"{svc}.{namespace}",
        f"{svc}.{namespace}.svc",
        f"{svc}.{namespace}.svc.cluster.local",
        "fedcare-coordinator",
        "localhost",
        "127.0.0.1",
    )


def labels(job: str, component: str, site: str | None = None) -> dict[str, str]:
    """The labels of every child: ``app.kubernetes.io/*`` and ``fedcare.io/job``."""
    out = {
        NAME_LABEL: "fedcare",
        INSTANCE_LABEL: job,
        COMPONENT_LABEL: component,
        PART_OF_LABEL: "fedcare",
        MANAGED_BY_LABEL: "fedcare-operator",
        JOB_LABEL: job,
    }
    if site is not None:
        out[PARTICIPANT_LABEL] = site
    return out


def selector(job: str, component: str, site: str | None = None) -> dict[str, str]:
    """The stable subset of :func:`labels` that selects a component's pods."""
    out = {NAME_LABEL: "fedcare", INSTANCE_LABEL: job, COMPONENT_LABEL: component}
    if site is not None:
        out[PARTICIPANT_LABEL] = site
    return out


def site_identity(participant: Mapping[str, Any]) -> str:
    """A Participant object's site identity: its ``fedcare.io/participant`` label, else name."""
    meta = participant.get("metadata") or {}
    ident = (meta.get("labels") or {}).get(PARTICIPANT_LABEL)
    return str(ident or meta.get("name", ""))


def site_of(participant: Participant) -> str:
    """:func:`site_identity` of a parsed Participant (the name in its certificate)."""
    return participant.metadata.labels.get(PARTICIPANT_LABEL, participant.metadata.name)


def admitted_sites(
    job: str, inline: Collection[str], participants: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Sites the coordinator must admit beyond the job's inline ones: every Participant object
    (of the job's namespace) that names ``job``, by site identity, sorted."""
    sites = {
        site_identity(body)
        for body in participants
        if ((body.get("spec") or {}).get("job") or {}).get("name") == job
    }
    return sorted(s for s in sites if s and s not in inline)


def participants_config_map_name(job: str) -> str:
    """Name of the ConfigMap listing the sites admitted beyond the inline ones."""
    return child_name(job, "coordinator", "participants")


def participants_config_map(job: str, namespace: str | None, sites: Sequence[str]) -> JsonDict:
    """The ConfigMap the coordinator re-reads for further sites (``participantsFile``)."""
    text = "# sites admitted beyond spec.participants (kept by fedcare-operator)\n" + "".join(
        f"{site}\n" for site in sites
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": participants_config_map_name(job),
            "namespace": namespace,
            "labels": labels(job, "coordinator"),
        },
        "data": {PARTICIPANTS_KEY: text},
    }


# --------------------------------------------------------------------------------------------
# Specs from resource bodies


def _validated(model: type[M], body: Mapping[str, Any], what: str) -> M:
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
        },
        "spec": body.get("spec"),
    }
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        where = f"{what} {meta.get('namespace', '')}/{meta.get('name', '')}".strip()
        raise InvalidSpec(format_validation_error(where, err)) from None


def parse_job(body: Mapping[str, Any]) -> FederatedJob:
    """The FederatedJob of a resource body, or :class:`InvalidSpec` naming the field."""
    job = _validated(FederatedJob, body, "FederatedJob")
    for i, site in enumerate(job.spec.participants):
        _check_data_path(site.data.path, f"spec.participants[{i}].data.path")
    return job


def parse_participant(body: Mapping[str, Any]) -> Participant:
    """The Participant of a resource body, or :class:`InvalidSpec` naming the field."""
    part = _validated(Participant, body, "Participant")
    _check_data_path(part.spec.data.path, "spec.data.path")
    return part


def _check_data_path(path: str, field: str) -> None:
    if not path.startswith("/"):
        raise InvalidSpec(
            f"{field}: {path!r} must be an absolute path inside the trainer pod "
            "(where the dataset volume is mounted)"
        )


# --------------------------------------------------------------------------------------------
# Secrets


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def secret_bytes(secret: Mapping[str, Any], key: str) -> bytes:
    """One key of a Secret's ``data`` (base64) or ``stringData``, as bytes."""
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key])
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key]).encode()
    raise KeyError(f"secret {secret.get('metadata', {}).get('name')!r} has no key {key!r}")


@dataclass(frozen=True)
class Pem:
    """A PEM certificate and its PEM private key."""

    cert: bytes
    key: bytes


def ca_secret(job: FederatedJob, ca: Pem) -> JsonDict:
    """The Secret with the job CA: ``ca.crt`` and ``ca.key`` (only the operator reads the key)."""
    name = job.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": ca_secret_name(name),
            "namespace": job.metadata.namespace,
            "labels": labels(name, "ca"),
        },
        "type": "Opaque",
        "data": {"ca.crt": _b64(ca.cert), "ca.key": _b64(ca.key)},
    }


def tls_secret(
    name: str, namespace: str | None, labels_: Mapping[str, str], ca_cert: bytes, pair: Pem
) -> JsonDict:
    """A ``kubernetes.io/tls`` Secret: ``tls.crt``, ``tls.key`` and the job CA's ``ca.crt``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels_)},
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": _b64(ca_cert), "tls.crt": _b64(pair.cert), "tls.key": _b64(pair.key)},
    }


def coordinator_tls_secret(job: FederatedJob, ca_cert: bytes, server: Pem) -> JsonDict:
    """The coordinator's server-certificate Secret."""
    name = job.metadata.name
    return tls_secret(
        coordinator_tls_secret_name(name),
        job.metadata.namespace,
        labels(name, "coordinator"),
        ca_cert,
        server,
    )


def observer_secret(job: FederatedJob, ca_cert: bytes, observer: Pem) -> JsonDict:
    """The operator's observer-certificate Secret for ``job``."""
    name = job.metadata.name
    return tls_secret(
        observer_secret_name(name),
        job.metadata.namespace,
        labels(name, "operator"),
        ca_cert,
        observer,
    )


def participant_tls_secret(participant: Participant, ca_cert: bytes, client: Pem) -> JsonDict:
    """A Participant's client-certificate Secret."""
    pname = participant.metadata.name
    job = participant.spec.job.name
    site = site_of(participant)
    return tls_secret(
        participant_tls_secret_name(pname),
        participant.metadata.namespace,
        labels(job, "trainer", site),
        ca_cert,
        client,
    )


# --------------------------------------------------------------------------------------------
# Coordinator


def _tls_files() -> TlsFiles:
    return TlsFiles(ca=f"{TLS_DIR}/ca.crt", cert=f"{TLS_DIR}/tls.crt", key=f"{TLS_DIR}/tls.key")


def _config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def coordinator_config(job: FederatedJob, observer: str, run_id: str | None) -> CoordinatorConfig:
    """The coordinator process's config in the pod."""
    return CoordinatorConfig(
        job=job,
        listen=f"0.0.0.0:{GRPC_PORT}",
        http_listen=f"0.0.0.0:{HTTP_PORT}",
        tls=_tls_files(),
        observers=[observer],
        run_id=run_id,
        exit_on_completion=False,
        participants_file=f"{PARTICIPANTS_DIR}/{PARTICIPANTS_KEY}",
        enrollment=EnrollmentConfig(
            listen=f"0.0.0.0:{ENROLL_PORT}", tokens_file=TOKENS_FILE, ca_key=f"{CA_DIR}/ca.key"
        ),
    )


def coordinator_config_map(job: FederatedJob, observer: str, run_id: str | None) -> JsonDict:
    """The ConfigMap with ``coordinator.yaml``."""
    name = job.metadata.name
    text = yaml.safe_dump(coordinator_config(job, observer, run_id).to_json_dict(), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": coordinator_name(name),
            "namespace": job.metadata.namespace,
            "labels": labels(name, "coordinator"),
        },
        "data": {"coordinator.yaml": text},
    }


def _pod_security() -> JsonDict:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> JsonDict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _secret_volume(name: str, secret: str) -> JsonDict:
    # 0440 with fsGroup: readable by the pod's group only.
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}}


def _repository_storage(job: FederatedJob) -> tuple[list[JsonDict], list[JsonDict], JsonDict]:
    """What ``spec.repository`` adds to the coordinator: ``(env, extra mounts, work volume)``.

    The working folder (relative ``file://`` repositories, enrollment tokens) is the named
    PersistentVolumeClaim, else an ``emptyDir`` (lost with the pod). An S3 endpoint and a
    credentials Secret reach :mod:`fedcare.repository.s3` through its environment variables.
    """
    repo = job.spec.repository
    env: list[JsonDict] = []
    mounts: list[JsonDict] = []
    if repo.endpoint is not None:
        env.append({"name": "FEDCARE_S3_ENDPOINT_URL", "value": repo.endpoint})
    if repo.credentials_secret is not None:
        env.append({"name": "FEDCARE_S3_CREDENTIALS_DIR", "value": S3_CREDENTIALS_DIR})
        mounts.append({"name": "s3-credentials", "mountPath": S3_CREDENTIALS_DIR, "readOnly": True})
    work: JsonDict = (
        {"name": "work", "persistentVolumeClaim": {"claimName": repo.persistent_volume_claim}}
        if repo.persistent_volume_claim is not None
        else {"name": "work", "emptyDir": {}}
    )
    return env, mounts, work


def coordinator_deployment(
    job: FederatedJob, image: str, pull_policy: str, config_map: Mapping[str, Any]
) -> JsonDict:
    """The coordinator Deployment: one replica, Recreate (never two coordinators at once)."""
    name = job.metadata.name
    config_text = str(config_map["data"]["coordinator.yaml"])
    repo_env, repo_mounts, work_volume = _repository_storage(job)
    credentials = job.spec.repository.credentials_secret
    extra_volumes = [] if credentials is None else [_secret_volume("s3-credentials", credentials)]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": coordinator_name(name),
            "namespace": job.metadata.namespace,
            "labels": labels(name, "coordinator"),
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(name, "coordinator")},
            "template": {
                "metadata": {
                    "labels": labels(name, "coordinator"),
                    "annotations": {CONFIG_HASH_ANNOTATION: _config_hash(config_text)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security(),
                    "containers": [
                        {
                            "name": "coordinator",
                            "image": image,
                            "imagePullPolicy": pull_policy,
                            "command": ["fedcare", "coordinator", "--config", COORDINATOR_CONFIG],
                            "workingDir": WORK_DIR,
                            "env": [
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "HOME", "value": "/tmp"},
                                *repo_env,
                            ],
                            "ports": [
                                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                                {"name": "enroll", "containerPort": ENROLL_PORT, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                                "failureThreshold": 3,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                                "failureThreshold": 6,
                            },
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"memory": "4Gi"},
                            },
                            "securityContext": _container_security(),
                            "volumeMounts": [
                                {
                                    "name": "config",
                                    "mountPath": COORDINATOR_CONFIG,
                                    "subPath": "coordinator.yaml",
                                    "readOnly": True,
                                },
                                {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                                {"name": "ca", "mountPath": CA_DIR, "readOnly": True},
                                {"name": "work", "mountPath": WORK_DIR},
                                {"name": "tmp", "mountPath": "/tmp"},
                                # A folder, not a subPath: kubelet swaps in updated contents.
                                {
                                    "name": "participants",
                                    "mountPath": PARTICIPANTS_DIR,
                                    "readOnly": True,
                                },
                                *repo_mounts,
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": coordinator_name(name)}},
                        _secret_volume("tls", coordinator_tls_secret_name(name)),
                        _secret_volume("ca", ca_secret_name(name)),
                        work_volume,
                        {"name": "tmp", "emptyDir": {}},
                        {
                            "name": "participants",
                            "configMap": {"name": participants_config_map_name(name)},
                        },
                        *extra_volumes,
                    ],
                },
            },
        },
    }


def coordinator_service(job: FederatedJob) -> JsonDict:
    """The coordinator Service: gRPC (trainers, operator) and HTTP (/status, /metrics)."""
    name = job.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": coordinator_name(name),
            "namespace": job.metadata.namespace,
            "labels": labels(name, "coordinator"),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name, "coordinator"),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "enroll", "port": ENROLL_PORT, "targetPort": "enroll", "protocol": "TCP"},
            ],
        },
    }


def inline_participant(job: FederatedJob, site: InlineParticipant) -> JsonDict:
    """The Participant resource of one inline site (named ``<job>-<site>``)."""
    name = job.metadata.name
    spec: JsonDict = {
        "job": {"name": name},
        "data": site.data.to_json_dict(),
        "resources": site.resources.to_json_dict(),
    }
    if site.volume is not None:
        spec["volume"] = site.volume.to_json_dict()
    if site.node_selector:
        spec["nodeSelector"] = dict(site.node_selector)
    if site.tolerations:
        spec["tolerations"] = [t.to_json_dict() for t in site.tolerations]
    return {
        "apiVersion": API_VERSION,
        "kind": "Participant",
        "metadata": {
            "name": participant_name(name, site.name),
            "namespace": job.metadata.namespace,
            "labels": labels(name, "participant", site.name),
        },
        "spec": spec,
    }


# --------------------------------------------------------------------------------------------
# Trainer


def trainer_config(participant: Participant, endpoint: str, server_name: str) -> TrainerConfig:
    """The trainer process's config in the pod."""
    res = participant.spec.resources
    return TrainerConfig(
        participant=site_of(participant),
        job=participant.spec.job.name,
        coordinator=endpoint,
        server_name=server_name,
        tls=_tls_files(),
        data=participant.spec.data,
        device="cuda" if res.gpu > 0 else "cpu",
        threads=_whole_cpus(res.cpu),
    )


def _whole_cpus(cpu: str) -> int:
    """Torch threads for a CPU quantity: whole CPUs (``"2"``, ``"1500m"`` -> 1), else 0."""
    try:
        value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return 0
    return max(int(value), 1) if value > 0 else 0


def trainer_config_map(participant: Participant, endpoint: str, server_name: str) -> JsonDict:
    """The ConfigMap with ``trainer.yaml``."""
    pname = participant.metadata.name
    site = site_of(participant)
    text = yaml.safe_dump(
        trainer_config(participant, endpoint, server_name).to_json_dict(), sort_keys=False
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": trainer_name(pname),
            "namespace": participant.metadata.namespace,
            "labels": labels(participant.spec.job.name, "trainer", site),
        },
        "data": {"trainer.yaml": text},
    }


def dataset_volume(participant: Participant) -> tuple[JsonDict, JsonDict]:
    """The dataset ``(volume, volumeMount)``: read-only, at the folder of ``data.path`` unless
    the volume names its own ``mountPath``; a node folder at that path when no volume is given."""
    data_dir = posixpath.dirname(participant.spec.data.path) or "/"
    vol = participant.spec.volume or DatasetVolume(host_path=data_dir)
    mount_path = vol.mount_path or data_dir
    if vol.claim_name is not None:
        source: JsonDict = {
            "persistentVolumeClaim": {"claimName": vol.claim_name, "readOnly": True}
        }
    else:
        source = {"hostPath": {"path": vol.host_path, "type": "Directory"}}
    return (
        {"name": "dataset", **source},
        {"name": "dataset", "mountPath": mount_path, "readOnly": True},
    )


def trainer_job(
    participant: Participant, image: str, pull_policy: str, config_map: Mapping[str, Any]
) -> JsonDict:
    """The trainer Job of one Participant."""
    pname = participant.metadata.name
    job = participant.spec.job.name
    site = site_of(participant)
    spec = participant.spec
    res = spec.resources
    limits: JsonDict = {"memory": res.memory}
    if res.gpu > 0:
        limits["nvidia.com/gpu"] = res.gpu
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "HOME", "value": "/tmp"}]
    threads = _whole_cpus(res.cpu)
    if threads:
        env.append({"name": "OMP_NUM_THREADS", "value": str(threads)})
    data_volume, data_mount = dataset_volume(participant)
    pod_spec: JsonDict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "containers": [
            {
                "name": "trainer",
                "image": image,
                "imagePullPolicy": pull_policy,
                "command": ["fedcare", "trainer", "--config", TRAINER_CONFIG],
                "env": env,
                "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}, "limits": limits},
                "securityContext": _container_security(),
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": TRAINER_CONFIG,
                        "subPath": "trainer.yaml",
                        "readOnly": True,
                    },
                    {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                    data_mount,
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": trainer_name(pname)}},
            _secret_volume("tls", participant_tls_secret_name(pname)),
            data_volume,
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [t.to_json_dict() for t in spec.tolerations]
    config_text = str(config_map["data"]["trainer.yaml"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": trainer_name(pname),
            "namespace": participant.metadata.namespace,
            "labels": labels(job, "trainer", site),
        },
        "spec": {
            "backoffLimit": TRAINER_BACKOFF_LIMIT,
            "template": {
                "metadata": {
                    "labels": labels(job, "trainer", site),
                    "annotations": {CONFIG_HASH_ANNOTATION: _config_hash(config_text)},
                },
                "spec": pod_spec,
            },
        },
    }


__all__ = [
    "CA_DIR",
    "CONFIG_HASH_ANNOTATION",
    "COORDINATOR_CONFIG",
    "ENROLL_PORT",
    "GROUP",
    "GRPC_PORT",
    "HTTP_PORT",
    "JOB_LABEL",
    "PARTICIPANTS_DIR",
    "PARTICIPANTS_KEY",
    "PARTICIPANT_LABEL",
    "S3_CREDENTIALS_DIR",
    "TLS_DIR",
    "TOKENS_FILE",
    "TRAINER_CONFIG",
    "VERSION",
    "WORK_DIR",
    "InvalidSpec",
    "Pem",
    "admitted_sites",
    "ca_secret",
    "ca_secret_name",
    "child_name",
    "coordinator_config",
    "coordinator_config_map",
    "coordinator_deployment",
    "coordinator_name",
    "coordinator_service",
    "coordinator_tls_secret",
    "coordinator_tls_secret_name",
    "dataset_volume",
    "inline_participant",
    "labels",
    "observer_secret",
    "observer_secret_name",
    "parse_job",
    "parse_participant",
    "participant_name",
    "participant_tls_secret",
    "participant_tls_secret_name",
    "participants_config_map",
    "participants_config_map_name",
    "secret_bytes",
    "selector",
    "server_sans",
    "service_host",
    "site_identity",
    "site_of",
    "trainer_config",
    "trainer_config_map",
    "trainer_job",
    "trainer_name",
]
