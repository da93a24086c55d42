"""The sluice-kafka chart rendered with the real helm: defaults, N nodes, external access, and refusals. The
rendered configuration is also checked by Kafka itself (its storage tool formats a log directory with it)."""

from __future__ import annotations

import re
import subprocess

import pytest
from rendering import all_of, container, env_of, find

pytestmark = pytest.mark.charts

CHART = "sluice-kafka"


def properties(objects: list[dict]) -> dict[str, str]:
    text = find(objects, "ConfigMap")["data"]["server.properties"]
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_defaults_one_combined_node_with_persistent_storage_and_no_auto_creation(render):
    objects = render(CHART, release="sluice-kafka", namespace="data")
    sts = find(objects, "StatefulSet", "sluice-kafka")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "sluice-kafka-headless"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]
    assert container(sts, "kafka")["image"] == "apache/kafka:4.1.1"

    props = properties(objects)
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["controller.quorum.voters"] == (
        "0@sluice-kafka-0.sluice-kafka-headless.data.svc.cluster.local:9093"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://@POD_NAME@.sluice-kafka-headless.data.svc.cluster.local:9092"
    )
    # One node: every replication setting is 1.
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key

    bootstrap = find(objects, "Service", "sluice-kafka")
    assert bootstrap["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"]) for p in bootstrap["spec"]["ports"]] == [("client", 9092)]
    headless = find(objects, "Service", "sluice-kafka-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert not [s for s in all_of(objects, "Service") if s["spec"].get("type") == "NodePort"]


def test_three_nodes_form_one_quorum_with_replication_three(render):
    objects = render(CHART, {"replicas": 3}, release="k", namespace="data")
    assert find(objects, "StatefulSet")["spec"]["replicas"] == 3
    props = properties(objects)
    assert props["controller.quorum.voters"] == (
        "0@k-sluice-kafka-0.k-sluice-kafka-headless.data.svc.cluster.local:9093,"
        "1@k-sluice-kafka-1.k-sluice-kafka-headless.data.svc.cluster.local:9093,"
        "2@k-sluice-kafka-2.k-sluice-kafka-headless.data.svc.cluster.local:9093"
    )
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"


def test_five_nodes_cap_replication_at_three(render):
    props = properties(render(CHART, {"replicas": 5}))
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
    assert props["controller.quorum.voters"].count("@") == 5


def test_external_listener_gets_one_node_port_per_node(render):
    objects = render(
        CHART,
        {
            "replicas": 2,
            "external": {"enabled": True, "advertisedHost": "kafka.example", "nodePortBase": 31000},
        },
        release="sluice-kafka",
        namespace="data",
    )
    props = properties(objects)
    assert props["listeners"] == "PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:9094"
    assert props["advertised.listeners"].endswith(",EXTERNAL://kafka.example:@EXTERNAL_PORT@")
    node_ports = {
        s["metadata"]["name"]: (
            s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
            s["spec"]["ports"][0]["nodePort"],
        )
        for s in all_of(objects, "Service")
        if s["spec"].get("type") == "NodePort"
    }
    assert node_ports == {
        "sluice-kafka-external-0": ("sluice-kafka-0", 31000),
        "sluice-kafka-external-1": ("sluice-kafka-1", 31001),
    }
    assert env_of(container(find(objects, "StatefulSet"), "kafka"))["EXTERNAL_PORT_BASE"] == "31000"


def test_storage_extra_config_and_image_values_reach_the_objects(render):
    objects = render(
        CHART,
        {
            "persistence": {"size": "20Gi", "storageClass": "fast"},
            "config": {"log.retention.hours": "24"},
            "image": {"repository": "registry.local/kafka", "tag": "4.1.1-offline"},
            "heapOpts": "-Xmx1g",
        },
    )
    sts = find(objects, "StatefulSet")
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert (claim["resources"]["requests"]["storage"], claim["storageClassName"]) == ("20Gi", "fast")
    assert properties(objects)["log.retention.hours"] == "24"
    kafka = container(sts, "kafka")
    assert kafka["image"] == "registry.local/kafka:4.1.1-offline"
    assert env_of(kafka)["KAFKA_HEAP_OPTS"] == "-Xmx1g"


def test_without_persistence_the_log_directory_is_an_empty_dir(render):
    sts = find(render(CHART, {"persistence": {"enabled": False}}), "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_cluster_id_is_stable_per_release_and_22_base64url_characters(render):
    def cluster_id(namespace: str, release: str = "k") -> str:
        objects = render(CHART, release=release, namespace=namespace)
        return env_of(container(find(objects, "StatefulSet"), "kafka"))["CLUSTER_ID"]

    first = cluster_id("a")
    assert re.fullmatch(r"[0-9a-f]{21}A", first)
    assert cluster_id("a") == first
    assert cluster_id("b") != first
    assert cluster_id("a", release="other") != first
    given = render(CHART, {"clusterId": "MkU3OEVBNTcwNTJENDM2Qk"})
    assert env_of(container(find(given, "StatefulSet"), "kafka"))["CLUSTER_ID"] == "MkU3OEVBNTcwNTJENDM2Qk"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
        ({"replicas": "three"}, "at '/replicas': got string, want integer"),
        ({"clusterId": "not-an-id"}, "at '/clusterId'"),
        ({"persistence": {"size": "lots"}}, "at '/persistence/size'"),
        ({"image": {"pullPolicy": "Sometimes"}}, "value must be one of 'Always', 'IfNotPresent', 'Never'"),
        ({"external": {"nodePortBase": 80}}, "at '/external/nodePortBase': minimum: got 80, want 30,000"),
        ({"replicationFactor": 2}, "replicationFactor 2 is larger than replicas 1"),
        (
            {"replicas": 3, "minInsyncReplicas": 4},
            "minInsyncReplicas 4 is larger than the replication factor 3",
        ),
        ({"brokers": 3}, "additional properties 'brokers' not allowed"),
    ],
)
def test_bad_values_are_refused_naming_the_value(render_error, values, message):
    assert message in render_error(CHART, values)


def test_kafka_accepts_the_rendered_configuration_and_cluster_id(render, tmp_path):
    """Run the chart's start.sh for node 2 of 3 with Kafka's real storage tool (the cached broker jars) behind
    kafka-storage.sh: the substituted configuration must pass Kafka's own validation and format the log directory
    with this node's id and the chart's cluster id."""
    from sluice_local.artifacts import broker_jars, require_java

    objects = render(CHART, {"replicas": 3}, release="k", namespace="data")
    data = find(objects, "ConfigMap")["data"]
    env = env_of(container(find(objects, "StatefulSet"), "kafka"))
    config_dir, data_dir, scratch, home = (tmp_path / d for d in ("config", "data", "scratch", "home"))
    for d in (config_dir, data_dir, home / "bin"):
        d.mkdir(parents=True)
    # The pod's mount points, moved under tmp_path.
    moves = {
        "/etc/sluice-kafka": str(config_dir),
        "/var/lib/kafka/data": str(data_dir),
        "/tmp/kafka": str(scratch),
    }
    text = data["server.properties"]
    script = data["start.sh"]
    for old, new in moves.items():
        text, script = text.replace(old, new), script.replace(old, new)
    (config_dir / "server.properties").write_text(text)
    classpath = ":".join(str(j) for j in broker_jars())
    (home / "bin" / "kafka-storage.sh").write_text(
        f'#!/bin/bash\nexec {require_java()} -cp "{classpath}" kafka.tools.StorageTool "$@"\n'
    )
    (home / "bin" / "kafka-server-start.sh").write_text('#!/bin/bash\necho "would start with $1"\n')
    for f in (home / "bin").iterdir():
        f.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", script],
        env={
            "PATH": "/usr/bin:/bin",
            "POD_NAME": "k-sluice-kafka-2",
            "CLUSTER_ID": env["CLUSTER_ID"],
            "KAFKA_HOME": str(home),
            "EXTERNAL_PORT_BASE": env["EXTERNAL_PORT_BASE"],
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"would start with {scratch}/server.properties" in result.stdout
    started = (scratch / "server.properties").read_text()
    assert "node.id=2\n" in started
    assert "PLAINTEXT://k-sluice-kafka-2.k-sluice-kafka-headless.data.svc.cluster.local:9092" in started
    meta = dict(
        line.split("=", 1) for line in (data_dir / "meta.properties").read_text().splitlines() if "=" in line
    )
    assert (meta["node.id"], meta["cluster.id"]) == ("2", env["CLUSTER_ID"])


def test_start_script_refuses_a_pod_name_without_ordinal(render, tmp_path):
    script = find(render(CHART), "ConfigMap")["data"]["start.sh"]
    result = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": "/usr/bin:/bin", "POD_NAME": "kafka"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot read a node id from POD_NAME='kafka'" in result.stderr
