"""Operator settings, read once at start-up from the environment (the Helm chart sets them).

- ``FEDCARE_RUNTIME_IMAGE`` (default ``ghcr.io/fedcare/runtime:0.1.0``): the image of
  coordinator and trainer pods;
- ``FEDCARE_IMAGE_PULL_POLICY`` (default ``IfNotPresent``): their ``imagePullPolicy``;
- ``FEDCARE_COORDINATOR_ENDPOINT`` (default ``{service}.{namespace}.svc:{port}``): where the
  status daemon dials a job's coordinator, a template with ``{name}`` (the job),
  ``{namespace}``, ``{service}`` and ``{port}``. Tests and operators running outside the
  cluster point it elsewhere (e.g. ``127.0.0.1:50051``).
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


class SettingsError(ValueError):
    """An operator setting has a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator needs besides the resources themselves."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    image_pull_policy: str = "IfNotPresent"
    coordinator_endpoint: str = DEFAULT_COORDINATOR_ENDPOINT
    observer_name: str = OPERATOR_OBSERVER

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from ``FEDCARE_*`` variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        settings = cls(
            runtime_image=env.get("FEDCARE_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
            image_pull_policy=env.get("FEDCARE_IMAGE_PULL_POLICY") or "IfNotPresent",
            coordinator_endpoint=env.get("FEDCARE_COORDINATOR_ENDPOINT")
            or DEFAULT_COORDINATOR_ENDPOINT,
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


__all__ = [
    "DEFAULT_COORDINATOR_ENDPOINT",
    "DEFAULT_RUNTIME_IMAGE",
    "OPERATOR_OBSERVER",
    "OperatorSettings",
    "SettingsError",
]
