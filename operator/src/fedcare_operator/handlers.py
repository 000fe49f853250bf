"""kopf handlers: thin. They parse, call :mod:`~fedcare_operator.reconcile` or
:mod:`~fedcare_operator.status_daemon`, write ``patch.status`` and map errors to kopf's:

- an invalid spec -> ``Failed`` condition with reason ``InvalidSpec`` naming the field, and
  ``kopf.PermanentError`` (no retry until the spec changes);
- something that may clear (API server unreachable or throttled, the job's CA not created yet)
  -> ``kopf.TemporaryError`` (retried with a delay).

Progress and diff-base are kept in annotations (``fedcare.io/...``), never in ``.status``: the
CRDs' structural schemas would prune an undeclared ``status.kopf``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

import kopf

from fedcare.enrollment import EnrollmentError
from fedcare.spec import ConditionStatus, ParticipantPhase, Phase
from fedcare_operator import builders, conditions, reconcile, status_daemon
from fedcare_operator.builders import InvalidSpec, JsonDict
from fedcare_operator.kube import Kube, KubeError
from fedcare_operator.reconcile import Context, NotReadyYet
from fedcare_operator.settings import OperatorSettings

GROUP = builders.GROUP
VERSION = builders.VERSION
#: Prefix of kopf's annotations on fedcare's resources.
ANNOTATION_PREFIX = "fedcare.io"
#: Seconds before a handler that hit something transient runs again.
RETRY_DELAY = 2.0
#: Enrollment failures that may clear (the coordinator is not reachable yet).
_RETRYABLE_ENROLLMENT = frozenset({"unavailable", "deadline_exceeded"})

log = logging.getLogger("fedcare.operator")


# --------------------------------------------------------------------------------------------
# Operator lifecycle


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Watch timeouts (a silent watch stall is a known failure), storage, thread pool, context."""
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 70
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Synchronous handlers run in this pool; status daemons use their own threads.
    settings.execution.max_workers = 16
    settings.posting.level = logging.WARNING
    ours = OperatorSettings.from_env()
    # Without cluster-scoped list/watch on namespaces and CRDs (a namespaced install), kopf
    # watches exactly the namespaces it was given instead of logging Forbidden at start-up.
    settings.scanning.disabled = not ours.cluster_scanning
    ctx = Context(kube=Kube(), settings=ours)
    if ours.metrics_port:
        memo.metrics_server = ctx.metrics.serve(ours.metrics_port)
        log.info("metrics on port %d (/metrics)", ours.metrics_port)
    memo.ctx = ctx


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: ``$KUBECONFIG`` (read now, not at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def close(memo: kopf.Memo, **_: Any) -> None:
    """Release the API client's connections; stop serving metrics."""
    ctx = memo.get("ctx")
    if isinstance(ctx, Context):
        ctx.kube.close()
    server = memo.get("metrics_server")
    if isinstance(server, WSGIServer):
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------
# Helpers


def _ctx(memo: kopf.Memo) -> Context:
    ctx = memo.get("ctx")
    if not isinstance(ctx, Context):
        raise kopf.TemporaryError("the operator is still starting", delay=RETRY_DELAY)
    return ctx


def _changed(current: Mapping[str, Any] | None, new: JsonDict) -> JsonDict:
    """Only the status fields that differ (so a handler never rewrites the daemon's fields)."""
    current = current or {}
    return {key: value for key, value in new.items() if current.get(key) != value}


def _adopter(owner: kopf.Body) -> reconcile.Adopt:
    def adopt(obj: JsonDict) -> None:
        kopf.adopt(obj, owner=owner)

    return adopt


def _kube_error(err: KubeError) -> kopf.PermanentError | kopf.TemporaryError:
    if err.transient:
        return kopf.TemporaryError(str(err), delay=RETRY_DELAY)
    return kopf.PermanentError(str(err))


# --------------------------------------------------------------------------------------------
# FederatedJob


def reconcile_federated_job(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Create (or complete) the job's CA, certificates, config, coordinator and Participants."""
    ctx = _ctx(memo)
    generation = meta.get("generation")
    try:
        job = builders.parse_job(body)
    except InvalidSpec as err:
        failed = status_daemon.invalid_spec_status(status, str(err), generation)
        patch.status.update(_changed(status, failed.to_json_dict()))
        ctx.metrics.observe(meta.get("namespace") or "default", meta.get("name") or "", failed)
        raise kopf.PermanentError(str(err)) from None
    try:
        reconcile.reconcile_job(ctx, job, meta.get("uid"), _adopter(body))
    except KubeError as err:
        raise _kube_error(err) from None
    pending = status_daemon.pending_status(status, job, generation)
    patch.status.update(_changed(status, pending.to_json_dict()))
    ctx.metrics.observe(job.metadata.namespace or "default", job.metadata.name, pending)


def _following(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in (Phase.SUCCEEDED.value, Phase.FAILED.value)


async def follow_federated_job_status(
    name: str | None,
    namespace: str | None,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Stream the coordinator's status onto the job and its Participants until the job ends."""
    ctx = _ctx(memo)
    await status_daemon.follow(
        ctx,
        namespace or "default",
        name or "",
        stopped,
        generation=lambda: meta.get("generation"),
    )


def forget_deleted_job(
    name: str | None, namespace: str | None, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Drop a deleted job's metric series (its daemon may have ended long before)."""
    ctx = memo.get("ctx")
    if kwargs.get("type") == "DELETED" and isinstance(ctx, Context):
        ctx.metrics.forget(namespace or "default", name or "")


# --------------------------------------------------------------------------------------------
# Participant


def reconcile_participant(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Create the site's client certificate (from its job's CA), trainer config and Job."""
    ctx = _ctx(memo)
    generation = meta.get("generation")
    current = status_daemon.parse_participant_status(status)
    try:
        part = builders.parse_participant(body)
    except InvalidSpec as err:
        current.phase = ParticipantPhase.FAILED
        current.message = str(err)
        current.set_condition(
            conditions.FAILED, ConditionStatus.TRUE, conditions.INVALID_SPEC, str(err), generation
        )
        patch.status.update(_changed(status, current.to_json_dict()))
        raise kopf.PermanentError(str(err)) from None
    try:
        reconcile.reconcile_participant(ctx, part, _adopter(body))
    except NotReadyYet as err:
        current.message = str(err)
        current.set_condition(
            conditions.READY, ConditionStatus.FALSE, err.reason, str(err), generation
        )
        patch.status.update(_changed(status, current.to_json_dict()))
        raise kopf.TemporaryError(str(err), delay=RETRY_DELAY) from None
    except InvalidSpec as err:
        current.phase = ParticipantPhase.FAILED
        current.message = str(err)
        current.set_condition(
            conditions.FAILED, ConditionStatus.TRUE, conditions.INVALID_SPEC, str(err), generation
        )
        patch.status.update(_changed(status, current.to_json_dict()))
        raise kopf.PermanentError(str(err)) from None
    except EnrollmentError as err:
        if err.reason in _RETRYABLE_ENROLLMENT:
            raise kopf.TemporaryError(str(err), delay=RETRY_DELAY * 5) from None
        current.phase = ParticipantPhase.FAILED
        current.message = str(err)
        current.set_condition(
            conditions.FAILED,
            ConditionStatus.TRUE,
            conditions.ENROLLMENT_REFUSED,
            str(err),
            generation,
        )
        patch.status.update(_changed(status, current.to_json_dict()))
        raise kopf.PermanentError(str(err)) from None
    except KubeError as err:
        raise _kube_error(err) from None
    if current.phase is ParticipantPhase.FAILED and current.conditions:
        current = status_daemon.parse_participant_status(None)  # the spec was fixed
    current.message = None
    current.observed_generation = generation
    waiting = not any(
        c.type == conditions.READY and c.reason != conditions.JOB_NOT_FOUND
        for c in current.conditions
    )
    if waiting:
        current.set_condition(
            conditions.READY,
            ConditionStatus.FALSE,
            conditions.TRAINER_CREATED,
            "certificate and trainer created; waiting for the trainer to join",
            generation,
        )
    patch.status.update(_changed(status, current.to_json_dict()))


# --------------------------------------------------------------------------------------------
# Registration


def register(registry: kopf.OperatorRegistry) -> kopf.OperatorRegistry:
    """Register every handler of the operator in ``registry`` (returned).

    ``import fedcare_operator`` registers them in kopf's default registry (what ``kopf run -m
    fedcare_operator`` uses); tests register them in a fresh registry of their own.
    """
    kopf.on.startup(registry=registry)(configure)
    kopf.on.login(registry=registry)(login)
    kopf.on.cleanup(registry=registry)(close)
    for plural, fn in (
        ("federatedjobs", reconcile_federated_job),
        ("participants", reconcile_participant),
    ):
        kopf.on.resume(GROUP, VERSION, plural, registry=registry)(fn)
        kopf.on.create(GROUP, VERSION, plural, registry=registry)(fn)
        kopf.on.update(GROUP, VERSION, plural, field="spec", registry=registry)(fn)
    kopf.on.event(GROUP, VERSION, "federatedjobs", registry=registry)(forget_deleted_job)
    kopf.daemon(
        GROUP,
        VERSION,
        "federatedjobs",
        when=_following,
        cancellation_timeout=15.0,
        initial_delay=0.5,
        registry=registry,
    )(follow_federated_job_status)
    return registry


__all__ = [
    "configure",
    "follow_federated_job_status",
    "forget_deleted_job",
    "login",
    "reconcile_federated_job",
    "reconcile_participant",
    "register",
]
