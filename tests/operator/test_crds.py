"""The generated CRDs: no drift from the spec models, structural, complete, consistent."""

from __future__ import annotations

import copy
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from fedcare.spec import (
    FederatedJob,
    FederatedJobStatus,
    Participant,
    ParticipantResourceStatus,
    load_model,
)
from fedcare_operator import crdgen
from tests.operator.conftest import CRDS, FIXTURES, REPO
from tests.support import kschema

GEN = REPO / "scripts" / "gen_crds.py"


def _crd(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / name).read_text())
    return loaded


def _schema(name: str) -> dict[str, Any]:
    version = _crd(name)["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crds_match_the_spec_models() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_on_drift_and_names_the_file(tmp_path: Path) -> None:
    for path in CRDS.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    edited = tmp_path / "participants.fedcare.io.yaml"
    edited.write_text(edited.read_text().replace("shortNames:\n    - part", "shortNames: []"))
    (tmp_path / "stale.yaml").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, str(GEN), "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "participants.fedcare.io.yaml" in result.stderr
    assert "stale.yaml (not generated)" in result.stderr
    assert "federatedjobs.fedcare.io.yaml" not in result.stderr


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation holds (through Optional, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in {list, dict, typing.Union, types.UnionType, tuple}:
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _node_of(schema: dict[str, Any], annotation: Any) -> dict[str, Any]:
    """The object schema of the model inside ``annotation`` (descending arrays and maps)."""
    node = schema
    while node.get("type") == "array" or "additionalProperties" in node:
        node = node["items"] if node.get("type") == "array" else node["additionalProperties"]
    return node


def _undeclared(model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    """Fields of ``model`` (recursively) that ``schema`` does not declare."""
    missing: list[str] = []
    props = schema.get("properties", {})
    for name, info in model.model_fields.items():
        alias = info.alias or name
        path = f"{where}.{alias}"
        if alias not in props:
            missing.append(path)
            continue
        for sub in _models_in(info.annotation):
            missing.extend(_undeclared(sub, _node_of(props[alias], info.annotation), path))
    return missing


@pytest.mark.parametrize(
    ("crd", "model"),
    [
        ("federatedjobs.fedcare.io.yaml", FederatedJobStatus),
        ("participants.fedcare.io.yaml", ParticipantResourceStatus),
    ],
)
def test_every_status_field_is_declared(crd: str, model: type[BaseModel]) -> None:
    """A status field missing from the schema would be pruned by the API server on write."""
    status = _schema(crd)["properties"]["status"]
    assert _undeclared(model, status, "status") == []


@pytest.mark.parametrize(
    ("crd", "model"),
    [
        ("federatedjobs.fedcare.io.yaml", FederatedJob),
        ("participants.fedcare.io.yaml", Participant),
    ],
)
def test_every_spec_field_is_declared(crd: str, model: type[BaseModel]) -> None:
    spec_model = model.model_fields["spec"].annotation
    assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
    assert _undeclared(spec_model, _schema(crd)["properties"]["spec"], "spec") == []


@pytest.mark.parametrize("crd", ["federatedjobs.fedcare.io.yaml", "participants.fedcare.io.yaml"])
def test_schemas_are_structural(crd: str) -> None:
    assert kschema.structural_errors(_schema(crd)) == []
    text = (CRDS / crd).read_text()
    for forbidden in ("$ref", "anyOf", "additionalProperties: false", "const:", "title:"):
        assert forbidden not in text


def test_federatedjob_crd_names_columns_and_rules() -> None:
    crd = _crd("federatedjobs.fedcare.io.yaml")
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "federatedjobs.fedcare.io"
    assert (spec["group"], spec["scope"]) == ("fedcare.io", "Namespaced")
    assert spec["names"]["plural"] == "federatedjobs"
    assert {"fedjob", "fedjobs", "fj"} <= set(spec["names"]["shortNames"])
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == [
        "Phase",
        "Round",
        "Total",
        "Participants",
        "AUROC",
        "Model",
        "Age",
    ]
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Round"]["jsonPath"] == ".status.currentRound"
    assert columns["Participants"]["jsonPath"] == ".status.readyParticipants"
    assert columns["AUROC"]["jsonPath"] == ".status.latestModel.metrics.auroc"
    assert columns["Model"]["jsonPath"] == ".status.latestModel.version"
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since creation.",
    }
    props = version["schema"]["openAPIV3Schema"]["properties"]
    for field in ("model", "data", "task"):
        rules = props["spec"]["properties"][field]["x-kubernetes-validations"]
        assert rules == [{"rule": "self == oldSelf", "message": f"spec.{field} is immutable"}]
    conditions = props["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert props["spec"]["properties"]["rounds"]["minimum"] == 1
    assert props["spec"]["properties"]["task"]["enum"] == [
        "binary-classification",
        "regression",
        "survival",
    ]


def test_participant_crd_names_columns_and_status() -> None:
    spec = _crd("participants.fedcare.io.yaml")["spec"]
    assert spec["names"]["shortNames"] == ["part"]
    (version,) = spec["versions"]
    assert [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("Phase", ".status.phase"),
        ("Job", ".spec.job.name"),
        ("Rounds", ".status.roundsCompleted"),
        ("Epsilon", ".status.epsilonSpent"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"phase", "roundsCompleted", "lastSeen", "samples", "epsilonSpent", "conditions"} <= set(
        status
    )


@pytest.mark.parametrize(
    ("crd", "model", "fixture"),
    [
        ("federatedjobs.fedcare.io.yaml", FederatedJob, "readmission.yaml"),
        ("participants.fedcare.io.yaml", Participant, "participant.yaml"),
    ],
)
def test_schema_defaults_agree_with_the_models(
    crd: str, model: type[BaseModel], fixture: str
) -> None:
    """What the API server stores (defaults filled in) parses to the same spec as the manifest."""
    manifest = yaml.safe_load((FIXTURES / fixture).read_text())
    schema = _schema(crd)
    assert kschema.SchemaValidator(schema).errors(manifest) == []
    stored = copy.deepcopy(manifest)
    kschema.apply_defaults(stored, schema)
    assert stored != manifest  # the server did fill something in
    assert model.model_validate(stored) == load_model(model, FIXTURES / fixture)


def test_invalid_fixtures_are_invalid_for_the_models_too() -> None:
    from fedcare.errors import SpecError

    for name in ("invalid-task.yaml", "invalid-rounds.yaml", "invalid-unknown-field.yaml"):
        with pytest.raises(SpecError):
            load_model(FederatedJob, FIXTURES / name)


# --- the converter on models written for the purpose ------------------------------------


class _Inner(BaseModel):
    """An inner model."""

    size: int = Field(default=3, gt=0, le=10)


class _Sample(BaseModel):
    """A model that exercises the conversions."""

    kind: typing.Literal["fixed"] = "fixed"
    inner: _Inner = Field(default_factory=_Inner)
    maybe: _Inner | None = None
    ratio: float = Field(default=0.5, gt=0.0, lt=1.0)
    tags: dict[str, str] = Field(default_factory=dict)
    either: int | str = 0
    free: dict[str, Any] = Field(default_factory=dict)
    widths: list[int] = Field(default_factory=lambda: [1, 2])


def test_converter_output_is_structural() -> None:
    schema = crdgen.structural_schema(_Sample)
    props = schema["properties"]
    assert props["kind"] == {"type": "string", "enum": ["fixed"], "default": "fixed"}
    assert props["inner"]["default"] == {}
    assert props["inner"]["properties"]["size"] == {
        "type": "integer",
        "default": 3,
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 10,
    }
    assert props["maybe"]["nullable"] is True and props["maybe"]["type"] == "object"
    assert props["ratio"]["exclusiveMaximum"] is True
    assert props["tags"]["additionalProperties"] == {"type": "string"}
    assert props["either"]["x-kubernetes-int-or-string"] is True
    assert props["free"]["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert props["widths"]["default"] == [1, 2]
    assert kschema.structural_errors(schema) == []


class _Unstructural(BaseModel):
    value: list[int] | dict[str, int]


def test_converter_refuses_what_has_no_structural_form() -> None:
    with pytest.raises(crdgen.CrdError, match="value"):
        crdgen.structural_schema(_Unstructural)
