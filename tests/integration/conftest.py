"""Fixtures for integration tests: real coordinator and trainer processes over mTLS on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

BC_FEATURES = [f"f{i:02d}" for i in range(30)]


@pytest.fixture(scope="session")
def breast_cancer_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """scikit-learn's breast-cancer data split into three hospitals (CSV, one per site)."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(y))
    out = tmp_path_factory.mktemp("bc")
    paths = []
    for i, part in enumerate(np.array_split(order, 3)):
        path = out / f"site-{i + 1}.csv"
        header = ",".join([*BC_FEATURES, "malignant"])
        rows = np.column_stack([x[part], 1 - y[part]])
        np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.6g")
        paths.append(path)
    return paths


JobFactory = Callable[..., Path]


@pytest.fixture
def make_job(tmp_path: Path, breast_cancer_sites: list[Path]) -> JobFactory:
    """Write a FederatedJob manifest over the breast-cancer sites; keyword args patch spec."""

    def factory(name: str = "bc", sites: list[Path] | None = None, **spec: Any) -> Path:
        sites = sites or breast_cancer_sites
        doc: dict[str, Any] = {
            "apiVersion": "fedcare.io/v1alpha1",
            "kind": "FederatedJob",
            "metadata": {"name": name},
            "spec": {
                "task": "binary-classification",
                "model": {"name": "logistic-regression"},
                "data": {"features": BC_FEATURES, "label": "malignant"},
                "rounds": 5,
                "minParticipants": len(sites),
                "joinTimeoutSeconds": 60,
                "roundTimeoutSeconds": 60,
                "training": {
                    "epochs": 5,
                    "batchSize": 32,
                    "optimizer": "adam",
                    "learningRate": 0.05,
                },
                "repository": {"uri": f"file://{tmp_path / 'models'}"},
                "participants": [
                    {"name": f"hospital-{chr(ord('a') + i)}", "data": {"path": str(p)}}
                    for i, p in enumerate(sites)
                ],
            },
        }
        doc["spec"].update(spec)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return factory
