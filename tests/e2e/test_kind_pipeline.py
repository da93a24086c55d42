"""A StreamingPipeline on kind, end to end: the operator creates the topics and the pods, the jobs write windowed
results and alerts to Kafka, and deleting the pipeline cleans up."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from sluice_local.topics import wait_for_records

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "k8s" / "samples" / "full.yaml"
BOOTSTRAP = "localhost:30092"  # Kafka's external listener, mapped to the host by k8s/kind-config.yaml
COMPONENTS = {"generator", "basic", "windowed", "anomaly"}


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _topics() -> set[str]:
    return set(AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=20).topics)


def _pods(cluster, pipeline: str) -> dict[str, str]:
    listing = cluster.kubectl("get", "pods", "-l", f"streaming.sluice.dev/pipeline={pipeline}", "-o", "json")
    return {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p["status"].get("phase", "")
        for p in json.loads(listing.stdout)["items"]
    }


def test_kind_demo_prints_windowed_results_and_alerts(kind_cluster):
    """`make kind-demo` on the cluster `make kind-up` made (which also ran `helm test`)."""
    demo = kind_cluster.script("demo")
    assert demo.returncode == 0, demo.stderr[-4000:]
    assert re.search(r"^windowed_results_topic: \d+ record\(s\)", demo.stdout, re.MULTILINE), demo.stdout
    assert re.search(r"^anomaly_alerts_topic: \d+ record\(s\)", demo.stdout, re.MULTILINE), demo.stdout


def test_full_pipeline_runs_writes_results_and_alerts_and_cleans_up(kind_cluster, tmp_path):
    spec = yaml.safe_load(SAMPLE.read_text())
    # Sized for one kind node on a small machine: Spark keeps its 2 threads, the pods reserve 100m CPU each.
    spec["spec"]["spark"]["driver"] = {"cores": 2, "memory": "768m", "cpuRequest": "100m"}
    name = spec["metadata"]["name"]
    topics = {t["name"] for t in spec["spec"]["kafka"]["topics"].values()}
    manifest = tmp_path / "full.yaml"
    manifest.write_text(yaml.safe_dump(spec))
    kind_cluster.kubectl("apply", "-f", str(manifest))

    _wait(lambda: topics <= _topics(), 300, f"topics {sorted(topics)}")
    _wait(
        lambda: _pods(kind_cluster, name) == dict.fromkeys(COMPONENTS, "Running"),
        600,
        f"pods {sorted(COMPONENTS)} Running",
    )

    windowed = wait_for_records(
        BOOTSTRAP, spec["spec"]["kafka"]["topics"]["windowed"]["name"], count=5, timeout=600
    )
    rows = [json.loads(m.value()) for m in windowed]
    assert {row["aggregation"] for row in rows} <= {"tumbling", "sliding", "status"}
    # Every value the generator draws is in [10, 100] or, for an anomaly, [200, 500].
    for row in rows:
        assert row["record_count"] >= 1, row
        if "min_value" in row:
            assert 10 <= row["min_value"] <= row["max_value"] <= 500, row
    alerts = wait_for_records(
        BOOTSTRAP, spec["spec"]["kafka"]["topics"]["alerts"]["name"], count=1, timeout=600
    )
    threshold = spec["spec"]["jobs"]["anomaly"]["threshold"]
    for alert in (json.loads(m.value()) for m in alerts):
        assert alert["threshold"] == threshold
        assert abs(alert["anomaly_score"]) > threshold, alert
        if alert["anomaly_type"] == "HIGH_VALUE":
            # full.yaml: 200 events/s over 20 devices, 30 s windows: ~300 values per device and window. Uniform
            # values of [10, 100] alone never put a maximum 2.5 sigma above such a mean; an anomaly of [200, 500] does.
            assert alert["max_value"] >= 200, alert

    kind_cluster.kubectl("delete", "streamingpipeline", name, "--timeout=5m")
    _wait(lambda: not _pods(kind_cluster, name), 300, f"pods of {name} deleted")
    # deletionPolicy Delete: the topics and the checkpoint claim go too.
    _wait(lambda: not (topics & _topics()), 300, f"topics {sorted(topics)} deleted")
    claims = kind_cluster.kubectl("get", "pvc", "-l", f"streaming.sluice.dev/pipeline={name}", "-o", "name")
    assert claims.stdout.strip() == ""
