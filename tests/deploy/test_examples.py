"""Every FederatedJob and Participant the repository ships validates against the CRD schemas.

That is examples/ (including examples/gitops/), the manifests kind-cluster/ applies, and the
sample objects of the Argo CD health checks. Each goes through what the API server does with a
custom resource (tests/support/kschema.py: unknown fields refused as kubectl's strict field
validation does, defaults, then the openAPIV3Schema with jsonschema), and through fedcare's own
spec models, which the operator applies next.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcare.spec import FederatedJob, Participant
from tests.deploy.conftest import CHART, REPO
from tests.support import kschema

GROUP = "fedcare.io"
SOURCES = ("examples", "kind-cluster", "deploy")
MODELS: dict[str, Any] = {"FederatedJob": FederatedJob, "Participant": Participant}


def _validators() -> dict[str, kschema.SchemaValidator]:
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = crd["spec"]["versions"]
        api_version = f"{crd['spec']['group']}/{version['name']}"
        out[f"{api_version} {crd['spec']['names']['kind']}"] = kschema.SchemaValidator(
            version["schema"]["openAPIV3Schema"]
        )
    return out


def _custom_resources() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.y*ml")):
            if path.suffix not in {".yaml", ".yml"}:
                continue
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError:
                continue  # not a manifest (e.g. a Helm template)
            for i, doc in enumerate(docs):
                if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
                    found.append((path.relative_to(REPO).as_posix(), i, doc))
    return found


RESOURCES = _custom_resources()


def test_the_examples_are_found() -> None:
    names = {path for path, _, _ in RESOURCES}
    assert "examples/federatedjob.yaml" in names
    assert "examples/quickstart.yaml" in names
    assert any(n.startswith("examples/gitops/") for n in names)
    assert any(n.startswith("kind-cluster/") for n in names)
    kinds = {doc["kind"] for _, _, doc in RESOURCES}
    assert kinds == {"FederatedJob", "Participant"}


@pytest.mark.parametrize(
    ("path", "index", "doc"), RESOURCES, ids=[f"{p}#{i}" for p, i, _ in RESOURCES]
)
def test_custom_resource_matches_its_crd(path: str, index: int, doc: dict[str, Any]) -> None:
    validators = _validators()
    key = f"{doc['apiVersion']} {doc['kind']}"
    assert key in validators, f"{path}: no CRD serves {key}"
    schema = validators[key].schema
    obj = copy.deepcopy(doc)
    # The API server validates metadata itself (ObjectMeta), not with the CRD's schema.
    meta = obj.pop("metadata", None)
    assert isinstance(meta, dict) and meta.get("name"), f"{path}: metadata.name"
    unknown = kschema.prune(obj, schema)
    assert not unknown, f"{path}: unknown fields {unknown}"
    kschema.apply_defaults(obj, schema)
    errors = validators[key].errors(obj)
    assert not errors, f"{path}: " + "; ".join(str(e) for e in errors)
    # fedcare's own checks (the operator's next step); status is the operator's to write.
    body = {k: v for k, v in doc.items() if k != "status"}
    MODELS[doc["kind"]].model_validate(body)


def test_a_wrong_field_is_caught() -> None:
    validators = _validators()
    validator = validators[f"{GROUP}/v1alpha1 FederatedJob"]
    doc = copy.deepcopy(next(d for p, _, d in RESOURCES if p == "examples/federatedjob.yaml" and d))
    doc["spec"]["rounds"] = -1
    assert validator.errors(doc)
    doc = copy.deepcopy(doc)
    doc["spec"]["roundz"] = 5
    assert kschema.prune(doc, validator.schema) == [("spec", "roundz")]


def test_every_example_folder_is_scanned() -> None:
    # A new top-level folder of manifests must be added to SOURCES to be validated.
    assert all((REPO / folder).is_dir() for folder in SOURCES)
    assert Path(REPO / "examples" / "gitops").is_dir()
