"""The emulated API server itself: the behaviours kopf and kubectl rely on.

No kube-apiserver can run on the machines these tests run on; these tests pin down where the
emulator (:mod:`tests.support.apiserver`) behaves like the real one, so that operator tests built
on it mean something.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from tests.operator.conftest import CRDS
from tests.support import kpatch
from tests.support.apiserver import ApiServer, human_duration, start_apiserver

JOBS = "/apis/fedcare.io/v1alpha1/namespaces/default/federatedjobs"
CMS = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _job(name: str = "job-a", rounds: int = 3, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {"data": {"features": ["age"], "label": "y"}, "rounds": rounds},
    }


def _create(api: ApiServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result = api.request("POST", path, body)
    assert result.status == 201, result.body
    created: dict[str, Any] = result.body
    return created


def test_discovery_core_v1_and_registered_crds(with_crds: ApiServer) -> None:
    api = with_crds
    core = api.request("GET", "/api/v1").body
    assert core["groupVersion"] == "v1"
    assert "namespaces" in {r["name"] for r in core["resources"]}
    groups = api.request("GET", "/apis").body
    assert "fedcare.io" in {g["name"] for g in groups["groups"]}
    gv = api.request("GET", "/apis/fedcare.io/v1alpha1").body
    resources = {r["name"]: r for r in gv["resources"]}
    assert resources["federatedjobs"]["kind"] == "FederatedJob"
    assert resources["federatedjobs"]["namespaced"] is True
    assert "fedjobs" in resources["federatedjobs"]["shortNames"]
    assert resources["federatedjobs/status"]["verbs"] == ["get", "patch", "update"]
    index = api.request("GET", "/openapi/v3").body["paths"]
    assert "apis/fedcare.io/v1alpha1" in index and "api/v1" in index


def test_namespaces_list_and_list_kinds(apiserver: ApiServer) -> None:
    listed = apiserver.request("GET", "/api/v1/namespaces").body
    assert (listed["kind"], listed["apiVersion"]) == ("NamespaceList", "v1")
    assert {"default", "kube-system"} <= {n["metadata"]["name"] for n in listed["items"]}
    assert listed["metadata"]["resourceVersion"]
    missing = apiserver.request(
        "POST", "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}}
    )
    assert (missing.status, missing.body["message"]) == (404, 'namespaces "nowhere" not found')


def test_stamping_and_generation(with_crds: ApiServer) -> None:
    api = with_crds
    job = _create(api, JOBS, {**_job(), "status": {"phase": "Training"}})
    meta = job["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
    assert "status" not in job  # create drops status when there is a status subresource
    labelled = api.request(
        "PATCH", f"{JOBS}/job-a", {"metadata": {"labels": {"a": "b"}}}, content_type=MERGE
    ).body
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    status = api.request(
        "PATCH", f"{JOBS}/job-a/status", {"status": {"phase": "Training"}}, content_type=MERGE
    ).body
    assert status["metadata"]["generation"] == 1
    assert status["status"]["phase"] == "Training"
    assert status["status"]["currentRound"] == 0  # status defaults from the schema
    spec = api.request(
        "PATCH",
        f"{JOBS}/job-a",
        {"spec": {"rounds": 9}, "status": {"phase": "Failed"}},
        content_type=MERGE,
    ).body
    assert spec["metadata"]["generation"] == 2
    assert spec["status"]["phase"] == "Training"  # main-resource writes never touch status
    sneaky = api.request(
        "PATCH",
        f"{JOBS}/job-a/status",
        {"spec": {"rounds": 1}, "metadata": {"labels": {"c": "d"}}, "status": {"currentRound": 2}},
        content_type=MERGE,
    ).body
    assert sneaky["spec"]["rounds"] == 9 and "c" not in sneaky["metadata"]["labels"]
    assert sneaky["status"]["currentRound"] == 2
    same = api.request("PATCH", f"{JOBS}/job-a", {"spec": {"rounds": 9}}, content_type=MERGE)
    assert same.body["metadata"]["resourceVersion"] == sneaky["metadata"]["resourceVersion"]


def test_put_and_optimistic_concurrency(with_crds: ApiServer) -> None:
    api = with_crds
    job = _create(api, JOBS, _job())
    job["spec"]["rounds"] = 5
    updated = api.request("PUT", f"{JOBS}/job-a", job)
    assert updated.status == 200 and updated.body["metadata"]["generation"] == 2
    stale = api.request("PUT", f"{JOBS}/job-a", job)  # still carries the old resourceVersion
    assert (stale.status, stale.body["reason"]) == (409, "Conflict")
    clash = api.request("POST", JOBS, _job())
    assert (clash.status, clash.body["reason"]) == (409, "AlreadyExists")


def test_json_patch_test_op_failure_is_422(with_crds: ApiServer) -> None:
    api = with_crds
    _create(api, JOBS, _job())
    ops = [
        {"op": "test", "path": "/spec/rounds", "value": 4},
        {"op": "replace", "path": "/spec/rounds", "value": 5},
    ]
    failed = api.request("PATCH", f"{JOBS}/job-a", ops, content_type=JSON_PATCH)
    assert (failed.status, failed.body["reason"]) == (422, "Invalid")
    ops[0]["value"] = 3
    passed = api.request("PATCH", f"{JOBS}/job-a", ops, content_type=JSON_PATCH)
    assert passed.status == 200 and passed.body["spec"]["rounds"] == 5


def test_strict_field_validation_refuses_and_otherwise_prunes(with_crds: ApiServer) -> None:
    api = with_crds
    body = _job()
    body["spec"]["extra"] = 1
    body["spec"]["training"] = {"epochz": 2}
    strict = api.request("POST", JOBS + "?fieldValidation=Strict", body)
    assert strict.status == 400
    assert (
        'unknown field "spec.extra", unknown field "spec.training.epochz"' in strict.body["message"]
    )
    warned = api.request("POST", JOBS, body)
    assert warned.status == 201
    assert "extra" not in warned.body["spec"] and warned.body["spec"]["training"]["epochs"] == 1
    assert 'unknown field \\"spec.extra\\"' in warned.headers["Warning"]


def test_several_errors_are_listed(with_crds: ApiServer) -> None:
    body = _job(rounds=0)
    body["spec"]["task"] = "x"
    del body["spec"]["data"]
    result = with_crds.request("POST", JOBS, body)
    assert result.status == 422
    fields = [c["field"] for c in result.body["details"]["causes"]]
    assert sorted(fields) == ["spec.data", "spec.rounds", "spec.task"]
    assert result.body["message"].startswith('FederatedJob.fedcare.io "job-a" is invalid: [')
    dup = _job()
    dup["spec"]["participants"] = [
        {"name": "a", "data": {"path": "/a"}},
        {"name": "a", "data": {"path": "/b"}},
    ]
    result = with_crds.request("POST", JOBS, dup)
    assert result.status == 422
    assert result.body["details"]["causes"][0]["reason"] == "FieldValueDuplicate"
    assert result.body["details"]["causes"][0]["field"] == "spec.participants[1]"


def test_label_and_field_selectors(with_crds: ApiServer) -> None:
    api = with_crds
    _create(api, JOBS, _job("a", app="x", tier="1"))
    _create(api, JOBS, _job("b", app="x", tier="2"))
    _create(api, JOBS, _job("c", app="y"))

    def names(query: str) -> list[str]:
        listed = api.request("GET", f"{JOBS}?{query}").body
        return [o["metadata"]["name"] for o in listed["items"]]

    assert names("labelSelector=app%3Dx") == ["a", "b"]
    assert names("labelSelector=app%3D%3Dx,tier!%3D1") == ["b"]
    assert names("labelSelector=tier+in+(1,2)") == ["a", "b"]
    assert names("labelSelector=!tier") == ["c"]
    assert names("fieldSelector=metadata.name%3Dc") == ["c"]
    assert names("limit=2") == ["a", "b"]
    page = api.request("GET", f"{JOBS}?limit=2").body
    token = urllib.parse.quote(page["metadata"]["continue"])
    assert names(f"limit=2&continue={token}") == ["c"]


def test_table_responses(with_crds: ApiServer) -> None:
    api = with_crds
    _create(api, JOBS, _job())
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = api.request("GET", JOBS, headers={"Accept": accept}).body
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == [
        "Name",
        "Phase",
        "Round",
        "Total",
        "Participants",
        "AUROC",
        "MSE",
        "Model",
        "Age",
    ]
    assert table["rows"][0]["cells"][:2] == ["job-a", None]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert human_duration(3) == "3s" and human_duration(150) == "2m30s"
    assert human_duration(3 * 3600 + 60) == "3h1m" and human_duration(3 * 86400) == "3d"


def _watch(api: ApiServer, query: str, until: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    url = urllib.parse.urlsplit(api.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    conn.request("GET", f"{JOBS}?watch=true&{query}")
    resp = conn.getresponse()
    assert resp.status == 200
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < until and time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        events.append(json.loads(line))
    conn.close()
    return events


def test_watch_resumes_from_a_resource_version(with_crds: ApiServer) -> None:
    api = with_crds
    first = _create(api, JOBS, _job("a", app="x"))
    rv = first["metadata"]["resourceVersion"]
    api.request("PATCH", f"{JOBS}/a", {"spec": {"rounds": 7}}, content_type=MERGE)
    api.request("PATCH", f"{JOBS}/a", {"metadata": {"labels": {"app": "z"}}}, content_type=MERGE)
    _create(api, JOBS, _job("b", app="x"))
    api.request("DELETE", f"{JOBS}/b")
    events = _watch(api, f"resourceVersion={rv}&labelSelector=app%3Dx", until=4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"),
        ("DELETED", "a"),
        ("ADDED", "b"),
        ("DELETED", "b"),
    ]
    initial = _watch(api, "", until=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "a")]
    quiet = _watch(
        api,
        f"resourceVersion={api.call(lambda: api.emulator.resource_version)}&timeoutSeconds=1",
        until=1,
    )
    assert quiet == []


def test_finalizers_delay_deletion(with_crds: ApiServer) -> None:
    api = with_crds
    _create(api, JOBS, {**_job(), "metadata": {"name": "job-a", "finalizers": ["x/y"]}})
    deleted = api.request("DELETE", f"{JOBS}/job-a")
    assert deleted.status == 200 and deleted.body["metadata"]["deletionTimestamp"]
    assert api.request("GET", f"{JOBS}/job-a").status == 200
    api.request("PATCH", f"{JOBS}/job-a", {"metadata": {"finalizers": None}}, content_type=MERGE)
    assert api.request("GET", f"{JOBS}/job-a").status == 404


def test_ownerreference_cascade_and_orphan(with_crds: ApiServer) -> None:
    api = with_crds

    def owned_by(name: str, owner: dict[str, Any]) -> dict[str, Any]:
        ref = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
        return {"metadata": {"name": name, "ownerReferences": [ref]}}

    job = _create(api, JOBS, _job("a"))
    cm = _create(api, CMS, owned_by("child", job))
    _create(api, CMS, owned_by("grandchild", cm))
    api.request("DELETE", f"{JOBS}/a")
    assert api.request("GET", f"{CMS}/child").status == 404
    assert api.request("GET", f"{CMS}/grandchild").status == 404
    job = _create(api, JOBS, _job("b"))
    _create(api, CMS, owned_by("kept", job))
    api.request("DELETE", f"{JOBS}/b?propagationPolicy=Orphan")
    kept = api.request("GET", f"{CMS}/kept").body
    assert "ownerReferences" not in kept["metadata"]


def test_namespace_deletion_and_crd_deletion(with_crds: ApiServer) -> None:
    api = with_crds
    _create(api, "/api/v1/namespaces", {"metadata": {"name": "site-a"}})
    _create(api, "/api/v1/namespaces/site-a/configmaps", {"metadata": {"name": "x"}})
    api.request("DELETE", "/api/v1/namespaces/site-a")
    assert api.request("GET", "/api/v1/namespaces/site-a").status == 404
    _create(api, JOBS, _job())
    gone = api.request(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/federatedjobs.fedcare.io"
    )
    assert gone.status == 200
    assert api.request("GET", JOBS).status == 404
    assert api.objects("fedcare.io", "federatedjobs") == []


def test_unstructural_crd_is_refused(apiserver: ApiServer) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"a": {"anyOf": [{"type": "string"}]}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    result = apiserver.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert result.status == 422
    fields = {c["field"] for c in result.body["details"]["causes"]}
    assert "spec.versions[0].schema.openAPIV3Schema.properties[spec].additionalProperties" in fields


def test_kmock_reactions_take_precedence(with_crds: ApiServer) -> None:
    """The emulator is a kmock handler: a test can inject a failure in front of it."""
    api = with_crds
    api.call(
        lambda: (
            api.emulator["post", kmock.resource("fedcare.io", "v1alpha1", "federatedjobs")] << 503
        )
    )
    assert api.request("POST", JOBS, _job()).status == 503
    assert any(r.method == "POST" for r in api.call(lambda: list(api.emulator)))


def test_patch_helpers() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    assert kpatch.json_patch(
        doc,
        [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "move", "from": "/c", "path": "/d"}],
    ) == {"a": {"b": [1, 2, 3]}, "d": 1}
    with pytest.raises(kpatch.PatchError):
        kpatch.json_patch(doc, [{"op": "test", "path": "/c", "value": True}])
    assert kpatch.merge_patch(doc, {"a": None, "e": {"f": 1}}) == {"c": 1, "e": {"f": 1}}
    assert kpatch.strategic_merge_patch(doc, {"a": {"$patch": "delete"}}) == {"c": 1}
    assert kpatch.jsonpath(
        {"s": {"c": [{"type": "Ready", "status": "True"}]}}, '.s.c[?(@.type=="Ready")].status'
    ) == ["True"]


@pytest.fixture
def kopf_apiserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    with start_apiserver(tmp_path / "apiserver") as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
        yield api


def test_kopf_handlers_fire_and_status_patches_land(
    kopf_apiserver: ApiServer, tmp_path: Path
) -> None:
    """kopf runs against the emulator: create, update and delete handlers, status patches,
    its finalizer; the API server is an emulator (no kube-apiserver can run here)."""
    import kopf
    from kopf.testing import KopfRunner

    api = kopf_apiserver
    crd = yaml.safe_load((CRDS / "federatedjobs.fedcare.io.yaml").read_text())
    _create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    operator = tmp_path / "operator_module.py"
    operator.write_text(
        "import kopf\n"
        "@kopf.on.startup()\n"
        "def configure(settings, **_):\n"
        "    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()\n"
        "    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()\n"
        "    settings.watching.server_timeout = 10\n"
        "@kopf.on.create('fedcare.io', 'v1alpha1', 'federatedjobs')\n"
        "def created(spec, patch, **_):\n"
        "    patch.status['phase'] = 'WaitingForParticipants'\n"
        "    patch.status['totalRounds'] = spec['rounds']\n"
        "@kopf.on.update('fedcare.io', 'v1alpha1', 'federatedjobs')\n"
        "def updated(spec, patch, **_):\n"
        "    patch.status['totalRounds'] = spec['rounds']\n"
        "@kopf.on.delete('fedcare.io', 'v1alpha1', 'federatedjobs')\n"
        "def deleted(name, **_):\n"
        "    print('deleted', name)\n"
    )

    def wait_for(check: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = api.request("GET", f"{JOBS}/job-a")
            if check(got):
                return got.body if isinstance(got.body, dict) else {}
            time.sleep(0.05)
        raise AssertionError(f"not reached: {got.status} {got.body}")

    assert os.environ["KUBECONFIG"] == str(api.kubeconfig)  # how kopf finds the emulator
    # A fresh registry: the handlers of fedcare_operator (imported by other tests of this
    # process) stay in the default one and do not run here.
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)  # a fresh one has no login
    with KopfRunner(
        ["run", "--standalone", "-A", str(operator)], timeout=30, registry=registry
    ) as runner:
        _create(api, JOBS, _job())
        job = wait_for(lambda r: r.body.get("status", {}).get("phase") == "WaitingForParticipants")
        assert job["status"]["totalRounds"] == 3
        assert "kopf.zalando.org/KopfFinalizerMarker" in job["metadata"]["finalizers"]
        api.request("PATCH", f"{JOBS}/job-a", {"spec": {"rounds": 8}}, content_type=MERGE)
        wait_for(lambda r: r.body.get("status", {}).get("totalRounds") == 8)
        api.request("DELETE", f"{JOBS}/job-a")
        wait_for(lambda r: r.status == 404)
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert "deleted job-a" in runner.output
