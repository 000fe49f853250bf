"""Repository-wide pytest options: ``--with-e2e`` runs the real-cluster tests (marked ``e2e``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--with-e2e",
        action="store_true",
        default=False,
        help="run the tests marked e2e against a real Kubernetes cluster (kind; see README)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--with-e2e"):
        return
    skip = pytest.mark.skip(reason="needs a real cluster: run with --with-e2e (see README)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
