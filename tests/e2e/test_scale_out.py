"""Pipelines whose executors run across the kind cluster's nodes: ``spark.mode: kubernetes`` (executor pods, made by
each job's driver) and ``standalone`` (the sluice-spark chart's workers), on the ReadWriteMany claim every node
shares (k8s/kind-shared-storage.yaml). Their windowed results and alerts agree with the generator's ground truth as
the local-mode pipeline's do (tests/e2e/truth.py); an executor deleted mid-stream and a killed driver lose nothing
and change nothing; a job whose executor no node can take is not Ready and its pipeline says why; deleting the
pipeline takes everything it made with it.

The kubernetes-mode tests share one pipeline (a module fixture) and run in the order written.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import reference as ref
import yaml
from cluster import ROOT, wait_for
from truth import (
    BASIC_FIELDS,
    BOOTSTRAP,
    TUMBLING_FIELDS,
    Pipeline,
    check_alerts,
    check_window_rows,
    check_windowed,
    ground_truth,
    records_by_key,
    rewritten,
    rows_settled_after,
)

from sluice_local.topics import read_all

pytestmark = pytest.mark.e2e

SHARED_CLAIM = "sluice-shared"  # k8s/kind-shared-storage.yaml, made by scripts/kind.sh on this cluster
LABEL = "streaming.sluice.dev/pipeline"
COMPONENT = "app.kubernetes.io/component"
#: The JVMs with HotSpot's first compiler only, as the local-mode pipeline's (tests/e2e/test_kind_pipeline.py): the
#: optimising compiler's start-up work is most of what many JVMs starting at once cost two cores.
QUICK_JIT = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
}
#: Small for the kind nodes on a 2-core machine: Spark keeps its threads, the pods reserve little CPU.
SMALL = {"cores": 1, "memory": "768m", "cpuRequest": "100m"}


def pipeline(name: str, spark: dict, *, jobs: tuple[str, ...], tmp_path, generator: bool = True) -> Pipeline:
    """The full sample, renamed (its own topics), on the shared claim, running ``jobs`` with ``spark`` (and the
    generator unless told not to)."""
    manifest = yaml.safe_load((ROOT / "k8s" / "samples" / "full.yaml").read_text())
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    for topic in spec["kafka"]["topics"].values():
        topic["name"] = topic["name"].replace("full-", f"{name}-")
    spec["spark"] = {**spec["spark"], **spark, "conf": {**spec["spark"]["conf"], **QUICK_JIT}}
    spec["checkpoints"] = {"existingClaim": SHARED_CLAIM}
    for job in ("basic", "windowed", "anomaly"):
        spec["jobs"][job]["enabled"] = job in jobs
    spec["generator"]["enabled"] = generator
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return Pipeline(name, spec, path)


def pods(cluster, name: str, *selectors: str) -> list[dict]:
    found = cluster.get("pods", "-l", ",".join([f"{LABEL}={name}", *selectors]))["items"]
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def drivers(cluster, name: str) -> dict[str, dict]:
    return {p["metadata"]["labels"][COMPONENT]: p for p in pods(cluster, name, "!spark-role")}


def executors(cluster, name: str, job: str) -> list[dict]:
    return pods(cluster, name, "spark-role=executor", f"{COMPONENT}={job}-executor")


def running(found: list[dict]) -> list[dict]:
    return [p for p in found if p["status"].get("phase") == "Running"]


def ready(pod: dict) -> bool:
    return all(c.get("ready") for c in pod["status"].get("containerStatuses") or [{}])


def condition(cluster, name: str, kind: str) -> dict:
    status = cluster.get("streamingpipeline", name).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * ref.SECOND_US)


def start(cluster, scaled: Pipeline, *, jobs: tuple[str, ...], executors_each: int) -> None:
    """Apply the pipeline; wait until its pods run, each job's pod is Ready, and (kubernetes mode) ``executors_each``
    executor pods of each job run."""
    cluster.kubectl("apply", "-f", str(scaled.manifest))

    def all_running() -> bool:
        found = drivers(cluster, scaled.name)
        if set(found) != {"generator", *jobs}:
            return False
        if not all(p["status"].get("phase") == "Running" for p in found.values()):
            return False
        # a job's pod is not Ready while its Spark session has no executor (its readiness probe)
        if not all(ready(found[job]) for job in jobs):
            return False
        return all(len(running(executors(cluster, scaled.name, job))) >= executors_each for job in jobs)

    wait_for(all_running, timeout=900, what=f"{scaled.name}'s drivers Ready, with their executors")


def check_tumbling_windows_through(scaled: Pipeline, disrupted_at: int) -> None:
    """The windowed job's tumbling windows, once windows starting three lengths after ``disrupted_at`` (µs) have been
    written: no key was written with two values, and the windows (each once) agree with the ground truth up to the
    settled one: none is missing across the disruption, none changed."""
    topic = scaled.topic("windowed")
    tumbling = scaled.windowing("tumblingWindow", job="windowed")
    found, settled = rows_settled_after(
        topic, tumbling, disrupted_at + 3 * tumbling.length_us, aggregation="tumbling"
    )
    assert rewritten(records_by_key(topic)) == {}  # no key with two values
    once = list({(r["device_id"], r["window_start"]): r for r in found}.values())
    source = read_all(BOOTSTRAP, scaled.topic("source"), timeout=300)
    check_window_rows(once, ground_truth(source, tumbling), settled=settled, fields=TUMBLING_FIELDS)


def delete(cluster, name: str) -> None:
    cluster.kubectl("delete", "streamingpipeline", name, "--ignore-not-found", "--timeout=5m")
    wait_for(lambda: not pods(cluster, name), timeout=300, what=f"the pods of {name} to go")


# --- kubernetes mode ------------------------------------------------------------------------------------------------

K8S_JOBS = ("windowed", "anomaly")


@pytest.fixture(scope="module")
def starved(kind_cluster, tmp_path_factory) -> Iterator[Pipeline]:
    """A kubernetes-mode pipeline (the windowed job, no generator) whose executor asks for more memory than any node
    has: its driver runs, its executor pod stays Pending. Applied beside the scaled pipeline (the first test asks
    for it), so its wait for executors costs no time of its own."""
    spark = {
        "mode": "kubernetes",
        "driver": SMALL,
        "executor": {**SMALL, "memory": "64g", "instances": 1},
        "executorWaitSeconds": 30,
    }
    hungry = pipeline(
        "starved", spark, jobs=("windowed",), generator=False, tmp_path=tmp_path_factory.mktemp("s")
    )
    kind_cluster.kubectl("apply", "-f", str(hungry.manifest))
    yield hungry
    delete(kind_cluster, hungry.name)


@pytest.fixture(scope="module")
def on_kubernetes(kind_cluster, tmp_path_factory) -> Iterator[Pipeline]:
    spark = {"mode": "kubernetes", "driver": SMALL, "executor": {**SMALL, "instances": 2}}
    scaled = pipeline("scaled", spark, jobs=K8S_JOBS, tmp_path=tmp_path_factory.mktemp("scaled"))
    start(kind_cluster, scaled, jobs=K8S_JOBS, executors_each=2)
    yield scaled
    delete(kind_cluster, scaled.name)


def test_executor_pods_run_on_more_than_one_node_under_restricted_owned_by_their_driver(
    kind_cluster, on_kubernetes, starved
):
    namespace = kind_cluster.get("namespace", kind_cluster.namespace, namespace="")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    found = drivers(kind_cluster, on_kubernetes.name)
    nodes = set()
    for job in K8S_JOBS:
        ours = running(executors(kind_cluster, on_kubernetes.name, job))
        assert len(ours) == 2, [p["metadata"]["name"] for p in ours]
        for pod in ours:
            # admitted in a namespace that enforces restricted, owned by the driver's pod
            owners = [(o["kind"], o["name"]) for o in pod["metadata"]["ownerReferences"]]
            assert owners == [("Pod", found[job]["metadata"]["name"])], owners
            assert pod["metadata"]["name"].startswith(f"{on_kubernetes.name}-{job}-exec-")
            nodes.add(pod["spec"]["nodeName"])
    assert len(nodes) > 1, nodes

    def counted() -> dict:
        status = kind_cluster.get("streamingpipeline", on_kubernetes.name)["status"]
        return {job: status["components"][job].get("executors") for job in K8S_JOBS}

    # the status counts them at the operator's next pass
    wait_for(
        lambda: counted() == {"windowed": 2, "anomaly": 2}, timeout=60, what="2 executors each in the status"
    )
    wait_for(
        lambda: condition(kind_cluster, on_kubernetes.name, "Ready").get("status") == "True",
        timeout=300,
        what="Ready",
    )
    assert condition(kind_cluster, on_kubernetes.name, "ExecutorsUnavailable")["status"] == "False"
    assert kind_cluster.pull_events() == []


def test_kubernetes_mode_windowed_results_and_alerts_agree_with_the_ground_truth(on_kubernetes):
    check_windowed(on_kubernetes)
    check_alerts(on_kubernetes)


def test_an_executor_deleted_mid_stream_is_replaced_and_no_window_is_lost_or_changed(
    kind_cluster, on_kubernetes
):
    name = on_kubernetes.name
    victim = running(executors(kind_cluster, name, "windowed"))[0]
    killed_at = now_us()
    kind_cluster.kubectl("delete", "pod", victim["metadata"]["name"], "--wait=false")

    seen: list[list[str]] = []

    def replaced() -> bool:
        now = running(executors(kind_cluster, name, "windowed"))
        seen.append([f"{p['metadata']['name']} ({p['metadata']['uid'][:8]})" for p in now])
        return len(now) == 2 and victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in now}

    def told() -> str:
        got = kind_cluster.kubectl("get", "pod", victim["metadata"]["name"], "-o", "json", check=False)
        now = json.loads(got.stdout)["metadata"] if got.returncode == 0 else None
        state = f"uid {now['uid'][:8]}, deleted at {now.get('deletionTimestamp')}" if now else "gone"
        return (
            f"Spark to replace the deleted executor {victim['metadata']['name']} ({victim['metadata']['uid'][:8]}; "
            f"now: {state}); running since: {seen[:3]} ... {seen[-3:]}"
        )

    wait_for(replaced, timeout=300, what=told)
    check_tumbling_windows_through(on_kubernetes, killed_at)


def test_a_killed_driver_is_restarted_gets_new_executors_and_resumes_from_the_shared_checkpoint(
    kind_cluster, on_kubernetes
):
    name = on_kubernetes.name
    driver = drivers(kind_cluster, name)["windowed"]
    # a new application's executors may take the old names (<pod>-exec-1...): compared by uid
    before = {p["metadata"]["uid"] for p in executors(kind_cluster, name, "windowed")}
    checkpoint = kind_cluster.get("streamingpipeline", name)["status"]["components"]["windowed"][
        "checkpointPath"
    ]
    killed_at = now_us()
    kind_cluster.kubectl("exec", driver["metadata"]["name"], "--", "bash", "-c", "kill -KILL -1", check=False)

    def back() -> bool:
        new = drivers(kind_cluster, name).get("windowed")
        fresh = new is not None and new["metadata"]["uid"] != driver["metadata"]["uid"] and ready(new)
        now = {p["metadata"]["uid"] for p in running(executors(kind_cluster, name, "windowed"))}
        return fresh and len(now) == 2 and not (now & before)

    wait_for(back, timeout=600, what="a new windowed driver with two new executors")
    status = kind_cluster.get("streamingpipeline", name)["status"]["components"]["windowed"]
    assert status["checkpointPath"] == checkpoint  # the same checkpoint, on the shared claim
    check_tumbling_windows_through(on_kubernetes, killed_at)


def test_a_job_whose_executor_no_node_can_take_is_not_ready_and_the_pipeline_says_why(kind_cluster, starved):
    said = wait_for(
        lambda: (
            (c := condition(kind_cluster, starved.name, "ExecutorsUnavailable")).get("status") == "True" and c
        ),
        timeout=300,
        what=f"{starved.name}'s ExecutorsUnavailable condition",
    )
    # the executor pod's own reason, from the scheduler
    assert said["message"].startswith("windowed: no executor for "), said
    assert "starved-windowed-exec-1: Unschedulable: " in said["message"], said
    assert "Insufficient memory" in said["message"], said
    assert condition(kind_cluster, starved.name, "Ready")["status"] == "False"
    driver = drivers(kind_cluster, starved.name)["windowed"]
    assert driver["status"]["phase"] == "Running" and not ready(driver), driver["status"]
    warnings = kind_cluster.get(
        "events", "--field-selector", f"involvedObject.name={starved.name},reason=ExecutorsUnavailable"
    )["items"]
    assert [(e["type"], e.get("count") or 1) for e in warnings] == [("Warning", 1)], warnings
    # gone by the end of the module (its fixture waits for that): no test after this one needs it
    kind_cluster.kubectl("delete", "streamingpipeline", starved.name, "--wait=false")


def test_deleting_a_kubernetes_mode_pipeline_removes_drivers_executors_services_and_their_identity(
    kind_cluster, on_kubernetes
):
    name = on_kubernetes.name
    delete(kind_cluster, name)
    kinds = "serviceaccounts,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,services,configmaps"

    def gone() -> bool:
        left = kind_cluster.get(kinds, "-l", f"{LABEL}={name}")["items"]
        return not left and not pods(kind_cluster, name)

    wait_for(gone, timeout=300, what=f"everything {name} made to go")


# --- standalone mode ------------------------------------------------------------------------------------------------


def test_a_standalone_pipeline_gets_executors_for_its_three_jobs_at_once_and_its_outputs_agree(
    kind_cluster, tmp_path
):
    jobs = ("basic", "windowed", "anomaly")
    spark = {
        "mode": "standalone",
        "master": "spark://sluice-spark-master:7077",
        "driver": SMALL,
        "executor": {"instances": 1, "cores": 1, "memory": "768m"},
    }
    shared = pipeline("shared", spark, jobs=jobs, tmp_path=tmp_path)
    start(kind_cluster, shared, jobs=jobs, executors_each=0)
    try:
        # the master runs the three applications at once, one core each (spark.cores.max); a driver's pod is Ready
        # before its application registers, so the master is polled
        def master() -> dict:
            with urllib.request.urlopen("http://localhost:30080/json/", timeout=30) as answer:
                return json.load(answer)

        wanted = {f"sluice-{job}" for job in jobs}
        found = wait_for(
            lambda: master() if wanted <= {a["name"] for a in master()["activeapps"]} else None,
            timeout=300,
            what="the three applications on the Spark master",
        )
        apps = {a["name"]: a for a in found["activeapps"]}
        assert all(apps[f"sluice-{job}"]["cores"] == 1 for job in jobs), found["activeapps"]
        assert condition(kind_cluster, shared.name, "ExecutorsUnavailable")["status"] == "False"
        check_windowed(shared)
        check_alerts(shared)
        topic = shared.topic("processed")
        windowing = shared.windowing("window", "slide", job="basic")
        rows, settled = rows_settled_after(topic, windowing, now_us() - 60 * ref.SECOND_US)
        source = read_all(BOOTSTRAP, shared.topic("source"), timeout=300)
        check_window_rows(rows, ground_truth(source, windowing), settled=settled, fields=BASIC_FIELDS)
    finally:
        delete(kind_cluster, shared.name)
