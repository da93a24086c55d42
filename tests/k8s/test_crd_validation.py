"""The CRD rejects bad StreamingPipelines at apply time, on the real API server, with a message naming the field.

Each case is a valid pipeline with one thing broken; the expected words are the field path the API server reports
(from the schema's bounds, enums and patterns, or the CEL rules on the object)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s" / "crd" / "streamingpipelines.streaming.sluice.dev.yaml"
#: The samples, and the pipeline `make kind-demo` applies by default.
SAMPLES = [*sorted((ROOT / "k8s" / "samples").glob("*.yaml")), ROOT / "k8s" / "kind-pipeline.yaml"]

BASE = {
    "apiVersion": "streaming.sluice.dev/v1alpha1",
    "kind": "StreamingPipeline",
    "metadata": {"name": "check"},
    "spec": {"kafka": {"bootstrapServers": "kafka:9092"}},
}


def with_spec(path: str, value) -> dict:
    """BASE with ``spec.<path>`` (dotted) set to ``value``."""
    body = copy.deepcopy(BASE)
    node = body["spec"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return body


INVALID = [
    ("kafka.topics.source.partitions", 0, "spec.kafka.topics.source.partitions"),
    ("kafka.topics.alerts.partitions", -3, "spec.kafka.topics.alerts.partitions"),
    ("kafka.topics.source.replicationFactor", 0, "spec.kafka.topics.source.replicationFactor"),
    ("kafka.topics.windowed.name", "bad name!", "spec.kafka.topics.windowed.name"),
    ("kafka.topics.processed.name", "..", "spec.kafka.topics.processed.name"),
    ("kafka.topics.deadLetter.name", "x" * 250, "spec.kafka.topics.deadLetter.name"),
    ("kafka.topics.alerts.name", "stream_data_topic", "topic names must be distinct"),
    ("kafka.bootstrapServers", "no-port", "spec.kafka.bootstrapServers"),
    ("kafka.deletionPolicy", "Forget", "spec.kafka.deletionPolicy"),
    ("kafka.topics.source.config", {"retention.ms": 5}, "spec.kafka.topics.source.config.retention.ms"),
    ("jobs.basic.slide", "20s", "slide must not be longer than window"),
    ("jobs.basic.window", "0s", "window must be longer than 0"),
    ("jobs.basic.watermark", "-5s", "spec.jobs.basic.watermark"),
    ("jobs.basic.window", "ten seconds", "spec.jobs.basic.window"),
    ("jobs.windowed.slidingSlide", "1m", "slidingSlide must not be longer than slidingWindow"),
    ("jobs.windowed.outputMode", "complete", "spec.jobs.windowed.outputMode"),
    ("jobs.anomaly.threshold", 0, "spec.jobs.anomaly.threshold"),
    ("jobs.anomaly.threshold", -1.5, "spec.jobs.anomaly.threshold"),
    ("jobs.anomaly.stddevFloor", 0, "spec.jobs.anomaly.stddevFloor"),
    ("jobs.basic.fileFormat", "csv", "spec.jobs.basic.fileFormat"),
    ("jobs.basic.trigger", "soon", "spec.jobs.basic.trigger"),
    ("jobs.windowed.maxOffsetsPerTrigger", 0, "spec.jobs.windowed.maxOffsetsPerTrigger"),
    ("jobs.anomaly.maxOffsetsPerTrigger", "many", "spec.jobs.anomaly.maxOffsetsPerTrigger"),
    ("generator.anomalyProbability", 1.5, "spec.generator.anomalyProbability"),
    ("generator.devices", 0, "spec.generator.devices"),
    ("generator.rate", 0, "spec.generator.rate"),
    ("spark.mode", "yarn", "spec.spark.mode"),
    ("spark.imagePullPolicy", "Sometimes", "spec.spark.imagePullPolicy"),
    ("spark.driver.memory", "1 GB", "spec.spark.driver.memory"),
    ("spark.driver.cores", 0, "spec.spark.driver.cores"),
    ("spark.driver.cpuRequest", "half", "spec.spark.driver.cpuRequest"),
    ("spark.conf", {"hadoop.fs.x": "1"}, "every key of spark.conf must be a Spark setting"),
    ("spark.executor.instances", 0, "spec.spark.executor.instances"),
    ("spark.executor.memoryOverhead", "lots", "spec.spark.executor.memoryOverhead"),
    ("spark.executor.cpuRequest", "1 core", "spec.spark.executor.cpuRequest"),
    (
        "spark.executor.dynamicAllocation",
        {"enabled": True, "minExecutors": 3, "maxExecutors": 2},
        "minExecutors must not be more than maxExecutors",
    ),
    (
        "spark.executor",
        {"instances": 5, "dynamicAllocation": {"enabled": True, "minExecutors": 1, "maxExecutors": 4}},
        "with dynamicAllocation enabled, instances must lie between minExecutors and maxExecutors",
    ),
    ("spark.executorWaitSeconds", 5, "spec.spark.executorWaitSeconds"),
    ("checkpoints.size", "lots", "spec.checkpoints.size"),
    ("checkpoints.accessModes", ["ReadOnlyMany"], "spec.checkpoints.accessModes[0]"),
    ("checkpoints.accessModes", [], "spec.checkpoints.accessModes"),
    ("restartPolicy.type", "Sometimes", "spec.restartPolicy.type"),
    ("restartPolicy.maxBackoffSeconds", 5, "maxBackoffSeconds must be at least backoffSeconds"),
    ("restartPolicy.maxAttempts", -1, "spec.restartPolicy.maxAttempts"),
    ("suspend", "yes", "spec.suspend"),
]


@pytest.fixture(scope="module")
def crd(control_plane):
    control_plane.apply_crd(CRD)


def apply(control_plane, namespace: str, body: dict, tmp_path: Path):
    path = tmp_path / f"cr-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(body))
    return control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)


def test_there_are_at_least_twenty_kinds_of_invalid_pipeline():
    assert len(INVALID) >= 20
    assert len({(path, str(value)) for path, value, _ in INVALID}) == len(INVALID)


@pytest.mark.parametrize(("path", "value", "words"), INVALID, ids=[f"{p}={v!r}"[:60] for p, v, _ in INVALID])
def test_invalid_pipeline_is_rejected_naming_the_field(
    control_plane, crd, namespace, tmp_path, path, value, words
):
    result = apply(control_plane, namespace, with_spec(path, value), tmp_path)
    assert result.returncode != 0, f"accepted: spec.{path}={value!r}"
    assert "is invalid" in result.stderr
    assert words in result.stderr, result.stderr


def test_base_pipeline_is_accepted_and_defaulted(control_plane, crd, namespace, tmp_path):
    result = apply(control_plane, namespace, BASE, tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(path), "-o", "yaml"
    ).stdout
    spec = yaml.safe_load(out)["spec"]
    # the API server filled in the schema's defaults
    assert spec["kafka"]["topics"]["source"] == {
        "name": "stream_data_topic",
        "partitions": 3,
        "replicationFactor": 1,
        "config": {},
    }
    assert spec["jobs"]["anomaly"]["threshold"] == 2.0 and spec["restartPolicy"]["type"] == "OnFailure"
    assert spec["spark"]["driver"] == {"cores": 2, "memory": "1g", "cpuRequest": ""}
    assert spec["spark"]["executor"] == {
        "cores": 1,
        "memory": "1g",
        "instances": 1,
        "memoryOverhead": "",
        "cpuRequest": "",
        "dynamicAllocation": {
            "enabled": False,
            "minExecutors": 1,
            "maxExecutors": 4,
            "shuffleTracking": True,
        },
    }


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_samples_are_accepted(control_plane, crd, namespace, sample):
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(sample), check=False
    )
    assert result.returncode == 0, result.stderr


def test_kubectl_explain_documents_the_fields(control_plane, crd):
    out = control_plane.kubectl("explain", "streamingpipelines.spec.jobs.anomaly.threshold").stdout
    assert "Alert when a window's max or min is more than this many" in out
    out = control_plane.kubectl(
        "explain", "streamingpipelines.spec.jobs.windowed.maxOffsetsPerTrigger"
    ).stdout
    assert "Most Kafka records one micro-batch reads" in out
    assert "spipe" in control_plane.kubectl("api-resources", "--api-group=streaming.sluice.dev").stdout
