"""The operator, run as a real process with its least-privilege ServiceAccount's identity, against a real
kube-apiserver (RBAC, PodSecurity restricted), a real kube-controller-manager (garbage collection) and a real
Kafka broker.

No kubelet runs here, so pods never start by themselves: the tests set pod phases (and the checkpoint volume's
binding) through the status subresource, the way a kubelet and the volume binder would, and watch the operator
react. What the pods would run is checked in the unit tier (flags parsed by the jobs' own parsers) and end to end
in the cluster tier.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import reference as ref
import yaml
from confluent_kafka import Producer
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from sluice_operator import kafka_admin
from support.kubelet import run_container
from support.lab_pipeline import produce_events
from support.operator_process import (
    GROUP,
    PLURAL,
    RBAC,
    ROOT,
    VERSION,
    absent,
    apply,
    condition,
    events,
    get_cr,
    manifest,
    pods,
    run_job_pods,
    set_phase,
    set_running,
    spawn_operator,
    stop_operator,
    wait_for,
)
from support.outputs import assert_same_records, records_by_key
from support.prometheus import scraped

from sluice_local.processes import free_ports
from sluice_local.topics import read_all
from spark_jobs.progress import GroupCommitter, commit_metadata

pytestmark = pytest.mark.k8s


# --- a steady pipeline: quiet for the whole module ----------------------------------------------------------------

#: How long the steady pipeline is watched: from the module's first test to its last (the last test waits out the
#: rest). At the operator's 1 s interval here that is 300 passes, ten times a 5-minute run's at the chart's 10 s.
STEADY_SECONDS = 300


@pytest.fixture(scope="module")
def steady(control_plane, operator, k8s_api, module_namespace, kafka_broker, tmp_path_factory):
    """A pipeline made Ready at the module's start and then left alone: its Events and the operator's log lines
    about it, as they stood once it was Ready."""
    api = {"core": client.CoreV1Api(k8s_api), "custom": client.CustomObjectsApi(k8s_api)}
    namespace = module_namespace
    body = manifest("steady", kafka_broker.bootstrap_servers, generator={"enabled": False})
    assert apply(control_plane, namespace, body, tmp_path_factory.mktemp("steady")).returncode == 0
    run_job_pods(api, namespace, "steady")
    wait_for(
        lambda: condition(get_cr(api, namespace, "steady"), "Ready")["status"] == "True", what="steady Ready"
    )
    wait_for(lambda: ("Ready", READY) in events(api, namespace, "steady"), what="the Ready Event")
    time.sleep(3)  # the pass after Ready has written its status
    return {
        "api": api,
        "namespace": namespace,
        "since": time.monotonic(),
        "events": event_counts(api, namespace, "steady"),
        "log_size": operator["log"].stat().st_size,
    }


READY = "the pipeline is running and keeps up"


def event_counts(api, namespace: str, name: str) -> list[tuple[str, str, int]]:
    """Each Event about ``name``: its reason, message and count (a repeated Event counts up in place)."""
    found = api["core"].list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return sorted((e.reason, e.message, e.count or 1) for e in found.items)


def test_a_pipeline_that_becomes_ready_says_so_once(steady):
    ready = [e for e in steady["events"] if e[0] == "Ready"]
    assert ready == [("Ready", READY, 1)]


# --- the lifecycle of a pipeline ----------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_pipeline_lifecycle(control_plane, operator, api, namespace, kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    body = manifest(
        "lab",
        bootstrap,
        kafka={"deletionPolicy": "Retain"},
        jobs={"anomaly": {"threshold": 2.0}},
        restartPolicy={"backoffSeconds": 1, "maxBackoffSeconds": 2, "maxAttempts": 2},
    )
    body["spec"]["kafka"]["topics"]["source"]["partitions"] = 2
    body["spec"]["kafka"]["topics"]["deadLetter"]["config"] = {"retention.ms": "3600000"}
    result = apply(control_plane, namespace, body, tmp_path)
    assert result.returncode == 0, result.stderr
    topics = body["spec"]["kafka"]["topics"]

    # Children appear: one pod per component, owned by the pipeline, in a namespace enforcing "restricted".
    found = wait_for(
        lambda: len(pods(api, namespace, "lab")) == 4 and pods(api, namespace, "lab"), what="4 pods"
    )
    cr = get_cr(api, namespace, "lab")
    for component, pod in found.items():
        assert pod.metadata.name == f"lab-{component}"
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "StreamingPipeline",
            "lab",
            cr["metadata"]["uid"],
            True,
        )
        assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "sluice-operator"
        assert pod.spec.security_context.run_as_non_root is True
    args = found["anomaly"].spec.containers[0].args
    assert args[args.index("--alerts-topic") + 1] == topics["alerts"]["name"]
    assert args[args.index("--checkpoint-root") + 1] == "/var/lib/sluice/checkpoints/anomaly/g0"

    # Topics exist in Kafka as specified (checked with Kafka's own metadata).
    described = kafka_admin.describe_topics(bootstrap, [t["name"] for t in topics.values()])
    assert described[topics["source"]["name"]].partitions == 2
    assert described[topics["alerts"]["name"]].partitions == 1
    assert described[topics["deadLetter"]["name"]].config.get("retention.ms") == "3600000"

    # The checkpoint volume, owned by the pipeline.
    pvc = api["core"].read_namespaced_persistent_volume_claim("lab-checkpoints", namespace)
    assert pvc.spec.access_modes == ["ReadWriteOnce"] and pvc.spec.resources.requests["storage"] == "1Gi"
    assert pvc.metadata.owner_references[0].name == "lab"

    cr = wait_for(
        lambda: (
            get_cr(api, namespace, "lab").get("status", {}).get("jobsReady") == "0/4"
            and get_cr(api, namespace, "lab")
        ),
        what="status",
    )
    assert condition(cr, "TopicsReady")["status"] == "True"
    assert condition(cr, "CheckpointsReady")["status"] == "False"  # nothing binds volumes here yet
    assert condition(cr, "Ready")["status"] == "False"
    assert cr["status"]["observedGeneration"] == cr["metadata"]["generation"]

    # A "kubelet" runs the pods and the "binder" binds the volume: the pipeline becomes Ready.
    api["core"].patch_namespaced_persistent_volume_claim_status(
        "lab-checkpoints", namespace, {"status": {"phase": "Bound"}}
    )
    for pod in found.values():
        set_phase(api, namespace, pod.metadata.name, "Running")

    def ready():
        cr = get_cr(api, namespace, "lab")
        return cr["status"].get("phase") == "Running" and condition(cr, "Ready")["status"] == "True" and cr

    cr = wait_for(ready, what="phase Running and Ready")
    assert cr["status"]["jobsReady"] == "4/4"
    assert condition(cr, "JobsRunning")["reason"] == "Running"
    listed = control_plane.kubectl("get", "spipe", "-n", namespace).stdout
    assert "lab" in listed and "Running" in listed and "4/4" in listed

    # A failed pod is recreated after its backoff; after maxAttempts (2) restarts the operator gives up.
    for attempt in (1, 2):
        old_uid = pods(api, namespace, "lab")["basic"].metadata.uid
        set_phase(api, namespace, "lab-basic", "Failed")
        new = wait_for(
            lambda old=old_uid: (
                (p := pods(api, namespace, "lab").get("basic")) is not None and p.metadata.uid != old and p
            ),
            what=f"restart {attempt} of basic",
        )
        assert get_cr(api, namespace, "lab")["status"]["components"]["basic"]["restarts"] == attempt
        set_phase(api, namespace, new.metadata.name, "Running")
    set_phase(api, namespace, "lab-basic", "Failed")

    def gave_up():
        cr = get_cr(api, namespace, "lab")
        return condition(cr, "JobsRunning")["reason"] == "RestartLimitReached" and cr

    cr = wait_for(gave_up, what="RestartLimitReached")
    assert cr["status"]["components"]["basic"]["phase"] == "GaveUp"
    assert cr["status"]["phase"] == "Degraded"
    assert "maxAttempts is 2" in condition(cr, "JobsRunning")["message"]
    reasons = [r for r, _ in events(api, namespace, "lab")]
    assert {"PodCreated", "Restarting", "RestartLimitReached"} <= set(reasons)

    # A spec change restarts only the pods it affects: the threshold is anomaly's alone.
    before = {c: p.metadata.uid for c, p in pods(api, namespace, "lab").items()}
    patch = {"spec": {"jobs": {"anomaly": {"threshold": 3.0}}}}
    api["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lab", patch)
    after = wait_for(
        lambda: (
            (p := pods(api, namespace, "lab")).get("anomaly") is not None
            and p["anomaly"].metadata.uid != before["anomaly"]
            and p
        ),
        what="anomaly replaced",
    )
    assert (
        after["anomaly"]
        .spec.containers[0]
        .args[after["anomaly"].spec.containers[0].args.index("--threshold") + 1]
        == "3.0"
    )
    assert {c: after[c].metadata.uid for c in ("generator", "windowed")} == {
        c: before[c] for c in ("generator", "windowed")
    }
    # the threshold does not touch the state: same checkpoint
    assert get_cr(api, namespace, "lab")["status"]["components"]["anomaly"]["checkpointPath"].endswith("/g0")

    # A window change makes anomaly's state incompatible: fresh checkpoint generation, the old one kept.
    api["custom"].patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "lab", {"spec": {"jobs": {"anomaly": {"window": "1m"}}}}
    )
    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, "lab"))["status"]["components"]["anomaly"][
                "checkpointPath"
            ].endswith("/g1")
            and c
        ),
        what="anomaly on checkpoint generation 1",
    )
    assert any(r == "CheckpointReset" and "g0" in m for r, m in events(api, namespace, "lab"))
    new_anomaly = wait_for(
        lambda: (p := pods(api, namespace, "lab").get("anomaly")) is not None and p, what="anomaly pod"
    )
    assert "/var/lib/sluice/checkpoints/anomaly/g1" in new_anomaly.spec.containers[0].args

    # Suspend: pods go, topics and the volume stay; resume brings them back on the same checkpoints.
    api["custom"].patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "lab", {"spec": {"suspend": True}}
    )
    wait_for(lambda: pods(api, namespace, "lab") == {}, what="pods removed on suspend")
    cr = wait_for(
        lambda: (c := get_cr(api, namespace, "lab"))["status"]["phase"] == "Suspended" and c, what="Suspended"
    )
    assert api["core"].read_namespaced_persistent_volume_claim("lab-checkpoints", namespace)
    assert topics["source"]["name"] in kafka_admin.describe_topics(bootstrap, [topics["source"]["name"]])
    api["custom"].patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "lab", {"spec": {"suspend": False}}
    )
    resumed = wait_for(
        lambda: len(pods(api, namespace, "lab")) == 4 and pods(api, namespace, "lab"), what="pods back"
    )
    assert "/var/lib/sluice/checkpoints/anomaly/g1" in resumed["anomaly"].spec.containers[0].args

    # A partition decrease is refused and reported, never applied.
    api["custom"].patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "lab",
        {"spec": {"kafka": {"topics": {"source": {"partitions": 1}}}}},
    )
    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, "lab"))
            and condition(c, "TopicsReady")["reason"] == "PartitionDecreaseRefused"
            and c
        ),
        what="decrease refused",
    )
    assert "cannot decrease" in condition(cr, "TopicsReady")["message"]
    time.sleep(3)  # several more passes (1 s apart): the standing refusal is reported once, not on each
    assert [r for r, _ in events(api, namespace, "lab")].count("PartitionsDecreaseRefused") == 1
    assert (
        kafka_admin.describe_topics(bootstrap, [topics["source"]["name"]])[
            topics["source"]["name"]
        ].partitions
        == 2
    )

    # Delete: pods go by garbage collection; the volume and the topics are retained (policy Retain).
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lab")
    wait_for(lambda: pods(api, namespace, "lab") == {}, timeout=90, what="pods garbage-collected")

    wait_for(
        lambda: absent(lambda: get_cr(api, namespace, "lab")),
        what="the pipeline to be deleted (no stuck finalizer)",
    )
    time.sleep(2)  # give the garbage collector a chance to (wrongly) take the retained volume
    retained = api["core"].read_namespaced_persistent_volume_claim("lab-checkpoints", namespace)
    assert not retained.metadata.owner_references
    assert len(kafka_admin.describe_topics(bootstrap, [t["name"] for t in topics.values()])) == 5


def produce_to_partitions(bootstrap: str, topic: str, per_partition: int, partitions: int) -> None:
    """``per_partition`` records to each partition of ``topic`` (what they hold does not matter to the lag)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=b"{}", key=str(i).encode(), partition=partition)
    assert producer.flush(30) == 0


def progress_of(cr: dict) -> dict[str, int | None]:
    return {job: (cr["status"]["components"][job].get("progress") or {}).get("lagRecords") for job in JOBS}


JOBS = ("basic", "windowed", "anomaly")


@pytest.mark.timeout(300)
def test_the_status_reports_each_jobs_lag_from_kafka_and_the_metrics_go_with_the_pipeline(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    """No job runs here: the records a job has processed are committed to its consumer group by hand, with the
    jobs' own committer and metadata (a job that runs, and stalls: the next test)."""
    bootstrap = kafka_broker.bootstrap_servers
    body = manifest(
        "lagged", bootstrap, generator={"enabled": False}, slo={"maxLagRecords": 50, "stallSeconds": 300}
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    source = body["spec"]["kafka"]["topics"]["source"]["name"]  # 3 partitions by default
    run_job_pods(api, namespace, "lagged")

    def status(check: Callable[[dict], bool], what: str) -> dict:
        return wait_for(lambda: (cr := get_cr(api, namespace, "lagged")) and check(cr) and cr, what=what)

    cr = status(
        lambda c: c["status"].get("lagRecords") == 0 and condition(c, "Ready")["status"] == "True", "Ready"
    )
    assert progress_of(cr) == {"basic": 0, "windowed": 0, "anomaly": 0}
    assert condition(cr, "Progressing")["status"] == "True"

    # 30 records arrive (10 per partition): each job is 30 behind, 90 in all, within maxLagRecords (50).
    produce_to_partitions(bootstrap, source, 10, 3)
    cr = status(lambda c: c["status"].get("lagRecords") == 90, "90 records behind")
    assert progress_of(cr) == {"basic": 30, "windowed": 30, "anomaly": 30}
    assert (condition(cr, "Lagging")["status"], condition(cr, "Ready")["status"]) == ("False", "True")
    header, row = control_plane.kubectl("get", "spipe", "lagged", "-n", namespace).stdout.splitlines()
    assert header.split()[:5] == ["NAME", "PHASE", "JOBS", "READY", "READY"] and "LAG" in header.split()
    assert row.split()[header.split().index("LAG") - 1] == "90"  # "JOBS READY" is one column, two words

    # basic commits all it has read, as a job does after a micro-batch: its lag is 0, its last progress known.
    committed_at = datetime.now(UTC).replace(microsecond=0)
    committer = GroupCommitter(bootstrap, "sluice." + namespace + ".lagged.basic", source)
    at_ms = int(committed_at.timestamp() * 1000)
    committer.commit(
        {p: 10 for p in range(3)}, commit_metadata(batch_id=0, committed_at_ms=at_ms, watermark_ms=None)
    )
    cr = status(lambda c: progress_of(c)["basic"] == 0, "basic at lag 0")
    basic = cr["status"]["components"]["basic"]["progress"]
    assert datetime.fromisoformat(basic["lastProgressTime"]) == committed_at
    assert cr["status"]["lagRecords"] == 60

    # 30 more: windowed and anomaly are 60 behind, over maxLagRecords: Lagging, and not Ready, naming them.
    produce_to_partitions(bootstrap, source, 10, 3)
    cr = status(lambda c: condition(c, "Lagging")["status"] == "True", "Lagging")
    assert progress_of(cr) == {"basic": 30, "windowed": 60, "anomaly": 60}
    lagging = condition(cr, "Lagging")["message"]
    assert lagging == (
        "windowed: 60 records behind; more than maxLagRecords (50); "
        "anomaly: 60 records behind; more than maxLagRecords (50)"
    )
    assert (condition(cr, "Ready")["reason"], condition(cr, "Ready")["message"]) == (
        "Lagging",
        f"Lagging: {lagging}",
    )

    # The operator's metrics carry the pipeline while it exists, and nothing of it once it is deleted.
    def series() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator['metrics_port']}/metrics", timeout=5) as r:
            text = r.read().decode()
        return [line for line in text.splitlines() if f'namespace="{namespace}",pipeline="lagged"' in line]

    assert any(
        line.startswith("sluice_pipeline_lag_records") and 'component="anomaly"' in line for line in series()
    )
    assert any(
        line.startswith("sluice_pipeline_condition{") and 'condition="Lagging"' in line for line in series()
    )
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "lagged")
    wait_for(lambda: absent(lambda: get_cr(api, namespace, "lagged")), what="lagged deleted")
    time.sleep(2)  # a timer pass under way during the delete has ended
    assert series() == []


# --- a job run from the pod the operator built: progress, metrics, a stall ----------------------------------------


class PodRunner:
    """The kubelet of one component's pods, on a thread: runs each new pod's container as a process
    (:func:`support.kubelet.run_container`), reports it Running, and kills the process when its pod is deleted."""

    def __init__(self, api, namespace: str, pipeline: str, component: str, volume: Path, log: Path) -> None:
        self.api, self.namespace, self.pipeline, self.component = api, namespace, pipeline, component
        self.volume, self.log = volume, log
        self.uid: str | None = None
        self.process: subprocess.Popen | None = None
        self.started = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodRunner:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self._kill()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.sync()
            except ApiException:
                continue  # the next round reads again

    def sync(self) -> None:
        pod = pods(self.api, self.namespace, self.pipeline).get(self.component)
        if self.uid is not None and (pod is None or pod.metadata.uid != self.uid):
            self._kill()  # its pod is gone: the container goes with it
        if pod is not None and pod.metadata.uid != self.uid:
            container = client.ApiClient().sanitize_for_serialization(pod.spec.containers[0])
            self.process = run_container(container, self.volume, self.log)
            self.uid, self.started = pod.metadata.uid, self.started + 1
            set_running(self.api, self.namespace, pod.metadata.name, since=datetime.now(UTC))

    def tail(self, lines: int = 40) -> str:
        """The end of its containers' log (every run of the job appends to it)."""
        return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-lines:])

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # a stopped process dies of SIGKILL too
            self.process.wait(30)
        self.process, self.uid = None, None


def windowed_progress(api, namespace: str, name: str) -> dict:
    return get_cr(api, namespace, name)["status"]["components"]["windowed"].get("progress") or {}


#: How long a job run from its pod may take to start and process a burst: its JVM shares two cores with the other
#: lane (a slow hour of a CI machine took over 300 s).
JOB_SECONDS = 600


def wait_for_job(runner: PodRunner, check: Callable[[], object], what: str) -> None:
    """:func:`wait_for` the job, up to :data:`JOB_SECONDS`; a timeout shows the end of the job's log."""
    try:
        wait_for(check, timeout=JOB_SECONDS, what=what)
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc}\nthe job's log ends:\n{runner.tail()}")


@pytest.mark.timeout(3 * JOB_SECONDS)
def test_a_job_run_from_its_pod_reports_its_progress_and_is_restarted_when_it_stalls(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    """The windowed job runs as a process from the container the operator built (``support.kubelet``): its lag in
    the status falls to 0 after a burst, its metrics count what the producer delivered; stopped (SIGSTOP) while
    input flows, it is Stalled after stallSeconds and its pod replaced, and the pipeline is Ready again with every
    window written once."""
    bootstrap = kafka_broker.bootstrap_servers
    (metrics_port,) = free_ports(1)
    body = manifest(
        "live",
        bootstrap,
        generator={"enabled": False},
        jobs={
            "basic": {"enabled": False},
            "anomaly": {"enabled": False},
            "windowed": {"trigger": "2s", "statusWindow": "1m"},
        },
        input={"maxEventBehind": "none"},  # the events are dated 2024-05-01 and produced now
        spark={"driver": {"cores": 1, "memory": "1g"}},
        slo={"stallSeconds": 60},
        monitoring={"metricsPort": metrics_port},
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    topics = body["spec"]["kafka"]["topics"]
    source, output = topics["source"]["name"], topics["windowed"]["name"]
    wait_for(lambda: "windowed" in pods(api, namespace, "live"), what="the windowed pod")
    api["core"].patch_namespaced_persistent_volume_claim_status(
        "live-checkpoints", namespace, {"status": {"phase": "Bound"}}
    )
    volume = tmp_path / "pvc"
    volume.mkdir()
    start = datetime(2024, 5, 1, tzinfo=UTC)

    def ready() -> bool:
        return condition(get_cr(api, namespace, "live"), "Ready")["status"] == "True"

    with PodRunner(api, namespace, "live", "windowed", volume, tmp_path / "windowed.log") as runner:
        delivered = produce_events(bootstrap, source, start, 1200, seed=5)
        wait_for_job(
            runner,
            lambda: (
                windowed_progress(api, namespace, "live").get("lagRecords") == 0
                and windowed_progress(api, namespace, "live").get("lastProgressTime")
            ),
            "the job to catch up",
        )
        wait_for(
            lambda: scraped(metrics_port, "sluice_job_input_rows_total") >= delivered, what="the metrics"
        )
        assert (
            scraped(metrics_port, "sluice_job_input_rows_total") == delivered
        )  # what the producer delivered
        wait_for(ready, what="Ready")

        # Stopped while input flows: Stalled once stallSeconds (60) pass without a commit; the pod is replaced.
        os.killpg(runner.process.pid, signal.SIGSTOP)
        delivered += produce_events(bootstrap, source, start + timedelta(seconds=60), 1200, seed=6)
        stalled = wait_for(
            lambda: [m for r, m in events(api, namespace, "live") if r == "Stalled"],
            timeout=120,
            what="Stalled",
        )
        idle = int(re.search(r"no micro-batch committed in the last (\d+) s", stalled[0]).group(1))
        assert 60 <= idle <= 70, stalled  # stallSeconds, plus at most one reconcile (1 s here) and its reads
        wait_for(lambda: runner.started >= 2, what="the new pod running")

        # Two late flushes move the watermark past every window of the bursts; the job is Ready and caught up.
        for minute in (10, 11):
            delivered += produce_events(bootstrap, source, start + timedelta(minutes=minute), 4, seed=minute)
            wait_for_job(
                runner,
                lambda: windowed_progress(api, namespace, "live").get("lagRecords") == 0,
                f"the flush at minute {minute} processed",
            )
        wait_for(ready, what="Ready again")
        # each start after the first was a counted restart (a machine slow enough to stall the new pod too counts it)
        restarts = get_cr(api, namespace, "live")["status"]["components"]["windowed"]["restarts"]
        assert restarts == runner.started - 1 >= 1

    # No window lost, none written twice: the tumbling windows of the bursts, as the reference computes them.
    parsed = [ref.parse_record(m.value()) for m in read_all(bootstrap, source, timeout=60)]
    assert len(parsed) == delivered
    events_ = [p.event for p in parsed if p.event is not None]
    cut = ref.timestamp_us("2024-05-01T00:05:00Z")
    expected = {
        k: v
        for k, v in ref.tumbling_records([events_], TUMBLING).items()
        if ref.timestamp_us(v["window_start"]) < cut
    }
    written = records_by_key(read_all(bootstrap, output, timeout=60))
    actual = {
        k: v
        for k, v in written.items()
        if v["aggregation"] == "tumbling" and ref.timestamp_us(v["window_start"]) < cut
    }
    assert len(expected) == 4 * 12  # 4 devices, 120 s of events in 10 s windows
    assert_same_records(actual, expected, "tumbling windows after the stall")


TUMBLING = ref.Windowing(ref.seconds(10), ref.seconds(10), ref.seconds(10))


@pytest.mark.timeout(300)
def test_delete_policy_removes_topics_and_volume(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    body = manifest(
        "gone", bootstrap, kafka={"deletionPolicy": "Delete"}, checkpoints={"deletionPolicy": "Delete"}
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    names = [t["name"] for t in body["spec"]["kafka"]["topics"].values()]
    wait_for(lambda: len(pods(api, namespace, "gone")) == 4, what="pods")
    assert len(kafka_admin.describe_topics(bootstrap, names)) == 5
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    wait_for(lambda: kafka_admin.describe_topics(bootstrap, names) == {}, what="topics deleted")

    read_pvc = lambda: api["core"].read_namespaced_persistent_volume_claim("gone-checkpoints", namespace)  # noqa: E731
    wait_for(lambda: absent(read_pvc), timeout=90, what="volume garbage-collected")
    assert any(r == "TopicsDeleted" for r, _ in events(api, namespace, "gone"))


@pytest.mark.timeout(300)
def test_deletion_is_not_stuck_when_kafka_is_gone(control_plane, operator, api, namespace, tmp_path):
    # Kafka unreachable from the start: no children, a condition saying why; then delete still completes.
    (port,) = free_ports(1)
    body = manifest("nokafka", f"127.0.0.1:{port}", kafka={"deletionPolicy": "Delete"})
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, "nokafka"))
            and condition(c, "TopicsReady")["reason"] == "KafkaUnavailable"
            and c
        ),
        what="KafkaUnavailable",
    )
    assert f"127.0.0.1:{port}" in condition(cr, "TopicsReady")["message"]
    # retried with a growing delay: the count of consecutive failures is kept in the status
    wait_for(lambda: get_cr(api, namespace, "nokafka")["status"].get("kafkaFailures", 0) >= 2, what="a retry")
    assert pods(api, namespace, "nokafka") == {}
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "nokafka")

    wait_for(
        lambda: absent(lambda: get_cr(api, namespace, "nokafka")),
        timeout=120,
        what="the pipeline released after bounded retries",
    )
    assert any(r == "TopicsNotDeleted" for r, _ in events(api, namespace, "nokafka"))


@pytest.mark.timeout(300)
def test_suspend_is_applied_while_kafka_is_unreachable(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    body = manifest("cutoff", kafka_broker.bootstrap_servers)
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    wait_for(lambda: len(pods(api, namespace, "cutoff")) == 4, what="pods")
    # Kafka moves out of reach and the user suspends the pipeline in one change: the pods must go all the same.
    (port,) = free_ports(1)
    patch = {"spec": {"suspend": True, "kafka": {"bootstrapServers": f"127.0.0.1:{port}"}}}
    api["custom"].patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cutoff", patch)
    wait_for(lambda: pods(api, namespace, "cutoff") == {}, timeout=90, what="the pods removed")
    cr = wait_for(
        lambda: (c := get_cr(api, namespace, "cutoff"))["status"].get("phase") == "Suspended" and c,
        what="phase Suspended",
    )
    assert condition(cr, "TopicsReady")["reason"] == "KafkaUnavailable"


@pytest.mark.timeout(300)
def test_a_job_that_lost_source_data_degrades_the_pipeline_and_is_not_restarted(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    body = manifest("lossy", kafka_broker.bootstrap_servers)
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    wait_for(lambda: len(pods(api, namespace, "lossy")) == 4, what="pods")
    for pod in pods(api, namespace, "lossy").values():
        set_phase(api, namespace, pod.metadata.name, "Running")
    # What the kubelet reports when the job exits 3 with its termination message.
    lost = "SourceDataLost: Could not read records in offset [100, 200) for topic partition src-0"
    terminated = {"exitCode": 3, "message": lost, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z",
                  "finishedAt": "2026-01-01T00:05:00Z"}  # fmt: skip
    status = {"phase": "Failed", "containerStatuses": [{
        "name": "windowed", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": terminated},
    }]}  # fmt: skip
    api["core"].patch_namespaced_pod_status("lossy-windowed", namespace, {"status": status})
    cr = wait_for(
        lambda: (c := get_cr(api, namespace, "lossy"))["status"].get("phase") == "Degraded" and c,
        what="phase Degraded",
    )
    jobs = condition(cr, "JobsRunning")
    assert (jobs["status"], jobs["reason"]) == ("False", "SourceDataLost")
    assert "offset [100, 200) for topic partition src-0" in jobs["message"]
    wait_for(lambda: "SourceDataLost" in [r for r, _ in events(api, namespace, "lossy")], what="the Event")
    time.sleep(5)  # several timer passes later (1 s here), the failed pod is still there: not restarted
    assert pods(api, namespace, "lossy")["windowed"].status.phase == "Failed"


@pytest.mark.timeout(300)
def test_two_pipelines_with_the_same_topic_names_do_not_share_or_delete_each_others_topics(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    # Both with the same names, as two pipelines left at the default names would be (the default names themselves
    # are not used on this shared broker).
    first = manifest("first", bootstrap, kafka={"deletionPolicy": "Delete"})
    second = {**manifest("second", bootstrap), "spec": {**first["spec"]}}
    names = [t["name"] for t in first["spec"]["kafka"]["topics"].values()]
    assert apply(control_plane, namespace, first, tmp_path).returncode == 0
    wait_for(lambda: len(pods(api, namespace, "first")) == 4, what="the first pipeline's pods")
    assert apply(control_plane, namespace, second, tmp_path).returncode == 0
    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, "second")).get("status", {}).get("conditions")
            and condition(c, "TopicsReady")["reason"] == "TopicOwnedByAnotherPipeline"
            and c
        ),
        what="TopicOwnedByAnotherPipeline",
    )
    message = condition(cr, "TopicsReady")["message"]
    assert f"topic {names[0]} is owned by pipeline {namespace}/first" in message
    wait_for(
        lambda: "TopicOwnedByAnotherPipeline" in [r for r, _ in events(api, namespace, "second")],
        what="the Event",
    )
    assert pods(api, namespace, "second") == {}
    registry = api["core"].read_namespaced_config_map("sluice-topic-owners", "sluice-system").data
    assert {v.rsplit("/", 1)[0] for k, v in registry.items() if k.split(".", 1)[1] in names} == {
        f"{namespace}/first"
    }

    # Deleting the second pipeline (deletionPolicy Delete) leaves the first's topics alone.
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "second")
    wait_for(lambda: absent(lambda: get_cr(api, namespace, "second")), what="the second pipeline gone")
    assert len(kafka_admin.describe_topics(bootstrap, names)) == 5
    assert condition(get_cr(api, namespace, "first"), "TopicsReady")["status"] == "True"
    # Deleting the first deletes them and releases its claims.
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "first")
    wait_for(lambda: kafka_admin.describe_topics(bootstrap, names) == {}, what="the first's topics deleted")
    wait_for(
        lambda: (
            not any(
                k.split(".", 1)[1] in names
                for k in (
                    api["core"].read_namespaced_config_map("sluice-topic-owners", "sluice-system").data or {}
                )
            )
        ),
        what="the claims released",
    )


@pytest.mark.timeout(300)
def test_semantically_invalid_spec_gets_the_invalid_condition_and_no_children(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    body = manifest(
        "bad", kafka_broker.bootstrap_servers, spark={"mode": "standalone", "conf": {"spark.master": "local"}}
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    cr = wait_for(
        lambda: (c := get_cr(api, namespace, "bad")).get("status", {}).get("phase") == "Invalid" and c,
        what="Invalid",
    )
    invalid = condition(cr, "Invalid")
    assert invalid["status"] == "True"
    assert (
        "spec.checkpoints.existingClaim" in invalid["message"]
        and "spec.spark.conf: spark.master" in invalid["message"]
    )
    assert pods(api, namespace, "bad") == {}
    with pytest.raises(ApiException) as info:
        api["core"].read_namespaced_persistent_volume_claim("bad-checkpoints", namespace)
    assert info.value.status == 404


def test_operator_identity_is_least_privilege(control_plane, operator, tmp_path):
    token = control_plane.token_for_service_account("sluice-system", "sluice-operator")
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "sa")

    def can(*args: str) -> bool:
        return (
            control_plane.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False).stdout.strip()
            == "yes"
        )

    assert can("create", "pods", "-n", "anywhere")
    assert can("patch", "streamingpipelines.streaming.sluice.dev/status", "-n", "anywhere")
    assert not can("get", "secrets", "-n", "anywhere")
    assert not can("delete", "persistentvolumeclaims", "-n", "anywhere")
    assert not can("create", "deployments.apps", "-n", "anywhere")
    assert not can("update", "pods", "-n", "anywhere")
    # the registry of topic owners, and no other ConfigMap, in its own namespace only
    assert can("update", "configmaps/sluice-topic-owners", "-n", "sluice-system")
    assert not can("update", "configmaps/other", "-n", "sluice-system")
    assert not can("get", "configmaps/sluice-topic-owners", "-n", "anywhere")
    rules = yaml.safe_load_all(RBAC.read_text())
    role = next(d for d in rules if d["kind"] == "ClusterRole")
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])


def test_operator_metrics(operator):
    with urllib.request.urlopen(f"http://127.0.0.1:{operator['metrics_port']}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("sluice_")
    }
    assert values["sluice_reconciles_total"] > 0  # the tests above made the operator reconcile
    assert "sluice_reconcile_errors_total" in values
    assert any(name.startswith("sluice_pipelines{phase=") for name in values)


def test_a_busy_metrics_port_stops_the_operator_naming_it(operator, tmp_path):
    """A second operator told to serve metrics on the first one's port stops at once, saying which port and
    setting, rather than retrying its start-up for a minute with no liveness endpoint."""
    liveness_port = free_ports(1)[0]
    env = {**operator["env"], "SLUICE_METRICS_PORT": str(operator["metrics_port"])}
    log = tmp_path / "second.log"
    second = spawn_operator(env, liveness_port, log)
    try:
        code = second.wait(60)
    finally:
        stop_operator(second)
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert f"cannot serve metrics on port {operator['metrics_port']} (SLUICE_METRICS_PORT)" in text, text[
        -3000:
    ]
    assert operator["process"].poll() is None  # the first one is unaffected


# --- every sample is an end-to-end example -------------------------------------------------------------------------

SAMPLES = sorted((ROOT / "k8s" / "samples").glob("*.yaml"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_sample_pipeline_is_reconciled(
    control_plane, operator, api, namespace, kafka_broker, tmp_path, sample
):
    from sluice_operator import components
    from sluice_operator.manifests import pod_plan
    from sluice_operator.spec import parse_spec

    body = yaml.safe_load(sample.read_text())
    body["spec"]["kafka"]["bootstrapServers"] = kafka_broker.bootstrap_servers  # the samples name the chart's
    topics = body["spec"]["kafka"].setdefault("topics", {})
    for role in ("source", "processed", "windowed", "alerts", "deadLetter"):  # unique per run, one broker
        topics.setdefault(role, {})["name"] = f"{sample.stem}-{role}-{uuid.uuid4().hex[:6]}"
    name = body["metadata"]["name"]
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    spec = parse_spec(get_cr(api, namespace, name)["spec"])  # as stored, with the API server's defaults

    want = [] if spec.suspend else [c.name for c in components.enabled(spec)]
    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, name)).get("status", {}).get("components")
            and set(pods(api, namespace, name)) == set(want)
            and c
        ),
        what=f"{len(want)} pods of {sample.name}",
    )
    assert cr["status"]["phase"] == ("Suspended" if spec.suspend else "Pending")
    assert condition(cr, "TopicsReady")["status"] == "True"
    described = kafka_admin.describe_topics(
        kafka_broker.bootstrap_servers, [t.name for _, t in spec.kafka.topics.all()]
    )
    for _, topic in spec.kafka.topics.all():
        assert described[topic.name].partitions == topic.partitions
        for key, value in topic.config.items():
            assert described[topic.name].config[key] == value
    # each pod on the server is exactly what the builder made for this spec
    for component, pod in pods(api, namespace, name).items():
        built = pod_plan(
            pipeline=name, namespace=namespace, spec=spec, component=components.get(component)
        ).manifest
        (container,) = pod.spec.containers
        (expected,) = built["spec"]["containers"]
        assert (container.command, container.args, container.image) == (
            None,
            expected["args"],
            expected["image"],
        )
        assert (
            client.ApiClient().sanitize_for_serialization(container.security_context)
            == expected["securityContext"]
        )
        assert client.ApiClient().sanitize_for_serialization(container.resources) == expected["resources"]
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _readme_listing() -> list[list[str]]:
    """The rows of k8s/README.md's expected `kubectl get spipe` block, without the AGE column."""
    text = (ROOT / "k8s" / "README.md").read_text()
    block = text.split("<!-- expected-get-spipe", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    return [re.split(r"\s{2,}", line.strip())[:-1] for line in block.strip().splitlines()]


@pytest.mark.timeout(300)
def test_samples_listing_matches_the_readme(control_plane, operator, api, namespace, kafka_broker, tmp_path):
    """All samples in one namespace, their pods "running" and volumes "bound": `kubectl get spipe` prints what
    k8s/README.md says it prints."""
    names = []
    for sample in SAMPLES:
        body = yaml.safe_load(sample.read_text())
        existing = body["spec"].get("checkpoints", {}).get("existingClaim")
        if existing:  # the shared claim a cluster-mode sample names is the user's to make
            api["core"].create_namespaced_persistent_volume_claim(
                namespace,
                {
                    "metadata": {"name": existing},
                    "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
                },
            )
        body["spec"]["kafka"]["bootstrapServers"] = kafka_broker.bootstrap_servers
        topics = body["spec"]["kafka"].setdefault("topics", {})
        for role in ("source", "processed", "windowed", "alerts", "deadLetter"):
            topics.setdefault(role, {})["name"] = f"{sample.stem}-{role}-{uuid.uuid4().hex[:6]}"
        assert apply(control_plane, namespace, body, tmp_path).returncode == 0
        names.append(body["metadata"]["name"])

    def settled() -> bool:
        """Play kubelet and volume binder until every pipeline shows the phase its spec leads to, and is Ready
        unless suspended (Ready follows the pass that sees the claim bound, which may come after the one that
        sees the pods running)."""
        done = True
        for claim in api["core"].list_namespaced_persistent_volume_claim(namespace).items:
            if claim.status.phase != "Bound":
                api["core"].patch_namespaced_persistent_volume_claim_status(
                    claim.metadata.name, namespace, {"status": {"phase": "Bound"}}
                )
        for name in names:
            for pod in pods(api, namespace, name).values():
                if pod.status.phase != "Running":
                    set_phase(api, namespace, pod.metadata.name, "Running")
            cr = get_cr(api, namespace, name)
            suspended = bool(cr["spec"].get("suspend"))
            ready = str(not suspended)
            done = (
                done
                and cr.get("status", {}).get("phase") == ("Suspended" if suspended else "Running")
                and condition(cr, "Ready")["status"] == ready
            )
        return done

    wait_for(settled, timeout=120, what="every sample Running and Ready (or Suspended)")
    listed = control_plane.kubectl("get", "spipe", "-n", namespace).stdout
    rows = [re.split(r"\s{2,}", line.strip())[:-1] for line in listed.strip().splitlines()]
    assert rows == _readme_listing(), listed


@pytest.mark.timeout(STEADY_SECONDS + 120)
def test_a_steady_pipeline_posts_no_event_and_logs_nothing(steady, operator):
    """Last in the module: the steady pipeline has been left alone since the first test."""
    left = STEADY_SECONDS - (time.monotonic() - steady["since"])
    if left > 0:
        time.sleep(left)
    api, namespace = steady["api"], steady["namespace"]
    assert condition(get_cr(api, namespace, "steady"), "Ready")["status"] == "True"
    assert event_counts(api, namespace, "steady") == steady["events"]
    with operator["log"].open() as log:
        log.seek(steady["log_size"])
        about = [line for line in log if f"[{namespace}/steady]" in line]
    assert about == [], "".join(about[:20])
