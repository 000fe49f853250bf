"""Fixtures of the operator tests: an emulated Kubernetes API server and the real kubectl.

No kube-apiserver can run on the machines these tests run on (no container engine, no etcd), so
``apiserver`` is :mod:`tests.support.apiserver`'s emulator, started per test on a free loopback
port with its own kubeconfig. Tests marked ``kubectl`` run the real kubectl binary against it
and are skipped where kubectl is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.apiserver import ApiServer, start_apiserver

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kubectl: runs the real kubectl binary (skipped without)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("kubectl") is not None:
        return
    skip = pytest.mark.skip(reason="kubectl is not installed")
    for item in items:
        if "kubectl" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    """A fresh emulated API server (with its kubeconfig and kubectl cache under ``tmp_path``)."""
    with start_apiserver(tmp_path / "apiserver") as api:
        yield api


@pytest.fixture
def with_crds(apiserver: ApiServer) -> ApiServer:
    """The emulated API server with fedcare's CRDs from ``crds/`` registered (via HTTP)."""
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        result = apiserver.request(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        )
        assert result.status == 201, result.body
    return apiserver
