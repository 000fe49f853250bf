"""The Helm chart (helm-chart/fedcare), rendered and linted by Helm's own engine.

helm-python-sdk is Helm's Go SDK as a library: the same template engine, lint rules and
values-schema validation as the `helm` binary, without one. Rendered objects of built-in kinds
are checked with kubernetes-validate in strict mode (unknown fields refused) against the
oldest Kubernetes the chart supports and a recent one.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fedcare.monitoring.metrics import CoordinatorMetrics
from fedcare_operator import kube
from fedcare_operator.builders import RUN_AS
from fedcare_operator.metrics import OperatorMetrics
from fedcare_operator.settings import OperatorSettings
from tests.deploy.conftest import CHART, NAMESPACE, RELEASE, REPO, manifests, render

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the dev extra) is missing")

#: Kubernetes versions the rendered manifests are validated against: the chart's kubeVersion
#: floor, kind's current node image, and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", "1.33.0", kubernetes_validate.latest_version())

#: Every option turned on (and away from its default).
ALL_ON: dict[str, Any] = {
    "image": {
        "repository": "registry.example.org/fedcare/operator",
        "tag": "0.1.0-rc1",
        "pullPolicy": "Always",
    },
    "runtimeImage": {
        "repository": "registry.example.org/fedcare/runtime",
        "tag": "0.1.0-rc1",
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "operator": {
        "coordinatorEndpoint": "{service}.{namespace}.svc.cluster.local:{port}",
        "peering": "fedcare",
        "logFormat": "json",
        "verbose": True,
        "extraArgs": ["--priority=100"],
        "extraEnv": [
            {"name": "TZ", "value": "UTC"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
    },
    "serviceAccount": {
        "create": True,
        "name": "fedcare-operator",
        "annotations": {"example.org/owner": "platform-team"},
    },
    "rbac": {"create": True},
    "resources": {
        "requests": {"cpu": "200m", "memory": "300Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    },
    "health": {"port": 8081},
    "probes": {
        "liveness": {
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "timeoutSeconds": 3,
            "failureThreshold": 5,
        },
        "readiness": {"periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
    },
    "terminationGracePeriodSeconds": 45,
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        }
    },
    "podAnnotations": {"example.org/audit": "true"},
    "podLabels": {"team": "ml-platform"},
    "metrics": {
        "enabled": True,
        "port": 9102,
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
    },
    "serviceMonitor": {
        "enabled": True,
        "labels": {"release": "kube-prometheus-stack"},
        "interval": "15s",
        "scrapeTimeout": "10s",
        "coordinators": True,
    },
    "grafanaDashboard": {
        "enabled": True,
        "namespace": "monitoring",
        "labels": {"grafana_dashboard": "1"},
        "annotations": {"grafana_folder": "fedcare"},
    },
}
NAMESPACED = {
    **copy.deepcopy(ALL_ON),
    "namespaced": True,
    "watchNamespaces": ["hospital-a", "hospital-b"],
}
VARIANTS = {"defaults": {}, "all-on": ALL_ON, "namespaced-all-on": NAMESPACED}
#: Kinds the chart renders that are not built in (checked here, not by kubernetes-validate).
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    container: dict[str, Any] = pod["containers"][0]
    return container


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each variant's rendered objects."""
    return {name: manifests(render(values)) for name, values in VARIANTS.items()}


# ---- lint, schema, CRDs ---------------------------------------------------------------------


def test_lint_strict_passes_with_defaults_and_every_option() -> None:
    for values in VARIANTS.values():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


def test_the_chart_ships_exactly_the_repository_crds() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import sync_chart_crds
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert sync_chart_crds.drift() == [], "run scripts/sync_chart_crds.py"
    with helm.Chart.load(str(CHART)) as chart:
        shipped = {Path(c["filename"]).name: c["data"] for c in chart.crds}
    assert shipped == {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}


def test_the_drift_check_names_a_changed_crd(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import sync_chart_crds
    finally:
        sys.path.remove(str(REPO / "scripts"))
    source, target = tmp_path / "crds", tmp_path / "chart-crds"
    source.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    (source / "b.yaml").write_text("kind: B\n")
    sync_chart_crds.sync(source, target)
    assert sync_chart_crds.drift(source, target) == []
    (target / "a.yaml").write_text("kind: A2\n")
    (target / "stale.yaml").write_text("kind: S\n")
    (target / "b.yaml").unlink()
    assert sync_chart_crds.drift(source, target) == [
        "a.yaml: differs from crds/a.yaml",
        "b.yaml: missing from the chart",
        "stale.yaml: not in crds/",
    ]


def test_values_yaml_passes_its_schema_and_the_schema_refuses_mistakes() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.values)
        for bad in (
            {"imagePullPolicy": "Always"},  # unknown key (it is image.pullPolicy)
            {"image": {"pullPolicy": "Sometimes"}},
            {"metrics": {"port": 70000}},
            {"namespaced": "yes"},
            {"watchNamespaces": ["Not_A_Namespace"]},
            {"operator": {"logFormat": "xml"}},
            {"serviceMonitor": {"interval": "often"}},
        ):
            with pytest.raises(helm.HelmError):
                chart.render(bad, name=RELEASE, namespace=NAMESPACE)


def test_the_crds_are_valid_customresourcedefinitions() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        crds = [yaml.safe_load(c["data"]) for c in chart.crds]
    assert {c["metadata"]["name"] for c in crds} == {
        "federatedjobs.fedcare.io",
        "participants.fedcare.io",
    }
    for crd in crds:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(crd, version, strict=True)


# ---- rendered objects -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_validate_strictly(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(
                    f"{variant}: {doc['kind']} {doc['metadata']['name']} ({version}): {err}"
                )


def test_defaults_render_the_operator_cluster_wide(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["defaults"]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:
        if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    binding = _one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fedcare", "namespace": NAMESPACE}
    ]
    container = _container(docs)
    assert container["image"] == "ghcr.io/fedcare/operator:0.1.0"
    assert container["args"] == [
        "--standalone",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=full",
    ]


def test_the_deployment_is_one_recreated_restricted_probed_pod(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for variant, docs in rendered.items():
        deployment = _one(docs, "Deployment")
        spec = deployment["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, variant
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == RUN_AS  # the images' numeric user
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = _container(docs)
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]
        health = next(p for p in container["ports"] if p["name"] == "health")
        liveness = next(a for a in container["args"] if a.startswith("--liveness="))
        assert liveness == f"--liveness=http://0.0.0.0:{health['containerPort']}/healthz"
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts  # the only writable path
        selector = spec["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == "operator"
        labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_the_environment_is_what_the_operator_reads(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["all-on"]
    env = {e["name"]: e.get("value") for e in _container(docs)["env"]}
    settings = OperatorSettings.from_env({k: v for k, v in env.items() if v is not None})
    assert settings.runtime_image == "registry.example.org/fedcare/runtime:0.1.0-rc1"
    assert settings.image_pull_policy == "Always"
    assert settings.coordinator_endpoint == "{service}.{namespace}.svc.cluster.local:{port}"
    assert settings.metrics_port == 9102
    assert settings.cluster_scanning is True
    assert env["TZ"] == "UTC" and "NODE" in env
    namespaced = {
        e["name"]: e.get("value") for e in _container(rendered["namespaced-all-on"])["env"]
    }
    assert (
        OperatorSettings.from_env(
            {k: v for k, v in namespaced.items() if v is not None}
        ).cluster_scanning
        is False
    )
    defaults = {e["name"]: e.get("value") for e in _container(rendered["defaults"])["env"]}
    assert defaults["FEDCARE_RUNTIME_IMAGE"] == "ghcr.io/fedcare/runtime:0.1.0"
    assert "FEDCARE_COORDINATOR_ENDPOINT" not in defaults


def test_every_option_reaches_the_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["all-on"]
    deployment = _one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(docs)
    assert container["image"] == "registry.example.org/fedcare/operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == [
        "--peering=fedcare",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--log-format=json",
        "--verbose",
        "--priority=100",
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "fedcare-operator"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["terminationGracePeriodSeconds"] == 45
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"] == {"example.org/audit": "true"}
    assert template["labels"]["team"] == "ml-platform"
    assert container["livenessProbe"]["periodSeconds"] == 30
    assert _one(docs, "ServiceAccount")["metadata"]["annotations"] == {
        "example.org/owner": "platform-team"
    }
    service = _one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9102, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    dashboard = _one(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "fedcare"}
    rules = [r for r in _one(docs, "ClusterRole")["rules"]]
    assert any("clusterkopfpeerings" in r["resources"] for r in rules)


def test_service_monitors_scrape_the_operator_and_every_coordinator(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    monitors = {m["metadata"]["name"]: m for m in _by_kind(rendered["all-on"], "ServiceMonitor")}
    assert set(monitors) == {"fedcare", "fedcare-coordinators"}
    operator = monitors["fedcare"]
    assert operator["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    (endpoint,) = operator["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    coordinators = monitors["fedcare-coordinators"]
    # The labels and port name of the coordinator Services the operator builds.
    assert coordinators["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "fedcare",
        "app.kubernetes.io/component": "coordinator",
    }
    assert coordinators["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = coordinators["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
    namespaced = {
        m["metadata"]["name"]: m for m in _by_kind(rendered["namespaced-all-on"], "ServiceMonitor")
    }
    assert namespaced["fedcare-coordinators"]["spec"]["namespaceSelector"] == {
        "matchNames": ["hospital-a", "hospital-b"]
    }


def test_the_coordinator_service_matches_the_service_monitor() -> None:
    from fedcare.spec import FederatedJob
    from fedcare_operator import builders

    job = FederatedJob.model_validate(
        yaml.safe_load((REPO / "examples" / "federatedjob.yaml").read_text())
        | {"metadata": {"name": "readmission", "namespace": "ns"}}
    )
    service = builders.coordinator_service(job)
    labels = service["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "fedcare"
    assert labels["app.kubernetes.io/component"] == "coordinator"
    assert any(p["name"] == "http" for p in service["spec"]["ports"])


# ---- RBAC -----------------------------------------------------------------------------------


def _allowed(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


#: What the operator's code does with each kind it knows (fedcare_operator.kube.RESOURCES):
#: reconcile.py creates children when missing and patches ConfigMaps and Deployments;
#: status_daemon.py reads jobs, lists Participants and patches both statuses; kopf watches
#: the two custom kinds and patches their annotations and finalizers.
NEEDED = {
    "secrets": {"get", "create"},
    "configmaps": {"get", "create", "patch"},
    "services": {"get", "create"},
    "pods": {"get", "list", "watch"},
    "events": {"create"},
    "deployments": {"get", "create", "patch"},
    "jobs": {"get", "create"},
    "federatedjobs": {"get", "list", "watch", "patch"},
    "participants": {"get", "list", "watch", "patch", "create"},
    "federatedjobs/status": {"get", "patch"},
    "participants/status": {"get", "patch"},
}


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _check_rules(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    allowed = _allowed(rules)
    for (api_version, _kind), plural in kube.RESOURCES.items():
        got = allowed.get((_group(api_version), plural), set())
        assert NEEDED[plural] <= got, f"{plural}: {sorted(NEEDED[plural] - got)} missing"
    for plural in ("federatedjobs/status", "participants/status"):
        assert NEEDED[plural] <= allowed[("fedcare.io", plural)]
    # Nothing wider: no wildcards, no delete, no privilege verbs, no listing of Secrets.
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not set(rule["verbs"]) & {
            "delete",
            "deletecollection",
            "escalate",
            "bind",
            "impersonate",
        }, rule
    assert allowed[("", "secrets")] == {"get", "create"}
    return allowed


def test_cluster_wide_rbac_is_kopfs_plus_the_operators_own_and_nothing_wider(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["defaults"]
    allowed = _check_rules(_one(docs, "ClusterRole")["rules"])
    # kopf's documented cluster-scoped needs: CRD and namespace observation.
    assert allowed[("apiextensions.k8s.io", "customresourcedefinitions")] >= {"list", "watch"}
    assert allowed[("", "namespaces")] == {"list", "watch"}
    # Peering only when asked for (the default operator runs --standalone).
    assert not any("peerings" in resource for _, resource in allowed)
    assert not _by_kind(docs, "Role") and not _by_kind(docs, "RoleBinding")
    expected = set(NEEDED) | {
        "customresourcedefinitions",
        "namespaces",
        "federatedjobs/finalizers",
        "participants/finalizers",
    }
    assert {resource for _, resource in allowed} == expected


def test_namespaced_rbac_has_a_role_per_namespace_and_nothing_cluster_scoped(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["namespaced-all-on"]
    assert not _by_kind(docs, "ClusterRole") and not _by_kind(docs, "ClusterRoleBinding")
    roles = _by_kind(docs, "Role")
    bindings = _by_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["hospital-a", "hospital-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["hospital-a", "hospital-b"]
    for role in roles:
        allowed = _check_rules(role["rules"])
        assert ("apiextensions.k8s.io", "customresourcedefinitions") not in allowed
        assert ("", "namespaces") not in allowed
        assert allowed[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "fedcare-operator", "namespace": NAMESPACE}
        ]
    args = _container(docs)["args"]
    assert "--namespace=hospital-a" in args and "--namespace=hospital-b" in args
    assert "--all-namespaces" not in args
    # Without watchNamespaces: the release's namespace.
    own = manifests(render({"namespaced": True}))
    assert [r["metadata"]["namespace"] for r in _by_kind(own, "Role")] == [NAMESPACE]
    assert f"--namespace={NAMESPACE}" in _container(own)["args"]


def test_rbac_and_service_account_can_be_left_to_the_user() -> None:
    docs = manifests(
        render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}})
    )
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    assert _one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    with pytest.raises(helm.HelmError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False, "name": ""}})


# ---- Grafana dashboard ----------------------------------------------------------------------

_METRIC = re.compile(r"\bfedcare_[a-z_]+\b")


def _exported_names() -> set[str]:
    """Series names the coordinator and the operator export (counters with _total, ...)."""
    names: set[str] = set()
    for registry in (CoordinatorMetrics("job").registry, OperatorMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            for suffix in ("_total", "_created", "_bucket", "_sum", "_count"):
                names.add(family.name + suffix)
    return names


def test_the_dashboard_plots_every_required_panel_from_exported_metrics(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    configmap = _one(rendered["all-on"], "ConfigMap")
    dashboard = json.loads(configmap["data"]["fedcare.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "fedcare.json").read_text())
    exported = _exported_names()
    used: set[str] = set()
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(_METRIC.findall(target["expr"]))
            assert names, target["expr"]
            assert names <= exported, f"{panel['title']}: {sorted(names - exported)} not exported"
            used |= names
    for variable in dashboard["templating"]["list"]:
        used |= set(_METRIC.findall(json.dumps(variable.get("query", ""))))
    assert used <= exported
    for wanted in (
        "fedcare_rounds_completed_total",
        "fedcare_round_duration_seconds_bucket",
        "fedcare_job_round_metric",
        "fedcare_participants_connected",
        "fedcare_bytes_received_total",
        "fedcare_bytes_sent_total",
        "fedcare_updates_rejected_total",
        "fedcare_updates_accepted_total",
        "fedcare_current_round",
        "fedcare_job_epsilon_spent",
    ):
        assert wanted in used, wanted
    rejected = next(p for p in dashboard["panels"] if "rejected" in p["title"])
    assert any("by (reason)" in t["expr"] for t in rejected["targets"])
    assert len(set(titles)) == len(titles)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


# ---- NOTES.txt ------------------------------------------------------------------------------


def test_notes_name_the_next_commands() -> None:
    notes = render()[f"{CHART.name}/templates/NOTES.txt"]
    for line in (
        f"kubectl -n {NAMESPACE} rollout status deployment/fedcare",
        "kubectl apply -n default -f examples/federatedjob.yaml",
        "kubectl get fedjobs -A -w",
        "fedcare token create readmission --participant st-luke",
        "kubectl port-forward svc/readmission-coordinator 8080:8080",
        f"kubectl -n {NAMESPACE} port-forward svc/fedcare-metrics 9090:9090",
    ):
        assert line in notes, line
    namespaced = render({"namespaced": True, "watchNamespaces": ["hospital-a"]})
    notes = namespaced[f"{CHART.name}/templates/NOTES.txt"]
    assert "The operator watches: hospital-a." in notes
    assert "kubectl apply -n hospital-a -f examples/federatedjob.yaml" in notes
