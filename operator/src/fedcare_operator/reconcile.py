"""What the handlers do: bring a FederatedJob's or a Participant's children into existence.

Idempotent: every step creates what is missing and keeps what exists (a CA or a key is never
replaced: certificates issued from it stay valid), so kopf may retry a handler at any point.
The builders make the manifests; ``adopt`` (``kopf.adopt`` bound to the owner) adds owner
references; :class:`~fedcare_operator.kube.Kube` writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedcare.spec import FederatedJob, Participant
from fedcare_operator import builders, certs, conditions
from fedcare_operator.builders import JsonDict, Pem
from fedcare_operator.kube import Kube
from fedcare_operator.metrics import OperatorMetrics
from fedcare_operator.settings import OperatorSettings

#: Adds owner references (and the owner's namespace) to a child manifest, in place.
Adopt = Callable[[JsonDict], None]


class NotReadyYet(Exception):
    """Something this step needs does not exist yet (retry later); ``reason`` is the Ready
    condition's reason meanwhile."""

    def __init__(self, message: str, reason: str = conditions.JOB_NOT_FOUND) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """What every handler needs: the API, the operator's settings and its metrics."""

    kube: Kube
    settings: OperatorSettings
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)


def _apply(
    ctx: Context, obj: JsonDict, adopt: Adopt, changed: Callable[[JsonDict], JsonDict | None]
) -> JsonDict:
    """Create ``obj``; when it exists, merge-patch what ``changed(existing)`` returns (if any)."""
    adopt(obj)
    existing, created = ctx.kube.ensure(obj)
    if created:
        return existing
    patch = changed(existing)
    if not patch:
        return existing
    meta = obj["metadata"]
    return ctx.kube.patch(
        obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"], patch
    )


def _keep(_existing: JsonDict) -> JsonDict | None:
    return None


def _data_changed(desired: JsonDict) -> Callable[[JsonDict], JsonDict | None]:
    def changed(existing: JsonDict) -> JsonDict | None:
        return None if existing.get("data") == desired["data"] else {"data": desired["data"]}

    return changed


def _template_changed(desired: JsonDict) -> Callable[[JsonDict], JsonDict | None]:
    key = builders.CONFIG_HASH_ANNOTATION

    def annotation(obj: Mapping[str, Any]) -> Any:
        template = (obj.get("spec") or {}).get("template") or {}
        return ((template.get("metadata") or {}).get("annotations") or {}).get(key)

    def changed(existing: JsonDict) -> JsonDict | None:
        return None if annotation(existing) == annotation(desired) else {"spec": desired["spec"]}

    return changed


def _secret(ctx: Context, namespace: str | None, name: str) -> JsonDict | None:
    return ctx.kube.get("v1", "Secret", namespace, name)


def ensure_ca(ctx: Context, job: FederatedJob, adopt: Adopt) -> Pem:
    """The job's CA: the existing Secret's, or a new one stored in a new Secret."""
    ns, name = job.metadata.namespace, job.metadata.name
    existing = _secret(ctx, ns, builders.ca_secret_name(name))
    if existing is None:
        secret = builders.ca_secret(job, certs.new_ca(name))
        adopt(secret)
        existing, _ = ctx.kube.ensure(secret)  # a concurrent creator wins; use its CA
    return Pem(
        cert=builders.secret_bytes(existing, "ca.crt"),
        key=builders.secret_bytes(existing, "ca.key"),
    )


def reconcile_job(
    ctx: Context, job: FederatedJob, uid: str | None, adopt: Adopt
) -> dict[str, list[str]]:
    """Create the children of a (validated) FederatedJob; returns their names by kind."""
    ns, name = job.metadata.namespace, job.metadata.name
    settings = ctx.settings
    ca = ensure_ca(ctx, job, adopt)
    if _secret(ctx, ns, builders.coordinator_tls_secret_name(name)) is None:
        pair = certs.server_cert(ca, builders.server_sans(name, ns or "default"))
        _apply(ctx, builders.coordinator_tls_secret(job, ca.cert, pair), adopt, _keep)
    if _secret(ctx, ns, builders.observer_secret_name(name)) is None:
        pair = certs.observer_cert(ca, settings.observer_name)
        _apply(ctx, builders.observer_secret(job, ca.cert, pair), adopt, _keep)
    config_map = builders.coordinator_config_map(job, settings.observer_name, uid)
    _apply(ctx, config_map, adopt, _data_changed(config_map))
    deployment = builders.coordinator_deployment(
        job, settings.runtime_image, settings.image_pull_policy, config_map
    )
    _apply(ctx, deployment, adopt, _template_changed(deployment))
    _apply(ctx, builders.coordinator_service(job), adopt, _keep)
    inline = {site.name for site in job.spec.participants}
    admitted = sync_admitted(ctx, name, ns, inline, adopt)
    participants = []
    for site in job.spec.participants:
        obj = builders.inline_participant(job, site)
        _apply(ctx, obj, adopt, _keep)
        participants.append(obj["metadata"]["name"])
    return {
        "Secret": [
            builders.ca_secret_name(name),
            builders.coordinator_tls_secret_name(name),
            builders.observer_secret_name(name),
        ],
        "ConfigMap": [builders.coordinator_name(name), admitted],
        "Deployment": [builders.coordinator_name(name)],
        "Service": [builders.coordinator_name(name)],
        "Participant": participants,
    }


def sync_admitted(
    ctx: Context, job: str, namespace: str | None, inline: Collection[str], adopt: Adopt | None
) -> str:
    """Bring the job's participants ConfigMap up to date with the Participant objects that name
    the job (beyond its inline sites); returns the ConfigMap's name.

    Recomputed from a fresh list every time, so concurrent callers converge. With ``adopt``
    (the job's own reconcile) it is created if missing; without (a Participant's reconcile) it
    must exist already.
    """
    api = f"{builders.GROUP}/{builders.VERSION}"
    sites = builders.admitted_sites(job, inline, ctx.kube.list(api, "Participant", namespace))
    desired = builders.participants_config_map(job, namespace, sites)
    cm_name = builders.participants_config_map_name(job)
    if adopt is not None:
        _apply(ctx, desired, adopt, _data_changed(desired))
        return cm_name
    existing = ctx.kube.get("v1", "ConfigMap", namespace, cm_name)
    if existing is None:
        raise NotReadyYet(f"the participants ConfigMap {namespace}/{cm_name} is not created yet")
    patch = _data_changed(desired)(existing)
    if patch:
        ctx.kube.patch("v1", "ConfigMap", namespace, cm_name, patch)
    return cm_name


def reconcile_participant(ctx: Context, part: Participant, adopt: Adopt) -> dict[str, str]:
    """Create a (validated) Participant's certificate Secret, trainer ConfigMap and Job.

    The job must live in the same namespace (its CA signs the certificate); until it and its
    CA exist, :class:`NotReadyYet` is raised.
    """
    ns, pname = part.metadata.namespace, part.metadata.name
    job_name = part.spec.job.name
    job = ctx.kube.get(f"{builders.GROUP}/{builders.VERSION}", "FederatedJob", ns, job_name)
    if job is None:
        if part.spec.enrollment is not None:
            return _reconcile_enrolled(ctx, part, adopt)
        raise NotReadyYet(f"FederatedJob {ns}/{job_name} does not exist in this cluster")
    ca_secret = _secret(ctx, ns, builders.ca_secret_name(job_name))
    if ca_secret is None:
        raise NotReadyYet(f"the CA of FederatedJob {ns}/{job_name} is not created yet")
    site = builders.site_of(part)
    if _secret(ctx, ns, builders.participant_tls_secret_name(pname)) is None:
        ca = Pem(
            cert=builders.secret_bytes(ca_secret, "ca.crt"),
            key=builders.secret_bytes(ca_secret, "ca.key"),
        )
        pair = certs.client_cert(ca, site)
        _apply(ctx, builders.participant_tls_secret(part, ca.cert, pair), adopt, _keep)
    inline = {str(p.get("name")) for p in (job.get("spec") or {}).get("participants") or []}
    if site not in inline:
        # A site created beside the job: list it for the coordinator, and start its trainer
        # only once the coordinator has admitted it (it would be refused before).
        sync_admitted(ctx, job_name, ns, inline, None)
        listed = {p.get("name") for p in (job.get("status") or {}).get("participants") or []}
        if site not in listed:
            raise NotReadyYet(
                f"waiting for the coordinator of FederatedJob {ns}/{job_name} to admit "
                f"{site!r} (listed in {builders.participants_config_map_name(job_name)})",
                reason=conditions.WAITING_FOR_ADMISSION,
            )
    host = builders.service_host(job_name, ns or "default")
    endpoint = part.spec.job.endpoint or f"{host}:{builders.GRPC_PORT}"
    config_map = builders.trainer_config_map(part, endpoint, host)
    _apply(ctx, config_map, adopt, _data_changed(config_map))
    # A Job's pod template cannot change; a changed config reaches the next pod it starts.
    trainer = builders.trainer_job(
        part, ctx.settings.runtime_image, ctx.settings.image_pull_policy, config_map
    )
    _apply(ctx, trainer, adopt, _keep)
    return {
        "Secret": builders.participant_tls_secret_name(pname),
        "ConfigMap": builders.trainer_name(pname),
        "Job": builders.trainer_name(pname),
    }


def _reconcile_enrolled(ctx: Context, part: Participant, adopt: Adopt) -> dict[str, str]:
    """A site of a job in another cluster: enroll once (token + CSR), then build its trainer.

    The token is spent by the coordinator as soon as it signs; the certificate Secret is
    created right after, and its existence is what makes later reconciles skip enrollment.
    """
    enrollment = part.spec.enrollment
    assert enrollment is not None
    ns, pname = part.metadata.namespace, part.metadata.name
    endpoint = part.spec.job.endpoint
    if endpoint is None:
        raise builders.InvalidSpec(
            "spec.job.endpoint: required with spec.enrollment (the coordinator's gRPC endpoint)"
        )
    site = builders.site_of(part)
    if _secret(ctx, ns, builders.participant_tls_secret_name(pname)) is None:
        token_secret = _secret(ctx, ns, enrollment.token_secret)
        if token_secret is None:
            raise NotReadyYet(
                f"the enrollment token Secret {ns}/{enrollment.token_secret} is missing"
            )
        try:
            token = builders.secret_bytes(token_secret, "token").decode().strip()
            trusted = builders.secret_bytes(token_secret, "ca.crt")
        except KeyError as err:
            raise builders.InvalidSpec(
                f"spec.enrollment.tokenSecret: {err.args[0]} (it needs keys token and ca.crt)"
            ) from None
        pair, ca_cert = certs.enroll_remote(
            enrollment.endpoint, trusted, token, site, enrollment.server_name
        )
        _apply(ctx, builders.participant_tls_secret(part, ca_cert, pair), adopt, _keep)
    config_map = builders.trainer_config_map(part, endpoint, enrollment.server_name)
    _apply(ctx, config_map, adopt, _data_changed(config_map))
    trainer = builders.trainer_job(
        part, ctx.settings.runtime_image, ctx.settings.image_pull_policy, config_map
    )
    _apply(ctx, trainer, adopt, _keep)
    return {
        "Secret": builders.participant_tls_secret_name(pname),
        "ConfigMap": builders.trainer_name(pname),
        "Job": builders.trainer_name(pname),
    }


__all__ = ["Adopt", "Context", "NotReadyYet", "ensure_ca", "reconcile_job", "reconcile_participant"]
