"""Operator settings, read once at start-up from the environment (the Helm chart sets them).

- ``FEDCARE_RUNTIME_IMAGE`` (default ``ghcr.io/fedcare/runtime:0.1.0``): the image of
  coordinator and trainer pods;
- ``FEDCARE_IMAGE_PULL_POLICY`` (default ``IfNotPresent``): their ``imagePullPolicy``;
- ``FEDCARE_COORDINATOR_ENDPOINT`` (default ``{service}.{namespace}.svc:{port}``): where the
  status daemon dials a job's coordinator, a template with ``{name}`` (the job),
  ``{namespace}``, ``{service}`` and ``{port}``. Tests and operators running outside the
  cluster point it elsewhere (e.g. ``127.0.0.1:50051``);
- ``FEDCARE_METRICS_PORT`` (default: none): serve the operator's Prometheus metrics
  (:mod:`~fedcare_operator.metrics`) on this port;
- ``FEDCARE_CLUSTER_SCANNING`` (default ``true``): let kopf watch namespaces and CRDs. An
  operator limited to its own namespaces (the chart's ``namespaced: true``, a Role and no
  ClusterRole) sets ``false``: kopf then watches exactly the namespaces it was given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Image of the coordinator and trainer pods unless ``FEDCARE_RUNTIME_IMAGE`` says otherwise.
DEFAULT_RUNTIME_IMAGE = "ghcr.io/fedcare/runtime:0.1.0"
#: How the status daemon reaches a coordinator by default: its Service's cluster DNS name.
DEFAULT_COORDINATOR_ENDPOINT = "{service}.{namespace}.svc:{port}"
#: Common name of the operator's own observer certificate (the coordinator lets it watch status).
OPERATOR_OBSERVER = "fedcare-operator"
_PULL_POLICIES = frozenset({"Always", "IfNotPresent", "Never"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """An operator setting has a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator needs besides the resources themselves."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    image_pull_policy: str = "IfNotPresent"
    coordinator_endpoint: str = DEFAULT_COORDINATOR_ENDPOINT
    observer_name: str = OPERATOR_OBSERVER
    #: Port of the operator's ``/metrics`` (0: not served).
    metrics_port: int = 0
    #: Whether kopf watches namespaces and CRDs (needs cluster-scoped list/watch on them).
    cluster_scanning: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from ``FEDCARE_*`` variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        settings = cls(
            runtime_image=env.get("FEDCARE_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
            image_pull_policy=env.get("FEDCARE_IMAGE_PULL_POLICY") or "IfNotPresent",
            coordinator_endpoint=env.get("FEDCARE_COORDINATOR_ENDPOINT")
            or DEFAULT_COORDINATOR_ENDPOINT,
            metrics_port=_port(env, "FEDCARE_METRICS_PORT"),
            cluster_scanning=_flag(env, "FEDCARE_CLUSTER_SCANNING", default=True),
        )
        if settings.image_pull_policy not in _PULL_POLICIES:
            raise SettingsError(
                f"FEDCARE_IMAGE_PULL_POLICY: {settings.image_pull_policy!r} is not one of "
                f"{', '.join(sorted(_PULL_POLICIES))}"
            )
        # Fail at start-up, not in the first daemon, when the template names an unknown field.
        settings.endpoint_for("job", "default", "job-coordinator", 50051)
        return settings

    def endpoint_for(self, name: str, namespace: str, service: str, port: int) -> str:
        """``host:port`` the status daemon dials for job ``name``."""
        try:
            return self.coordinator_endpoint.format(
                name=name, namespace=namespace, service=service, port=port
            )
        except (KeyError, IndexError, ValueError) as err:
            raise SettingsError(
                f"FEDCARE_COORDINATOR_ENDPOINT: {self.coordinator_endpoint!r} is not a valid "
                f"template ({{name}}, {{namespace}}, {{service}}, {{port}}): {err}"
            ) from None


def _port(env: Mapping[str, str], name: str) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return 0
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SettingsError(f"{name}: {raw!r} is not a port number (0-65535)")
    return port


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}: {raw!r} is not a boolean (true/false)")


__all__ = [
    "DEFAULT_COORDINATOR_ENDPOINT",
    "DEFAULT_RUNTIME_IMAGE",
    "OPERATOR_OBSERVER",
    "OperatorSettings",
    "SettingsError",
]
