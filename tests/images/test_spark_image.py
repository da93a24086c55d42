"""The Spark image, run the way the cluster runs it: a streaming job against a real Kafka broker (the session's
broker on host loopback, reached with --network host), and a Spark standalone master with a worker.

The containers get what the operator's pods and the Spark chart's pods get: a read-only root file system with a
writable /tmp, all capabilities dropped, HOME=/tmp, and for the job the checkpoint volume at /var/lib/sluice.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from containers import docker, http_get, run_to_end, started, wait_for
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.processes import free_ports
from sluice_local.topics import end_offsets, read_all

pytestmark = pytest.mark.images

SPARK_UID = 185
"""The uid/gid the operator's pods run the image with (runAsUser/runAsGroup/fsGroup)."""
POD_LIKE = (
    "--network=host",
    "--read-only",
    "--tmpfs=/tmp:rw,exec,size=1g",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--env=HOME=/tmp",
    "--env=SPARK_LOCAL_DIRS=/tmp/spark",
)
START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=10)
WATERMARK = timedelta(seconds=10)
EVENTS, INTERVAL = 600, timedelta(milliseconds=100)  # event times 00:00:00.0 .. 00:00:59.9


def _in_image(image: str, script: str) -> str:
    code, output = run_to_end(image, "python3", "-c", script, timeout=120)
    assert code == 0, output
    return output


def test_spark_image_runs_as_spark_user_with_the_connector_in_pyspark(images):
    image = images["spark-jobs"]
    user = docker("image", "inspect", "-f", "{{ .Config.User }}", image).stdout.strip()
    assert user == f"{SPARK_UID}:{SPARK_UID}"  # numeric, so runAsNonRoot can verify it

    report = json.loads(
        _in_image(
            image,
            "import json, os, sys, pyspark, confluent_kafka, spark_jobs, yaml\n"
            "jars = os.path.join(os.path.dirname(pyspark.__file__), 'jars')\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'python': sys.executable,\n"
            "    'pyspark': pyspark.__version__, 'spark_home': os.path.realpath(os.environ['SPARK_HOME']),\n"
            "    'pyspark_dir': os.path.dirname(pyspark.__file__), 'jars': sorted(os.listdir(jars)),\n"
            "    'state_owner': os.stat('/var/lib/sluice').st_uid,\n"
            "    'home_writable': os.access(os.environ['HOME'], os.W_OK)}))",
        )
    )
    assert (report["uid"], report["gid"]) == (SPARK_UID, SPARK_UID)
    assert report["python"].startswith("/opt/sluice/venv/")  # `python3` in a pod is the venv's
    assert report["spark_home"] == report["pyspark_dir"]
    assert report["state_owner"] == SPARK_UID and report["home_writable"]
    connectors = [j for j in report["jars"] if j.startswith("spark-sql-kafka-0-10_")]
    assert connectors == [f"spark-sql-kafka-0-10_2.13-{report['pyspark']}.jar"]
    # pyspark's version is pinned in pyproject.toml; the image must carry exactly that one.
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'"pyspark=={report["pyspark"]}"' in pyproject
    assert any(j.startswith("kafka-clients-") for j in report["jars"])


def _topic(broker: KafkaBroker, role: str) -> str:
    name = f"images-{role}-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, [DesiredTopic(name)], timeout=30)
    return name


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _window_start(at: datetime) -> datetime:
    return START + (at - START) // WINDOW * WINDOW


@pytest.mark.timeout(600)
def test_windowed_job_in_the_image_reads_and_writes_kafka(images, kafka_broker, tmp_path):
    image = images["spark-jobs"]
    bootstrap = kafka_broker.bootstrap_servers
    source, output, dead_letters = (_topic(kafka_broker, role) for role in ("source", "windowed", "dlq"))

    code, printed = run_to_end(
        image,
        *("python3", "-m", "spark_jobs.generator", "--bootstrap-servers", bootstrap, "--topic", source),
        *("--count", str(EVENTS), "--rate", "0", "--seed", "5", "--devices", "3"),
        *("--start-time", START.isoformat(), "--interval-ms", str(INTERVAL // timedelta(milliseconds=1))),
        options=["--network=host"],
        timeout=120,
    )
    assert code == 0, printed

    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, SPARK_UID, SPARK_UID)  # what fsGroup does for the pods' volume
    code, printed = run_to_end(
        image,
        *("python3", "-m", "spark_jobs.windowed", "--master", "local[2]", "--bootstrap-servers", bootstrap),
        *("--source-topic", source, "--windowed-topic", output, "--dead-letter-topic", dead_letters),
        *("--checkpoint-root", "/var/lib/sluice/checkpoints", "--trigger", "available-now", "--no-console"),
        *(
            "--tumbling-window",
            "10s",
            "--status-window",
            "10s",
            "--watermark",
            "10s",
            "--shuffle-partitions",
            "2",
            "--max-event-behind",  # the events are dated 2024-01-01 and produced now
            "none",
        ),
        options=[*POD_LIKE, f"--volume={state}:/var/lib/sluice"],
        timeout=420,
    )
    assert code == 0, printed
    assert any((state / "checkpoints" / "windowed").iterdir()), "no checkpoint on the state volume"

    # Expected, from the source records as read back: 10 s tumbling windows that the final watermark (latest
    # event time - 10 s) has passed; with events up to 00:00:59.9 those are the windows ending by 00:00:40.
    events = [json.loads(m.value()) for m in read_all(bootstrap, source)]
    assert len(events) == EVENTS
    watermark = max(_time(e["timestamp"]) for e in events) - WATERMARK
    closed = [e for e in events if _window_start(_time(e["timestamp"])) + WINDOW <= watermark]
    expected_status = Counter((_window_start(_time(e["timestamp"])), e["status"]) for e in closed)
    values = defaultdict(list)
    for e in closed:
        values[_window_start(_time(e["timestamp"])), e["device_id"]].append(e["value"])
    assert len({start for start, _ in expected_status}) == 4  # the test data is what this test thinks it is

    records = read_all(bootstrap, output)
    results = [json.loads(m.value()) for m in records]
    by_aggregation = defaultdict(list)
    for record in results:
        by_aggregation[record["aggregation"]].append(record)
    status = {(_time(r["window_start"]), r["status"]): r["record_count"] for r in by_aggregation["status"]}
    assert status == dict(expected_status)
    tumbling = {(_time(r["window_start"]), r["device_id"]): r for r in by_aggregation["tumbling"]}
    assert set(tumbling) == set(values)
    for key, seen in values.items():
        got = tumbling[key]
        assert (got["record_count"], got["min_value"], got["max_value"]) == (len(seen), min(seen), max(seen))
        assert got["avg_value"] == pytest.approx(sum(seen) / len(seen), rel=1e-9)
        assert _time(got["window_end"]) - _time(got["window_start"]) == WINDOW
    for message, record in zip(records, results, strict=True):
        group = record.get("device_id") or record.get("status")
        assert re.fullmatch(
            rf"{record['aggregation']}\|{re.escape(group)}\|\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z",
            message.key().decode(),
        )
    assert sum(end_offsets(bootstrap, dead_letters).values()) == 0  # every generated event was valid


def _chart_container(workload: dict) -> tuple[list[str], list[str]]:
    """A rendered workload's container as `docker run` options (its literal env) and its args, with the
    Kubernetes-expanded $(POD_IP) set to the loopback address the containers share (--network host)."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert "command" not in container  # the image's entrypoint runs the args
    env = [
        f"--env={e['name']}={e['value'].replace('$(POD_IP)', '127.0.0.1')}"
        for e in container.get("env", [])
        if "value" in e
    ]
    return env, [a.replace("$(POD_IP)", "127.0.0.1") for a in container["args"]]


@pytest.mark.timeout(600)
def test_spark_chart_master_and_worker_run_on_the_image(images, render):
    """The sluice-spark chart's own master and worker commands, run on the image like its pods (read-only root,
    no capabilities, uid 185): the worker registers, an application runs on it, and the chart's `helm test` pod
    passes against them."""
    image = images["spark-jobs"]
    master_port, master_ui, worker_ui = free_ports(3)
    objects = render(
        "sluice-spark",
        {
            "image": {"repository": image.rsplit(":", 1)[0], "tag": image.rsplit(":", 1)[1]},
            "master": {"port": master_port, "webUiPort": master_ui},
            "worker": {"replicas": 1, "webUiPort": worker_ui},
        },
        release="t",
    )
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] in {"Deployment", "Pod"}}
    master_env, master_args = _chart_container(by_name["t-sluice-spark-master"])
    worker_env, worker_args = _chart_container(by_name["t-sluice-spark-worker"])
    # The Service name the worker and the test pod use, resolved as the cluster's DNS would.
    service = "--add-host=t-sluice-spark-master:127.0.0.1"
    as_pod = (*POD_LIKE, "--user=185:185", service)
    master_url = f"spark://127.0.0.1:{master_port}"
    with (
        started(image, *master_args, options=(*as_pod, *master_env)) as master,
        started(image, *worker_args, options=(*as_pod, *worker_env)) as worker,
    ):

        def alive_worker() -> dict | None:
            code, body = http_get(f"http://127.0.0.1:{master_ui}/json/")
            if code != 200:
                return None
            try:
                cluster = json.loads(body)
            except ValueError:
                # Seen once in CI, seconds after the master started: /json/ answered with the HTML page.
                return None
            return cluster if [w["state"] for w in cluster["workers"]] == ["ALIVE"] else None

        cluster = wait_for(
            alive_worker, timeout=120, what="the master to report one ALIVE worker", container=worker
        )
        assert cluster["status"] == "ALIVE" and cluster["url"] == master_url
        assert cluster["workers"][0]["webuiaddress"].endswith(f":{worker_ui}")
        assert master.running()

        # The chart's `helm test` pod, as helm would run it.
        test_pod = by_name["t-sluice-spark-test"]
        (test_container,) = test_pod["spec"]["containers"]
        code, printed = run_to_end(image, *test_container["args"], options=as_pod, timeout=120)
        assert code == 0, printed
        assert "master ALIVE, 1 of 1 workers ALIVE" in printed

        # An application on the cluster: its Python tasks run in an executor the worker starts from the image.
        code, printed = run_to_end(
            image,
            "python3",
            "-c",
            "from pyspark.sql import SparkSession\n"
            f"spark = SparkSession.builder.master('{master_url}').appName('images-test')"
            ".config('spark.driver.host', '127.0.0.1').config('spark.executor.memory', '512m').getOrCreate()\n"
            "print('RESULT', spark.sparkContext.parallelize(range(1000), 4).map(lambda x: x * x).sum())\n"
            "spark.stop()",
            options=POD_LIKE,
            timeout=300,
        )
        assert code == 0, printed
        assert f"RESULT {sum(x * x for x in range(1000))}" in printed.splitlines()

        def finished() -> list:
            code, body = http_get(f"http://127.0.0.1:{master_ui}/json/")
            apps = json.loads(body)["completedapps"] if code == 200 else []
            return [a for a in apps if a["name"] == "images-test"]

        (app,) = wait_for(finished, timeout=60, what="the application among the master's completed apps")
        assert app["state"] == "FINISHED"


def test_the_executor_entry_point_starts_sparks_kubernetes_executor_with_the_pods_settings(images):
    """What Spark on Kubernetes' executor pods run: the image with the one argument ``executor`` and the SPARK_*
    variables of the pod Spark builds (the pod-template test and tests/e2e run real ones). Here no driver listens,
    so the executor backend starts, with its JVM options in their numeric order and the executor's heap, tries the
    driver's address and exits with Spark's own error naming it."""
    (port,) = free_ports(1)
    env = {
        "SPARK_DRIVER_URL": f"spark://CoarseGrainedScheduler@127.0.0.1:{port}",
        "SPARK_EXECUTOR_ID": "7",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_EXECUTOR_MEMORY": "320m",
        "SPARK_APPLICATION_ID": "spark-images-tier",
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_EXECUTOR_POD_NAME": "pipeline-windowed-exec-7",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        # Spark numbers the options from 0; the 11th must come after the 3rd (a text sort would put it first),
        # and an option with a space stays one argument.
        "SPARK_JAVA_OPT_0": "-XshowSettings:properties",
        "SPARK_JAVA_OPT_1": "-XX:+PrintCommandLineFlags",
        "SPARK_JAVA_OPT_2": "-Dsluice.spaced=a b",
        "SPARK_JAVA_OPT_3": "-Dsluice.order=third",
        "SPARK_JAVA_OPT_10": "-Dsluice.order=eleventh",
    }
    options = [*POD_LIKE, *(f"--env={name}={value}" for name, value in env.items())]
    code, output = run_to_end(images["spark-jobs"], "executor", options=options, timeout=180)
    assert code != 0, output
    assert "sluice.order = eleventh" in output, output
    assert "sluice.spaced = a b" in output, output
    assert f"-XX:MaxHeapSize={320 * 1024 * 1024}" in output, output  # -Xmx from SPARK_EXECUTOR_MEMORY
    assert "KubernetesExecutorBackend" in output, output
    assert f"127.0.0.1:{port}" in output, output
