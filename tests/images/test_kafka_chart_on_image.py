"""The sluice-kafka chart's own configuration and start script, run as a three-node KRaft cluster on the offline
Kafka image (sluice/kafka, built from the pinned Maven jars): one container per pod, on a Docker network whose
aliases stand in for the pods' DNS names. The chart's `helm test` pod passes, a topic replicated three times
takes writes with acks=all, and losing one node leaves the quorum and the writes going."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from containers import docker, run_to_end, started, wait_for

pytestmark = pytest.mark.images

RELEASE, NAMESPACE, NODES = "t", "data", 3
DOMAIN = f"t-sluice-kafka-headless.{NAMESPACE}.svc.cluster.local"
BOOTSTRAP = "t-sluice-kafka:9092"


@pytest.fixture
def network():
    name = f"sluice-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


def _pod_options(statefulset: dict, pod: str, config_dir: Path, data_dir: Path, network: str) -> list[str]:
    """`docker run` options of one Kafka pod: the chart's environment (the downward API's POD_NAME filled in), its
    user and mounts (DATA_DIR, owned by that user, for the claim), the pod's DNS name and the bootstrap Service's
    name as network aliases."""
    spec = statefulset["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = [f"--env={e['name']}={e['value']}" for e in container["env"] if "value" in e]
    assert {e["name"] for e in container["env"] if "valueFrom" in e} == {"POD_NAME"}
    user = container["securityContext"]["runAsUser"]
    data_dir.mkdir()
    os.chown(data_dir, user, user)  # what the pod's fsGroup does for its claim
    return [
        f"--network={network}",
        f"--network-alias={pod}.{DOMAIN}",
        f"--network-alias={BOOTSTRAP.split(':', maxsplit=1)[0]}",
        f"--hostname={pod}",
        f"--user={user}:{user}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--volume={config_dir}:/etc/sluice-kafka:ro",
        "--tmpfs=/tmp:rw,size=256m",
        f"--volume={data_dir}:/var/lib/kafka/data",
        f"--env=POD_NAME={pod}",
        *env,
    ]


PRODUCE_AND_COUNT = """
import json, sys, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, topic, count, create = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "create"
expected = int(sys.argv[5])
if create:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
failures = []
for i in range(count):
    producer.produce(topic, key=str(i), value=str(i), on_delivery=lambda e, m: e and failures.append(str(e)))
producer.flush(60)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{count}", "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
seen, deadline = 0, time.monotonic() + 60
while seen < expected and time.monotonic() < deadline:
    seen += sum(1 for m in consumer.consume(1000, timeout=1) if m.error() is None)
seen += sum(1 for m in consumer.consume(1000, timeout=2) if m.error() is None)  # nothing more than expected
metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic]
isr = sorted(len(p.isrs) for p in metadata.partitions.values())
print("RESULT", json.dumps({"failures": failures, "seen": seen, "isr": isr}))
"""


def _result(printed: str) -> dict:
    lines = [line for line in printed.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, printed
    return json.loads(lines[0].removeprefix("RESULT "))


@pytest.mark.timeout(900)
def test_kafka_chart_runs_a_three_node_quorum_on_the_offline_image(images, render, network, tmp_path):
    image = images["kafka"]
    repository, tag = image.rsplit(":", 1)
    objects = render(
        "sluice-kafka",
        {
            "replicas": NODES,
            "image": {"repository": repository, "tag": tag},
            "heapOpts": "-Xms256m -Xmx256m",
            "persistence": {"enabled": False},
        },
        release=RELEASE,
        namespace=NAMESPACE,
    )
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (test_pod,) = [o for o in objects if o["kind"] == "Pod"]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name, text in config_map["data"].items():
        (config_dir / name).write_text(text)
    config_dir.chmod(0o755)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    pods = [f"t-sluice-kafka-{i}" for i in range(NODES)]

    with (
        started(
            image,
            *container["command"],
            options=_pod_options(statefulset, pods[0], config_dir, tmp_path / "data-0", network),
        ),
        started(
            image,
            *container["command"],
            options=_pod_options(statefulset, pods[1], config_dir, tmp_path / "data-1", network),
        ),
        started(
            image,
            *container["command"],
            options=_pod_options(statefulset, pods[2], config_dir, tmp_path / "data-2", network),
        ) as last,
    ):
        # The chart's `helm test` pod, on the same network: every node in the metadata, a quorum leader.
        (test_container,) = test_pod["spec"]["containers"]
        test_env = [f"--env={e['name']}={e['value']}" for e in test_container["env"]]
        as_test_pod = [f"--network={network}", "--tmpfs=/tmp", "--user=1000:1000", *test_env]

        attempts: list[str] = []

        def helm_test_passes() -> str | None:
            code, printed = run_to_end(image, *test_container["command"], options=as_test_pod, timeout=120)
            attempts.append(f"exit {code}: {printed[-2000:]}")
            return printed if code == 0 else None

        # Three JVMs electing a leader beside the rest of the suite on two cores: CI has seen the first leader
        # elected only after ~3 minutes of election rounds (each timed out by a busy peer), so the wait is generous;
        # a quorum that never forms still fails, with the test pod's last output.
        try:
            printed = wait_for(
                helm_test_passes, timeout=420, what="the chart's helm test pod to pass", container=last
            )
        except pytest.fail.Exception as failed:
            raise AssertionError(f"{failed}\nthe helm test pod's last attempt: {attempts[-1:]}") from None
        assert f"{BOOTSTRAP} answers; {NODES} of {NODES} nodes in its metadata" in printed
        assert "LeaderId:" in printed

        # Writes with acks=all to a topic replicated on every node; min.insync.replicas is 2 by the chart.
        client = [f"--network={network}", "--tmpfs=/tmp"]
        code, out = run_to_end(
            images["spark-jobs"], "python3", "-c", PRODUCE_AND_COUNT, BOOTSTRAP, "replicated", "100", "create", "100",
            options=client, timeout=180,
        )  # fmt: skip
        assert code == 0, out
        result = _result(out)
        assert result == {"failures": [], "seen": 100, "isr": [3, 3, 3]}

        # One node stops (a controlled shutdown on SIGTERM): two of three voters keep the quorum, the partitions
        # keep two in-sync replicas, and acks=all writes still succeed.
        code, _took = last.stop(60)
        assert code in {0, 143}, f"exit code {code}"
        code, out = run_to_end(
            images["spark-jobs"], "python3", "-c", PRODUCE_AND_COUNT, "t-sluice-kafka-0." + DOMAIN + ":9092",
            "replicated", "50", "existing", "150", options=client, timeout=180,
        )  # fmt: skip
        assert code == 0, out
        result = _result(out)
        # A new consumer group reads from the start: the first 100 records survived the node's loss.
        assert result == {"failures": [], "seen": 150, "isr": [2, 2, 2]}
