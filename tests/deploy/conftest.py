"""Shared helpers of the deployment tests: paths, the linters' binaries, the chart renderer.

No Docker engine and no kube-apiserver run where these tests run, so images, scripts and the
chart are checked statically: hadolint, shellcheck, Helm's own engine (PyPI helm-python-sdk:
Helm's Go SDK as a library, no binary), kubernetes-validate for built-in kinds and the CRDs'
schemas for fedcare's. Every tool comes from the `dev` extra of operator/pyproject.toml.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm-chart" / "fedcare"
RELEASE = "fedcare"
NAMESPACE = "fedcare-system"


def tool(name: str) -> str:
    """Path of a linter's binary: the virtual environment's (pip-installed), else PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e 'operator[dev]' provides it")
    return found


def render(
    values: Mapping[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """The chart rendered by Helm's engine: template path -> text (empty ones dropped)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(dict(values or {}), name=name, namespace=namespace)
    return {path: text for path, text in out.items() if text.strip()}


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in the rendered templates (NOTES.txt left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: not a mapping"
                docs.append(doc)
    return docs
