"""The sluice-operator chart rendered with the real helm: one Recreate replica, settings as environment, the same
CRD and RBAC as k8s/, probes and metrics, and the optional ServiceMonitor, PodMonitor, PrometheusRule and Grafana
dashboard."""

from __future__ import annotations

import json
import re
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


# --- Prometheus Operator and Grafana objects (metrics.serviceMonitor, podMonitor, prometheusRule, grafanaDashboard)

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
ALL_MONITORING = {
    "serviceMonitor": {"enabled": True},
    "podMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
}
DASHBOARD = ROOT / "charts" / CHART / "dashboards" / "sluice-pipelines.json"
METRIC_NAME = re.compile(r"\bsluice_[a-z_]+\b")


def _operator_metric_names() -> set[str]:
    """Every name the operator exports: each family's and each of its samples' (``_total``, ``_bucket``...)."""
    from prometheus_client import REGISTRY
    from sluice_operator import metrics  # noqa: F401  (registers the operator's metrics)

    return {
        name for family in REGISTRY.collect() for name in (family.name, *(s.name for s in family.samples))
    }


def test_no_monitoring_objects_by_default(render):
    objects = render(CHART, release="sluice-operator", namespace="sluice-system")
    assert not [o for o in objects if o["kind"] in MONITORING_KINDS]


def test_service_monitor_scrapes_the_metrics_service(render):
    objects = render(
        CHART, {"metrics": {"serviceMonitor": {"enabled": True}}}, release="sluice-operator", namespace="ops"
    )
    monitor = find(objects, "ServiceMonitor", "sluice-operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ops"
    selector = {"app.kubernetes.io/name": "sluice-operator", "app.kubernetes.io/instance": "sluice-operator"}
    assert monitor["spec"]["selector"] == {"matchLabels": selector}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    # The operator's series name the pipeline's namespace: honorLabels keeps it.
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]
    # ...which is what the metrics Service is selected by and names its port.
    service = find(objects, "Service", "sluice-operator-metrics")
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


def test_service_monitor_elsewhere_still_selects_the_release_namespace(render):
    values = {"serviceMonitor": {"enabled": True, "interval": "15s", "namespace": "monitoring"}}
    values["serviceMonitor"]["labels"] = {"release": "kube-prometheus-stack"}
    monitor = find(render(CHART, {"metrics": values}, namespace="ops"), "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"


@pytest.mark.parametrize("off", [{"enabled": False}, {"service": {"enabled": False}}])
def test_no_service_monitor_without_the_metrics_service(render, off):
    objects = render(CHART, {"metrics": {"serviceMonitor": {"enabled": True}, **off}})
    assert not all_of(objects, "ServiceMonitor")


def test_pod_monitor_scrapes_the_pipelines_jobs_in_every_namespace(render):
    objects = render(
        CHART, {"metrics": {"podMonitor": {"enabled": True}}}, release="sluice-operator", namespace="ops"
    )
    monitor = find(objects, "PodMonitor", "sluice-operator-pipelines")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "ops"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/managed-by": "sluice-operator",
            "app.kubernetes.io/part-of": "sluice",
        }
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "relabelings": [
            {
                "sourceLabels": ["__meta_kubernetes_pod_label_streaming_sluice_dev_pipeline"],
                "targetLabel": "pipeline",
                "action": "replace",
            }
        ],
    }


def test_pod_monitor_matches_the_pods_the_operator_makes(render):
    """The selector and the relabelled label are those of a job pod the operator builds."""
    from sluice_operator import manifests

    monitor = find(render(CHART, {"metrics": {"podMonitor": {"enabled": True}}}), "PodMonitor")
    pod_labels = manifests.labels(pipeline="orders", component="windowed")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (source,) = endpoint["relabelings"][0]["sourceLabels"]
    # Prometheus' meta label of a pod label: every character outside [a-zA-Z0-9_] becomes "_".
    assert pod_labels[manifests.LABEL_PIPELINE] == "orders"
    assert source == "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", manifests.LABEL_PIPELINE)


def test_pod_monitor_follows_watch_namespace(render):
    values = {"watchNamespace": "pipelines", "metrics": {"podMonitor": {"enabled": True, "interval": "1m"}}}
    values["metrics"]["podMonitor"]["labels"] = {"release": "prom"}
    monitor = find(render(CHART, values), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["pipelines"]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "1m"


def _rules(objects) -> dict[str, dict]:
    rule = find(objects, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_prometheus_rule_alerts(render):
    objects = render(CHART, {"metrics": {"prometheusRule": {"enabled": True}}}, release="sluice-operator")
    rule = find(objects, "PrometheusRule", "sluice-operator")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = _rules(objects)
    assert {name: (a["expr"], a["for"], a["labels"]["severity"]) for name, a in alerts.items()} == {
        "SluicePipelineStalled": ('sluice_pipeline_condition{condition="Stalled"} == 1', "1m", "critical"),
        "SluicePipelineLagging": ('sluice_pipeline_condition{condition="Lagging"} == 1', "5m", "warning"),
        "SluicePipelineExecutorsUnavailable": (
            'sluice_pipeline_condition{condition="ExecutorsUnavailable"} == 1',
            "5m",
            "warning",
        ),
        "SluicePipelineNotReady": ('sluice_pipeline_condition{condition="Ready"} == 0', "10m", "warning"),
        "SluiceReconcileErrors": ("rate(sluice_reconcile_errors_total[5m]) > 0", "15m", "warning"),
    }
    # Prometheus' own templates reach it untouched by Helm.
    pipelines = ("SluicePipelineStalled", "SluicePipelineLagging", "SluicePipelineExecutorsUnavailable")
    for name in (*pipelines, "SluicePipelineNotReady"):
        for text in (alerts[name]["annotations"]["summary"], alerts[name]["annotations"]["description"]):
            assert "{{ $labels.namespace }}/{{ $labels.pipeline }}" in text
    assert "{{ $labels.instance }}" in alerts["SluiceReconcileErrors"]["annotations"]["description"]


def test_prometheus_rule_durations_and_labels(render):
    values = {"enabled": True, "stallFor": "2m", "lagFor": "15m", "labels": {"release": "prom"}}
    objects = render(CHART, {"metrics": {"prometheusRule": values}})
    assert find(objects, "PrometheusRule")["metadata"]["labels"]["release"] == "prom"
    alerts = _rules(objects)
    assert (alerts["SluicePipelineStalled"]["for"], alerts["SluicePipelineLagging"]["for"]) == ("2m", "15m")


def test_prometheus_rule_exprs_name_exported_metrics(render):
    alerts = _rules(render(CHART, {"metrics": {"prometheusRule": {"enabled": True}}}))
    used = {name for a in alerts.values() for name in METRIC_NAME.findall(a["expr"])}
    assert used == {"sluice_pipeline_condition", "sluice_reconcile_errors_total"}
    assert used <= _operator_metric_names()


def test_grafana_dashboard_config_map_holds_the_dashboard(render):
    objects = render(
        CHART,
        {"metrics": {"grafanaDashboard": {"enabled": True}}},
        release="sluice-operator",
        namespace="ops",
    )
    config_map = find(objects, "ConfigMap", "sluice-operator-dashboard")
    assert config_map["metadata"]["namespace"] == "ops"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert list(config_map["data"]) == ["sluice-pipelines.json"]
    assert json.loads(config_map["data"]["sluice-pipelines.json"]) == json.loads(DASHBOARD.read_text())


def test_grafana_dashboard_namespace_and_labels(render):
    values = {"enabled": True, "namespace": "grafana", "labels": {"dashboards": "sluice"}}
    config_map = find(render(CHART, {"metrics": {"grafanaDashboard": values}}), "ConfigMap")
    assert config_map["metadata"]["namespace"] == "grafana"
    # Helm merges maps: the sidecar's default label stays unless set to null.
    assert config_map["metadata"]["labels"]["dashboards"] == "sluice"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_every_monitoring_object_at_once(render):
    objects = render(CHART, {"metrics": ALL_MONITORING})
    assert sorted(o["kind"] for o in objects if o["kind"] in MONITORING_KINDS) == sorted(MONITORING_KINDS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
            "at '/metrics/serviceMonitor/enabled': got string, want boolean",
        ),
        (
            {"metrics": {"serviceMonitor": {"namespace": "Mon_itoring"}}},
            "at '/metrics/serviceMonitor/namespace'",
        ),
        (
            {"metrics": {"serviceMonitor": {"scrapeTimeout": "10s"}}},
            "at '/metrics/serviceMonitor': additional properties 'scrapeTimeout' not allowed",
        ),
        (
            {"metrics": {"podMonitor": {"enabled": 1}}},
            "at '/metrics/podMonitor/enabled': got number, want boolean",
        ),
        ({"metrics": {"podMonitor": {"interval": "often"}}}, "at '/metrics/podMonitor/interval'"),
        (
            {"metrics": {"prometheusRule": {"stallFor": 60}}},
            "at '/metrics/prometheusRule/stallFor': got number, want string",
        ),
        ({"metrics": {"prometheusRule": {"lagFor": "5 minutes"}}}, "at '/metrics/prometheusRule/lagFor'"),
        (
            {"metrics": {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}},
            "at '/metrics/grafanaDashboard/labels/grafana_dashboard': got number, want string",
        ),
        (
            {"metrics": {"grafanaDashboard": {"enabled": "true"}}},
            "at '/metrics/grafanaDashboard/enabled': got string, want boolean",
        ),
    ],
)
def test_bad_monitoring_values_are_refused(render_error, values, message):
    assert message in render_error(CHART, values)
