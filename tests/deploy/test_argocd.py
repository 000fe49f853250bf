"""Argo CD: the Lua health checks of FederatedJob and Participant, and the example Applications.

Argo CD runs health checks with gopher-lua (Lua 5.1); here they run in Lua 5.1 through lupa,
on every case of their health_test.yaml (Argo CD's own resource_customizations format), with
the sample object as the global ``obj``, as Argo CD passes it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, RELEASE, REPO

lua51 = pytest.importorskip("lupa.lua51", reason="lupa (the dev extra) is missing")

ARGOCD = REPO / "deploy" / "argocd"
CHECKS = ARGOCD / "resource_customizations" / "fedcare.io"
KINDS = ("FederatedJob", "Participant")


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """What Argo CD's health check of ``kind`` says about ``obj``."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((CHECKS / kind / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((CHECKS / kind / "health_test.yaml").read_text())
        for test in spec["tests"]:
            cases.append((kind, test["inputPath"], test["healthStatus"]))
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("kind", "input_path", "expected"), CASES, ids=[f"{k}/{p}" for k, p, _ in CASES]
)
def test_health_of_each_sample(kind: str, input_path: str, expected: dict[str, str]) -> None:
    obj = yaml.safe_load((CHECKS / kind / input_path).read_text())
    assert obj["kind"] == kind
    assert health(kind, obj) == expected


def test_every_sample_has_a_case_and_every_argo_status_is_covered() -> None:
    for kind in KINDS:
        listed = {p for k, p, _ in CASES if k == kind}
        files = {f"testdata/{p.name}" for p in (CHECKS / kind / "testdata").glob("*.yaml")}
        assert listed == files, kind
        assert {e["status"] for k, _, e in CASES if k == kind} == {
            "Healthy",
            "Progressing",
            "Degraded",
        }


def test_the_brief_s_mapping_for_every_phase() -> None:
    job = yaml.safe_load((CHECKS / "FederatedJob" / "testdata" / "training-ready.yaml").read_text())
    for phase, ready, want in (
        ("Pending", "False", "Progressing"),
        ("WaitingForParticipants", "False", "Progressing"),
        ("Training", "True", "Healthy"),
        ("Training", "False", "Progressing"),
        ("Succeeded", "True", "Healthy"),
        ("Failed", "False", "Degraded"),
        ("SomethingNew", "True", "Unknown"),
    ):
        obj = copy.deepcopy(job)
        obj["status"]["phase"] = phase
        obj["status"]["conditions"][0]["status"] = ready
        assert health("FederatedJob", obj)["status"] == want, phase
    part = yaml.safe_load((CHECKS / "Participant" / "testdata" / "training.yaml").read_text())
    for phase, ready, want in (
        ("Pending", "False", "Progressing"),
        ("Connected", "True", "Healthy"),
        ("Training", "True", "Healthy"),
        ("Training", "False", "Progressing"),
        ("Disconnected", "False", "Progressing"),
        ("Succeeded", "True", "Healthy"),
        ("Failed", "False", "Degraded"),
    ):
        obj = copy.deepcopy(part)
        obj["status"]["phase"] = phase
        obj["status"]["conditions"][0]["status"] = ready
        assert health("Participant", obj)["status"] == want, phase


def test_a_status_without_conditions_or_counts_does_not_break_the_script() -> None:
    bare = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "j"},
        "status": {"phase": "Training"},
    }
    assert health("FederatedJob", bare) == {
        "status": "Progressing",
        "message": "Training, round 0/0, 0/0 participants ready",
    }
    bare["status"] = {"phase": "Failed"}
    assert health("FederatedJob", bare) == {"status": "Degraded", "message": "Failed"}
    part = {"kind": "Participant", "metadata": {}, "status": {"phase": "Failed"}}
    assert health("Participant", part) == {"status": "Degraded", "message": "Failed"}


def test_the_argocd_cm_snippet_embeds_the_tested_scripts() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    assert set(cm["data"]) == {f"resource.customizations.health.fedcare.io_{k}" for k in KINDS}
    for kind in KINDS:
        embedded = cm["data"][f"resource.customizations.health.fedcare.io_{kind}"]
        assert embedded == (CHECKS / kind / "health.lua").read_text(), kind


def _applications() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "examples" / "gitops" / "application.yaml").read_text())
    return [d for d in docs if d]


def test_the_example_applications_point_at_what_the_repository_has() -> None:
    import helm_python as helm

    apps = {a["metadata"]["name"]: a for a in _applications()}
    assert set(apps) == {"fedcare-operator", "fedcare-jobs"}
    for app in apps.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        source = app["spec"]["source"]
        assert (REPO / source["path"]).is_dir(), source["path"]
        assert app["spec"]["destination"]["namespace"]
    waves = {
        n: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for n, a in apps.items()
    }
    assert waves["fedcare-operator"] < waves["fedcare-jobs"], "the CRDs and operator go first"
    operator = apps["fedcare-operator"]["spec"]["source"]
    assert Path(REPO / operator["path"]) == CHART
    with helm.Chart.load(str(CHART)) as chart:
        values = operator["helm"]["valuesObject"]
        chart.validate_schema(chart.merge_values(values))
        chart.render(values, name=operator["helm"]["releaseName"] or RELEASE, namespace="x")
    jobs = list((REPO / apps["fedcare-jobs"]["spec"]["source"]["path"]).glob("*.yaml"))
    assert jobs and all(yaml.safe_load(j.read_text())["kind"] == "FederatedJob" for j in jobs)
