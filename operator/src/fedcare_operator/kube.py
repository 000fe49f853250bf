"""The one module of the operator that talks to the Kubernetes API.

A thin, generic layer over the official ``kubernetes`` client's REST machinery (its
configuration loading, authentication, TLS and connection pool) that works on plain manifest
dicts: :meth:`Kube.create`, :meth:`Kube.get`, :meth:`Kube.list`, :meth:`Kube.patch` and
:meth:`Kube.patch_status`. Errors come out as :class:`KubeError`, whose ``transient`` says whether
retrying may help (kopf handlers turn it into ``kopf.TemporaryError`` or ``PermanentError``).

Calls block; kopf runs synchronous handlers in its thread pool, and the status daemon calls from
its own thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

JsonDict = dict[str, Any]

#: (apiVersion, kind) -> plural, for every kind the operator reads or writes.
RESOURCES: Final[Mapping[tuple[str, str], str]] = {
    ("v1", "Secret"): "secrets",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("batch/v1", "Job"): "jobs",
    ("fedcare.io/v1alpha1", "FederatedJob"): "federatedjobs",
    ("fedcare.io/v1alpha1", "Participant"): "participants",
}
#: Seconds one API call may take (connect, read).
REQUEST_TIMEOUT: Final = (5.0, 30.0)
_MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """An API call that did not succeed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        #: HTTP status; 0 when the API server could not be reached.
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Whether a retry may succeed (unreachable, throttled, conflicting, server-side)."""
        return self.status == 0 or self.status in {409, 429} or self.status >= 500

    @property
    def not_found(self) -> bool:
        """Whether the object (or its kind) does not exist."""
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        """Whether a create found the name taken."""
        return self.status == 409 and self.reason == "AlreadyExists"


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        plural = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"fedcare_operator.kube does not know {api_version} {kind}") from None
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def load_configuration() -> kubernetes.client.Configuration:
    """Client configuration: in-cluster (service account) in a pod, else ``$KUBECONFIG``.

    ``$KUBECONFIG`` is read now, not when ``kubernetes`` was imported (which the client's own
    default does), so tests can point it at an emulated API server.
    """
    config = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=config)
    else:
        path = kubeconfig.split(os.pathsep)[0] if kubeconfig else "~/.kube/config"
        kubernetes.config.load_kube_config(
            config_file=str(Path(path).expanduser()), client_configuration=config
        )
    config.connection_pool_maxsize = 32
    return config


class Kube:
    """Manifest-dict access to the API server (thread-safe)."""

    def __init__(self, configuration: kubernetes.client.Configuration | None = None) -> None:
        self._api = kubernetes.client.ApiClient(configuration or load_configuration())

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            response = self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as err:
            raise _api_error(err) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeError(0, "Unreachable", f"{method} {path}: {err}") from None
        return response if isinstance(response, dict) else {}

    def create(self, obj: Mapping[str, Any]) -> JsonDict:
        """Create ``obj`` (its ``metadata.namespace`` says where)."""
        meta = obj.get("metadata") or {}
        path = _path(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"))
        return self._call("POST", path, dict(obj))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JsonDict | None:
        """The object, or ``None`` when it does not exist."""
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except KubeError as err:
            if err.not_found:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[JsonDict]:
        """Objects of a kind, filtered by equality label selectors."""
        query: list[tuple[str, str]] = []
        if labels:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items())))
        result = self._call("GET", _path(api_version, kind, namespace), query=query)
        items = result.get("items") or []
        return [dict(item) for item in items]

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> JsonDict:
        """A JSON merge patch of the object (or of its ``subresource``)."""
        path = _path(api_version, kind, namespace, name)
        if subresource:
            path = f"{path}/{subresource}"
        return self._call("PATCH", path, dict(patch), content_type=_MERGE_PATCH)

    def patch_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: JsonDict
    ) -> JsonDict:
        """Merge ``status`` into the object's ``.status`` (the status subresource)."""
        return self.patch(
            api_version, kind, namespace, name, {"status": status}, subresource="status"
        )

    def ensure(self, obj: Mapping[str, Any]) -> tuple[JsonDict, bool]:
        """Create ``obj`` unless an object of that name exists: ``(object, created)``."""
        try:
            return self.create(obj), True
        except KubeError as err:
            if not err.already_exists:
                raise
        meta = obj.get("metadata") or {}
        existing = self.get(
            str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), str(meta["name"])
        )
        if existing is None:  # deleted in between: the next reconcile creates it
            raise KubeError(409, "Conflict", f"{obj['kind']} {meta['name']} vanished; retry")
        return existing, False


def _api_error(err: ApiException) -> KubeError:
    status = int(err.status or 0)
    reason = str(err.reason or "")
    message = reason
    body = err.body
    if body:
        try:
            doc = json.loads(body)
        except (TypeError, ValueError):
            message = str(body)[:500]
        else:
            if isinstance(doc, dict):
                reason = str(doc.get("reason") or reason)
                message = str(doc.get("message") or message)
    return KubeError(status, reason, message)


__all__ = ["REQUEST_TIMEOUT", "RESOURCES", "Kube", "KubeError", "load_configuration"]
