"""The sluice-spark chart rendered with the real helm: one master, N workers, the UI Service, the shared
checkpoint volume, and the optional Prometheus servlet and PodMonitors."""

from __future__ import annotations

import pytest
from rendering import all_of, container, env_of, find

pytestmark = pytest.mark.charts

CHART = "sluice-spark"


def test_defaults_one_master_two_workers_on_the_project_image(render):
    objects = render(CHART, release="sluice-spark", namespace="data")
    master = find(objects, "Deployment", "sluice-spark-master")
    assert master["spec"]["replicas"] == 1
    assert master["spec"]["strategy"] == {"type": "Recreate"}
    m = container(master, "master")
    assert m["image"] == "sluice/spark-jobs:0.1.0"
    assert "command" not in m  # the image's entrypoint (tini) runs the program
    assert m["args"] == [
        "spark-class",
        "org.apache.spark.deploy.master.Master",
        "--host",
        "$(POD_IP)",
        "--port",
        "7077",
        "--webui-port",
        "8080",
    ]
    assert env_of(m)["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # Kubernetes expands $(POD_IP) only from variables defined earlier in the list.
    names = [e["name"] for e in m["env"]]
    assert env_of(m)["SPARK_LOCAL_IP"] == "$(POD_IP)" and names.index("POD_IP") < names.index(
        "SPARK_LOCAL_IP"
    )

    workers = find(objects, "Deployment", "sluice-spark-worker")
    assert workers["spec"]["replicas"] == 2
    w = container(workers, "worker")
    assert "command" not in w
    # Two workers of two cores and 2g: a standalone-mode pipeline's three jobs (one core and one 1g executor each
    # by default, spark.cores.max = instances x cores) run at once, with a core to spare.
    assert w["args"] == [
        "spark-class",
        "org.apache.spark.deploy.worker.Worker",
        "--host",
        "$(POD_IP)",
        "--cores",
        "2",
        "--memory",
        "2g",
        "--webui-port",
        "8081",
        "--work-dir",
        "/tmp/spark-work",
        "spark://sluice-spark-master:7077",
    ]
    # Both run as the image's spark user (uid 185), as the pipelines' pods do.
    for workload in (master, workers):
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"], pod["runAsNonRoot"]) == (
            185,
            185,
            185,
            True,
        )

    rpc = find(objects, "Service", "sluice-spark-master")
    assert {(p["name"], p["port"]) for p in rpc["spec"]["ports"]} == {("rpc", 7077), ("ui", 8080)}
    ui = find(objects, "Service", "sluice-spark-ui")
    assert ui["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in ui["spec"]["ports"][0]
    assert not all_of(objects, "PersistentVolumeClaim")


def test_worker_count_resources_and_node_port_ui(render):
    objects = render(
        CHART,
        {
            "worker": {"replicas": 3, "cores": 2, "memory": "3g", "resources": {"limits": {"memory": "4Gi"}}},
            "ui": {"type": "NodePort", "nodePort": 30080},
        },
        release="s",
    )
    workers = find(objects, "Deployment", "s-sluice-spark-worker")
    assert workers["spec"]["replicas"] == 3
    w = container(workers, "worker")
    assert w["args"][w["args"].index("--cores") + 1] == "2"
    assert w["args"][w["args"].index("--memory") + 1] == "3g"
    # Helm merges maps: the limit is replaced, the default requests stay.
    assert w["resources"] == {"limits": {"memory": "4Gi"}, "requests": {"cpu": "500m", "memory": "2Gi"}}
    ui = find(objects, "Service", "s-sluice-spark-ui")
    assert (ui["spec"]["type"], ui["spec"]["ports"][0]["nodePort"]) == ("NodePort", 30080)
    # The helm test waits for exactly that many ALIVE workers.
    test_pod = find(objects, "Pod", "s-sluice-spark-test")
    assert "want = 3" in container(test_pod, "master-answers")["args"][2]


def test_shared_checkpoints_create_a_kept_claim_the_workers_mount(render):
    objects = render(CHART, {"sharedCheckpoints": {"enabled": True, "size": "50Gi"}}, release="sluice-spark")
    claim = find(objects, "PersistentVolumeClaim", "sluice-spark-checkpoints")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    workers = find(objects, "Deployment", "sluice-spark-worker")
    mounts = {m["name"]: m["mountPath"] for m in container(workers, "worker")["volumeMounts"]}
    assert mounts["checkpoints"] == "/var/lib/sluice"
    volumes = {v["name"]: v for v in workers["spec"]["template"]["spec"]["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "sluice-spark-checkpoints"}


def test_an_existing_checkpoint_claim_is_mounted_not_created(render):
    objects = render(CHART, {"sharedCheckpoints": {"enabled": True, "existingClaim": "nfs-state"}})
    assert not all_of(objects, "PersistentVolumeClaim")
    workers = find(objects, "Deployment", "t-sluice-spark-worker")
    volumes = {v["name"]: v for v in workers["spec"]["template"]["spec"]["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "nfs-state"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker": {"memory": "lots"}}, "at '/worker/memory'"),
        ({"worker": {"cores": 0}}, "at '/worker/cores': minimum: got 0, want 1"),
        ({"worker": {"replicas": -1}}, "at '/worker/replicas'"),
        ({"ui": {"type": "Ingress"}}, "value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'"),
        (
            {"sharedCheckpoints": {"accessModes": ["ReadWriteSometimes"]}},
            "at '/sharedCheckpoints/accessModes/0'",
        ),
        ({"workers": 3}, "additional properties 'workers' not allowed"),
    ],
)
def test_bad_values_are_refused_naming_the_value(render_error, values, message):
    assert message in render_error(CHART, values)


# --- Prometheus metrics (metrics.enabled: Spark's PrometheusServlet; metrics.podMonitor) ----------------------------

SERVLET_OPTS = [
    "-Dspark.metrics.conf.*.sink.prometheusServlet.class=org.apache.spark.metrics.sink.PrometheusServlet",
    "-Dspark.metrics.conf.*.sink.prometheusServlet.path=/metrics/prometheus",
    "-Dspark.metrics.conf.master.sink.prometheusServlet.path=/metrics/master/prometheus",
    "-Dspark.metrics.conf.applications.sink.prometheusServlet.path=/metrics/applications/prometheus",
]


def _daemons(objects) -> dict[str, dict]:
    return {
        "master": container(find(objects, "Deployment", "sluice-spark-master"), "master"),
        "worker": container(find(objects, "Deployment", "sluice-spark-worker"), "worker"),
    }


def test_no_metrics_servlet_nor_pod_monitor_by_default(render):
    objects = render(CHART, release="sluice-spark")
    assert not all_of(objects, "PodMonitor")
    for c in _daemons(objects).values():
        assert "SPARK_DAEMON_JAVA_OPTS" not in env_of(c)


def test_metrics_turn_on_the_prometheus_servlet_of_master_and_workers(render):
    objects = render(CHART, {"metrics": {"enabled": True}}, release="sluice-spark")
    for c in _daemons(objects).values():
        # spark-class hands SPARK_DAEMON_JAVA_OPTS to the master's and the workers' JVMs: system properties that
        # Spark's metrics system reads as its configuration (spark.metrics.conf.<instance>.sink...).
        assert env_of(c)["SPARK_DAEMON_JAVA_OPTS"].split() == SERVLET_OPTS
    assert not all_of(objects, "PodMonitor")  # scraping is a choice of its own


def test_pod_monitor_needs_the_servlet(render):
    assert not all_of(render(CHART, {"metrics": {"podMonitor": {"enabled": True}}}), "PodMonitor")


def test_pod_monitors_scrape_the_master_and_the_workers_web_ui(render):
    objects = render(
        CHART,
        {"metrics": {"enabled": True, "podMonitor": {"enabled": True}}},
        release="sluice-spark",
        namespace="data",
    )
    master = find(objects, "PodMonitor", "sluice-spark-master")
    workers = find(objects, "PodMonitor", "sluice-spark-worker")
    for monitor, component in ((master, "master"), (workers, "worker")):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == "data"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["data"]}
        assert monitor["spec"]["selector"] == {
            "matchLabels": {
                "app.kubernetes.io/name": "sluice-spark",
                "app.kubernetes.io/instance": "sluice-spark",
                "app.kubernetes.io/component": component,
            }
        }
    assert master["spec"]["podMetricsEndpoints"] == [
        {"port": "ui", "path": "/metrics/master/prometheus", "interval": "30s"},
        {"port": "ui", "path": "/metrics/applications/prometheus", "interval": "30s"},
    ]
    assert workers["spec"]["podMetricsEndpoints"] == [
        {"port": "ui", "path": "/metrics/prometheus", "interval": "30s"}
    ]
    # The port named ui is each daemon's web UI port, where the servlet is served.
    daemons = _daemons(objects)
    assert {p["name"]: p["containerPort"] for p in daemons["master"]["ports"]}["ui"] == 8080
    assert {p["name"]: p["containerPort"] for p in daemons["worker"]["ports"]}["ui"] == 8081
    # Each selects its own Deployment's pods.
    for monitor, name in ((master, "sluice-spark-master"), (workers, "sluice-spark-worker")):
        deployment = find(objects, "Deployment", name)
        assert monitor["spec"]["selector"] == deployment["spec"]["selector"]


def test_pod_monitor_interval_and_labels(render):
    values = {
        "enabled": True,
        "podMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "prom"}},
    }
    for monitor in all_of(render(CHART, {"metrics": values}), "PodMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert {e["interval"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"1m"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"enabled": "yes"}}, "at '/metrics/enabled': got string, want boolean"),
        (
            {"metrics": {"podMonitor": {"enabled": "true"}}},
            "at '/metrics/podMonitor/enabled': got string, want boolean",
        ),
        ({"metrics": {"podMonitor": {"interval": "30"}}}, "at '/metrics/podMonitor/interval'"),
        ({"metrics": {"podMonitor": {"labels": {"release": 1}}}}, "at '/metrics/podMonitor/labels/release'"),
        ({"metrics": {"port": 9090}}, "at '/metrics': additional properties 'port' not allowed"),
    ],
)
def test_bad_metrics_values_are_refused(render_error, values, message):
    assert message in render_error(CHART, values)
