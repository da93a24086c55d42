"""Every chart, with default and non-default values: `helm lint --strict`, documented values, a schema for every
value, and the rendered manifests validated by the real kube-apiserver (server-side dry-run, strict field
validation), with every pod admitted under PodSecurity "restricted"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from rendering import all_of, find

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ["sluice-kafka", "sluice-spark", "sluice-operator", "sluice"]

NON_DEFAULT = {
    "sluice-kafka": {
        "replicas": 3,
        "external": {"enabled": True},
        "persistence": {"size": "1Gi", "storageClass": "standard"},
        "config": {"log.retention.hours": "24"},
    },
    "sluice-spark": {
        "worker": {"replicas": 3, "cores": 2, "memory": "2g"},
        "ui": {"type": "NodePort"},
        "sharedCheckpoints": {"enabled": True, "accessModes": ["ReadWriteOnce"]},
    },
    "sluice-operator": {"watchNamespace": "pipelines", "verbose": True, "metrics": {"enabled": False}},
    "sluice": {"spark": {"enabled": False}, "kafka": {"replicas": 3}, "operator": {"reconcileInterval": 5}},
}
CASES = [(chart, {}) for chart in CHARTS] + [(chart, NON_DEFAULT[chart]) for chart in CHARTS]
CASE_IDS = [f"{chart}-{'defaults' if not values else 'custom'}" for chart, values in CASES]


@pytest.mark.parametrize(("chart", "values"), CASES, ids=CASE_IDS)
def test_helm_lint_strict(helm, tmp_path, chart, values):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm.run(
        "lint", "--strict", str(ROOT / "charts" / chart), "--values", str(values_file), check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key not in {"resources", "config"}:
            paths += _leaf_paths(value, path)
        else:
            paths.append(path)
    return paths


@pytest.mark.parametrize("chart", CHARTS)
def test_every_value_is_in_the_schema(chart):
    values = yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())
    schema = yaml.safe_load((ROOT / "charts" / chart / "values.schema.json").read_text())
    missing = []
    for path in _leaf_paths(values):
        node = schema
        for key in path.split("."):
            if "$ref" in node:  # "#/definitions/<name>"
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
            node = node.get("properties", {}).get(key)
            if node is None:
                break
        if node is None and not (chart == "sluice" and path.endswith("fullnameOverride")):
            missing.append(path)
    assert not missing, f"values without a schema in charts/{chart}/values.schema.json: {missing}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _documented(lines: list[str], number: int) -> bool:
    """Whether a comment opens the group of sibling keys LINE belongs to, or the group of one of its parents."""
    indent = _indent(lines[number])
    for above in range(number - 1, -1, -1):
        text = lines[above].strip()
        if not text:
            return False  # a blank line ends the group before any comment
        if text.startswith("#"):
            if _indent(lines[above]) == indent:
                return True
            continue  # a comment of an earlier sibling's child
        if _indent(lines[above]) < indent:
            return _documented(lines, above)  # the parent key: documented if its own group is
    return False


@pytest.mark.parametrize("chart", CHARTS)
def test_every_value_is_documented_where_it_is_set(chart):
    """Each key of values.yaml sits in a group of keys that a comment opens, or under a key that is documented."""
    lines = (ROOT / "charts" / chart / "values.yaml").read_text().splitlines()
    undocumented = [
        f"line {n + 1}: {line.strip()}"
        for n, line in enumerate(lines)
        if line.strip()
        and not line.strip().startswith(("#", "- "))
        and not line.rstrip().endswith(":")  # a section: its keys are checked
        and not _documented(lines, n)
    ]
    assert not undocumented, f"charts/{chart}/values.yaml: values without a comment: {undocumented}"


def _rendered(render, chart: str, values: dict, namespace: str) -> list[dict]:
    return render(chart, values, release="sluice", namespace=namespace)


@pytest.mark.parametrize(("chart", "values"), CASES, ids=CASE_IDS)
def test_kubernetes_accepts_every_rendered_object(render, control_plane, namespace, tmp_path, chart, values):
    """Server-side dry-run with strict field validation: the API server checks every object against its schema
    (a misspelt or misplaced field fails) without creating it. Cluster-scoped objects (the operator's ClusterRole
    and its binding) may already exist, made by another tier's tests on the same control plane: a field another
    manager owns is not a schema error, so the dry-run takes over such fields (--force-conflicts)."""
    objects = _rendered(render, chart, values, namespace)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "--server-side",
        "--field-manager=chart-test",
        "--force-conflicts",
        f"--namespace={namespace}",
        f"--filename={manifest}",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(objects), result.stdout


def _pods_of(objects: list[dict]) -> list[client.V1Pod | dict]:
    """One Pod per workload's template (StatefulSet claims become plain claim volumes), plus the helm test pods."""
    pods = []
    for o in objects:
        if o["kind"] == "Pod":
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": o["metadata"]["name"]},
                    "spec": o["spec"],
                }
            )
        elif o["kind"] in {"Deployment", "StatefulSet"}:
            spec = dict(o["spec"]["template"]["spec"])
            claims = o["spec"].get("volumeClaimTemplates", [])
            spec["volumes"] = spec.get("volumes", []) + [
                {"name": c["metadata"]["name"], "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
                for c in claims
            ]
            pods.append(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": o["metadata"]["name"]}, "spec": spec}
            )
    return pods


@pytest.mark.parametrize(("chart", "values"), CASES, ids=CASE_IDS)
def test_every_pod_is_admitted_under_restricted_pod_security(render, k8s_api, namespace, chart, values):
    objects = _rendered(render, chart, values, namespace)
    core = client.CoreV1Api(k8s_api)
    # Pods may only name a ServiceAccount that exists: create the chart's for real (the namespace is disposable).
    for account in all_of(objects, "ServiceAccount"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account["metadata"]["name"]}})
    pods = _pods_of(objects)
    assert pods, f"{chart} renders no pod"
    refused = {}
    for pod in pods:
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as exc:
            refused[pod["metadata"]["name"]] = exc.body
    assert not refused, refused


def test_the_pod_security_check_refuses_a_pod_that_breaks_restricted(k8s_api, namespace):
    """The check above can fail: the same dry-run refuses a pod with no securityContext."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose"},
        "spec": {"containers": [{"name": "c", "image": "sluice/spark-jobs:0.1.0"}]},
    }
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(k8s_api).create_namespaced_pod(namespace, pod, dry_run="All")
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in json.loads(refused.value.body)["message"]


def test_umbrella_names_match_the_samples_and_components_can_be_left_out(render):
    objects = render("sluice", release="sluice", namespace="sluice")
    kafka = find(objects, "Service", "sluice-kafka")
    bootstraps = {
        doc["spec"]["kafka"]["bootstrapServers"]
        for sample in sorted((ROOT / "k8s" / "samples").glob("*.yaml"))
        for doc in yaml.safe_load_all(sample.read_text())
        if doc
    }
    assert bootstraps == {f"sluice-kafka:{kafka['spec']['ports'][0]['port']}"}
    find(objects, "StatefulSet", "sluice-kafka")
    find(objects, "Deployment", "sluice-spark-master")
    find(objects, "Deployment", "sluice-operator")
    find(objects, "CustomResourceDefinition")
    assert {p["metadata"]["name"] for p in all_of(objects, "Pod")} == {
        "sluice-kafka-test",
        "sluice-spark-test",
        "sluice-operator-test-metrics",
    }
    without = render("sluice", {"spark": {"enabled": False}, "kafka": {"enabled": False}}, release="sluice")
    assert {o["kind"] for o in without} >= {"Deployment", "CustomResourceDefinition"}
    assert not all_of(without, "StatefulSet")
    assert [d["metadata"]["name"] for d in all_of(without, "Deployment")] == ["sluice-operator"]


@pytest.mark.timeout(300)
def test_helm_installs_upgrades_and_uninstalls_the_umbrella_chart(helm, control_plane, k8s_api, namespace):
    """A real `helm install` into the API server (no kubelet here, so pods stay Pending and `--wait` is not
    used): the CRD and every object exist with the chart's names, an upgrade changes the Spark workers, and
    `helm uninstall` removes what the release owns but keeps the shared checkpoint claim (resource-policy keep)."""
    kubeconfig = f"--kubeconfig={control_plane.kubeconfig}"
    chart = str(ROOT / "charts" / "sluice")
    # The operator's ClusterRole and binding are cluster-wide: named after the test's namespace, they cannot meet
    # the k8s tier's (k8s/operator/rbac.yaml also says sluice-operator).
    operator = f"{namespace[:40]}-op"
    values = [
        "--set",
        "spark.sharedCheckpoints.enabled=true",
        "--set",
        f"operator.fullnameOverride={operator}",
    ]
    install = helm.run("install", "sluice", chart, "--namespace", namespace, kubeconfig, *values, check=False)
    assert install.returncode == 0, install.stderr
    assert "kubectl -n " + namespace + " apply -f k8s/samples/minimal.yaml" in install.stdout  # the NOTES

    apps = client.AppsV1Api(k8s_api)
    core = client.CoreV1Api(k8s_api)
    assert {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items} == {
        "sluice-spark-master",
        "sluice-spark-worker",
        operator,
    }
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    assert rbac.read_cluster_role_binding(operator).subjects[0].namespace == namespace
    assert [s.metadata.name for s in apps.list_namespaced_stateful_set(namespace).items] == ["sluice-kafka"]
    client.ApiextensionsV1Api(k8s_api).read_custom_resource_definition(
        "streamingpipelines.streaming.sluice.dev"
    )

    upgrade = helm.run(
        "upgrade", "sluice", chart, "--namespace", namespace, kubeconfig, *values,
        "--set", "spark.worker.replicas=3", check=False,
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    assert apps.read_namespaced_deployment("sluice-spark-worker", namespace).spec.replicas == 3

    uninstall = helm.run("uninstall", "sluice", "--namespace", namespace, kubeconfig, check=False)
    assert uninstall.returncode == 0, uninstall.stderr
    assert not apps.list_namespaced_deployment(namespace).items
    assert not apps.list_namespaced_stateful_set(namespace).items
    claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items]
    assert claims == ["sluice-spark-checkpoints"]
    assert operator not in {r.metadata.name for r in rbac.list_cluster_role().items}
