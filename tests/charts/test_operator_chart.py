"""The sluice-operator chart rendered with the real helm: one Recreate replica, settings as environment, the same
CRD and RBAC as k8s/, probes and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rendering import all_of, container, env_of, find

pytestmark = pytest.mark.charts

CHART = "sluice-operator"
ROOT = Path(__file__).resolve().parents[2]
CRD_NAME = "streamingpipelines.streaming.sluice.dev.yaml"


def test_defaults_one_recreated_replica_with_probes_and_metrics(render):
    objects = render(CHART, release="sluice-operator", namespace="sluice-system")
    deployment = find(objects, "Deployment", "sluice-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "sluice-operator"
    c = container(deployment, "operator")
    assert c["image"] == "sluice/operator:0.1.0"
    assert "command" not in c  # the image's entrypoint (tini) runs the args
    assert c["args"] == ["python3", "-m", "sluice_operator", "--liveness=http://0.0.0.0:8080/healthz"]
    assert env_of(c) == {
        "SLUICE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},  # its registry of topic owners
        "SLUICE_WATCH_NAMESPACE": "",
        "SLUICE_RECONCILE_INTERVAL": "10",
        "SLUICE_KAFKA_TIMEOUT": "15",
        "SLUICE_KAFKA_RETRY_DELAY": "15",
        "SLUICE_DELETE_ATTEMPTS": "5",
        "SLUICE_DELETE_RETRY_DELAY": "5",
        "SLUICE_METRICS_PORT": "9090",
    }
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 9090}
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    metrics = find(objects, "Service", "sluice-operator-metrics")
    assert metrics["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert find(objects, "ServiceAccount", "sluice-operator")["metadata"]["namespace"] == "sluice-system"
    binding = find(objects, "ClusterRoleBinding", "sluice-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sluice-operator", "namespace": "sluice-system"}
    ]


def test_settings_values_become_the_operator_environment(render):
    objects = render(
        CHART,
        {
            "watchNamespace": "pipelines",
            "reconcileInterval": 2.5,
            "kafka": {"timeout": 30, "retryDelay": 1},
            "deletion": {"attempts": 9, "retryDelay": 0.5},
            "metrics": {"enabled": False},
            "verbose": True,
            "healthPort": 8181,
        },
    )
    c = container(find(objects, "Deployment"), "operator")
    assert env_of(c) == {
        "SLUICE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},  # its registry of topic owners
        "SLUICE_WATCH_NAMESPACE": "pipelines",
        "SLUICE_RECONCILE_INTERVAL": "2.5",
        "SLUICE_KAFKA_TIMEOUT": "30",
        "SLUICE_KAFKA_RETRY_DELAY": "1",
        "SLUICE_DELETE_ATTEMPTS": "9",
        "SLUICE_DELETE_RETRY_DELAY": "0.5",
        "SLUICE_METRICS_PORT": "0",
    }
    assert c["args"][3:] == ["--liveness=http://0.0.0.0:8181/healthz", "--verbose"]
    assert [p["name"] for p in c["ports"]] == ["health"]
    # No metrics: no metrics Service, and no helm test that would wait for one.
    assert not all_of(objects, "Service")
    assert not all_of(objects, "Pod")


def test_the_environment_is_what_the_operator_reads(render):
    """Every variable the chart sets is one sluice_operator.settings reads, and parses to the value's number."""
    from sluice_operator import settings

    c = container(
        find(render(CHART, {"reconcileInterval": 3, "deletion": {"attempts": 2}}), "Deployment"), "operator"
    )
    parsed = settings.from_env(env_of(c))
    assert (parsed.reconcile_interval, parsed.delete_attempts, parsed.metrics_port) == (3.0, 2, 9090)


def test_chart_crd_is_the_generated_crd(render):
    chart_copy = ROOT / "charts" / CHART / "crds" / CRD_NAME
    assert chart_copy.read_text() == (ROOT / "k8s" / "crd" / CRD_NAME).read_text(), "run: make crd"
    rendered = find(render(CHART), "CustomResourceDefinition")
    assert rendered["metadata"]["name"] == "streamingpipelines.streaming.sluice.dev"


def test_chart_rbac_is_the_rbac_of_k8s_operator(render):
    reference = [d for d in yaml.safe_load_all((ROOT / "k8s" / "operator" / "rbac.yaml").read_text()) if d]
    (role,) = [d for d in reference if d["kind"] == "ClusterRole"]
    rendered = render(CHART)
    assert find(rendered, "ClusterRole")["rules"] == role["rules"]
    (own,) = [
        d for d in reference if d["kind"] == "Role"
    ]  # the registry of topic owners, in its own namespace
    assert find(rendered, "Role")["rules"] == own["rules"]


def test_rbac_and_service_account_can_be_left_to_the_user(render, render_error):
    objects = render(CHART, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}})
    assert not [
        o
        for o in objects
        if o["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    ]
    assert find(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    message = render_error(CHART, {"serviceAccount": {"create": False}})
    assert "serviceAccount.name is required when serviceAccount.create is false" in message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watchNamespace": "Not_A_Namespace"}, "at '/watchNamespace'"),
        ({"reconcileInterval": 0}, "at '/reconcileInterval': minimum: got 0, want 0.1"),
        ({"deletion": {"attempts": 0}}, "at '/deletion/attempts': minimum: got 0, want 1"),
        ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ],
)
def test_bad_values_are_refused_naming_the_value(render_error, values, message):
    assert message in render_error(CHART, values)
