"""Running the real fedcare operator (kopf) against the emulated API server, for tests.

:func:`operator_running` starts ``kopf run -m fedcare_operator`` in-process with
``kopf.testing.KopfRunner``, pointed at an :class:`~tests.support.apiserver.ApiServer` through
``$KUBECONFIG``, and the status daemon's coordinator endpoint through
``FEDCARE_COORDINATOR_ENDPOINT`` (a closed loopback port unless a test runs a coordinator).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from tests.support.apiserver import ApiServer

T = TypeVar("T")

NS = "default"
FJ = f"/apis/fedcare.io/v1alpha1/namespaces/{NS}/federatedjobs"
PARTS = f"/apis/fedcare.io/v1alpha1/namespaces/{NS}/participants"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
SERVICES = f"/api/v1/namespaces/{NS}/services"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def items(api: ApiServer, path: str) -> list[dict[str, Any]]:
    """The items of a list request (empty on error)."""
    result = api.request("GET", path)
    if result.status != 200:
        return []
    found: list[dict[str, Any]] = result.body.get("items") or []
    return found


def names(api: ApiServer, path: str) -> set[str]:
    """Names of the objects of a list request."""
    return {obj["metadata"]["name"] for obj in items(api, path)}


def get(api: ApiServer, path: str) -> dict[str, Any] | None:
    """One object, or ``None``."""
    result = api.request("GET", path)
    if result.status != 200:
        return None
    found: dict[str, Any] = result.body
    return found


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def operator_running(
    api: ApiServer, *, endpoint: str | None = None, timeout: float = 60.0
) -> Iterator[Any]:
    """The real operator, in-process, against ``api``; yields the ``KopfRunner``.

    ``endpoint`` is what the status daemon dials (default: a closed loopback port, so daemons
    only retry). On exit the operator is stopped; its exit must be clean.
    """
    import kopf
    from kopf.testing import KopfRunner

    import fedcare_operator  # noqa: F401 - imported now, so kopf's -m import adds nothing
    from fedcare_operator.handlers import register

    # A fresh registry per run: other tests' kopf handlers (and ours) never leak across runs.
    registry = register(kopf.OperatorRegistry())
    env = {
        "KUBECONFIG": str(api.kubeconfig),
        "FEDCARE_COORDINATOR_ENDPOINT": endpoint or f"127.0.0.1:{free_port()}",
        "FEDCARE_RUNTIME_IMAGE": "ghcr.io/fedcare/runtime:test",
    }
    with (
        _env(env),
        KopfRunner(
            ["run", "--standalone", "--all-namespaces", "-m", "fedcare_operator"],
            timeout=timeout,
            registry=registry,
        ) as runner,
    ):
        yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


__all__ = [
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "FJ",
    "JOBS",
    "NS",
    "PARTS",
    "SECRETS",
    "SERVICES",
    "free_port",
    "get",
    "items",
    "names",
    "operator_running",
    "wait_until",
]
