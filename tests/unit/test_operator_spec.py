"""The StreamingPipeline spec: defaults, parsing errors, semantic checks, and the CRD generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sluice_operator import crd
from sluice_operator.spec import PipelineSpec, SpecError, parse_spec, semantic_problems

from spark_jobs import anomaly, basic, windowed
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import DEFAULT_TOPICS, Duration

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "k8s" / "crd" / "streamingpipelines.streaming.sluice.dev.yaml"


def test_empty_spec_takes_the_lab_defaults():
    spec = parse_spec({})
    t = spec.kafka.topics
    assert [
        t.source.name,
        t.processed.name,
        t.windowed.name,
        t.alerts.name,
        t.dead_letter.name,
    ] == DEFAULT_TOPICS.all()
    assert (t.source.partitions, t.alerts.partitions, t.source.replication_factor) == (3, 1, 1)
    assert spec.spark.mode == "local" and spec.restart_policy.type == "OnFailure" and spec.suspend is False
    assert spec.kafka.deletion_policy == "Retain" and spec.checkpoints.deletion_policy == "Retain"


def test_job_defaults_agree_with_the_jobs_own_defaults():
    spec = parse_spec(None)
    b, w, a = basic.BasicOptions(), windowed.WindowedOptions(), anomaly.AnomalyOptions()
    d = Duration.parse
    assert (d(spec.jobs.basic.window), d(spec.jobs.basic.slide), d(spec.jobs.basic.watermark)) == (
        b.window,
        b.slide,
        b.watermark,
    )
    j = spec.jobs.windowed
    assert [
        d(j.tumbling_window),
        d(j.sliding_window),
        d(j.sliding_slide),
        d(j.status_window),
        d(j.watermark),
    ] == [
        w.tumbling_window,
        w.sliding_window,
        w.sliding_slide,
        w.status_window,
        w.watermark,
    ]
    j = spec.jobs.anomaly
    assert (d(j.window), d(j.slide), d(j.watermark), j.threshold, j.stddev_floor) == (
        a.window,
        a.slide,
        a.watermark,
        a.threshold,
        a.stddev_floor,
    )
    g = GeneratorConfig()
    assert (spec.generator.devices, spec.generator.anomaly_probability) == (g.devices, g.anomaly_probability)
    assert spec.jobs.basic.output_mode == b.common.output_mode == "append"


def test_values_are_kept_and_ints_widen_to_floats():
    spec = parse_spec(
        {
            "kafka": {"bootstrapServers": "k1:9092,k2:9092", "topics": {"source": {"partitions": 6}}},
            "jobs": {"anomaly": {"threshold": 3}},
            "generator": {"seed": 7},
        }
    )
    assert spec.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert spec.kafka.topics.source.partitions == 6 and spec.kafka.topics.source.name == "stream_data_topic"
    assert spec.jobs.anomaly.threshold == 3.0 and isinstance(spec.jobs.anomaly.threshold, float)
    assert spec.generator.seed == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kafka": {"topics": {"source": {"partitions": 0}}}},
            "spec.kafka.topics.source.partitions: 0 must be at least 1",
        ),
        (
            {"kafka": {"topics": {"source": {"partitions": "3"}}}},
            "spec.kafka.topics.source.partitions: must be a whole number",
        ),
        ({"jobs": {"basic": {"window": "ten"}}}, "spec.jobs.basic.window: 'ten' does not match"),
        ({"spark": {"mode": "yarn"}}, "spec.spark.mode: 'yarn' is not one of local, standalone"),
        ({"jobs": {"anomaly": {"threshold": 0}}}, "spec.jobs.anomaly.threshold: 0.0 must be greater than 0"),
        ({"generator": {"rate": True}}, "spec.generator.rate: must be a number"),
        (
            {"kafka": {"topic": {}}},
            "spec.kafka: unknown field(s) topic; known: bootstrapServers, deletionPolicy, topics",
        ),
        (
            {"checkpoints": {"accessModes": ["ReadOnlyMany"]}},
            "spec.checkpoints.accessModes: 'ReadOnlyMany' is not one of",
        ),
        ({"spark": {"conf": {"a": 1}}}, "spec.spark.conf: must be a map of strings to strings"),
        ({"jobs": []}, "spec.jobs: must be an object"),
    ],
)
def test_parse_errors_name_the_field(spec, message):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert message in str(info.value)


def test_semantic_problems():
    assert semantic_problems(parse_spec({})) == []
    problems = semantic_problems(parse_spec({"spark": {"mode": "standalone", "conf": {"spark.master": "x"}}}))
    assert any(
        p.startswith("spec.checkpoints.existingClaim: standalone mode needs a shared (ReadWriteMany) volume")
        for p in problems
    )
    assert any(p.startswith("spec.spark.conf: spark.master are set by the operator") for p in problems)
    foreign = semantic_problems(
        parse_spec({"spark": {"conf": {"hadoop.fs.x": "1", "spark.ui.enabled": "false"}}})
    )
    assert foreign == [
        "spec.spark.conf: hadoop.fs.x are not Spark settings; every key starts with spark. (the jobs refuse others)"
    ]
    off = {"enabled": False}
    none_on = parse_spec({"generator": off, "jobs": {"basic": off, "windowed": off, "anomaly": off}})
    assert semantic_problems(none_on) == [
        "spec: the generator and every job are disabled; enable at least one component"
    ]


# --- the CRD -------------------------------------------------------------------------------------------------------


def test_committed_crd_is_the_generated_one():
    assert CRD_FILE.read_text() == crd.render(), "regenerate: python -m sluice_operator.crd > " + str(
        CRD_FILE
    )


def _walk(schema: dict, path: str):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def _spec_schema() -> dict:
    doc = yaml.safe_load(CRD_FILE.read_text())
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_crd_identity_and_every_spec_field_is_described():
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["metadata"]["name"] == "streamingpipelines.streaming.sluice.dev"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], doc["spec"]["scope"]) == (
        "StreamingPipeline",
        "streamingpipelines",
        ["spipe"],
        "Namespaced",
    )
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    # every field (map values and list items are not fields of their own)
    fields = [(p, s) for p, s in _walk(_spec_schema(), "spec") if not p.endswith((".*", "[]"))]
    assert len(fields) > 60
    undocumented = [p for p, s in fields if not s.get("description")]
    assert undocumented == []


def _defaults_from_schema(schema: dict):
    """What the API server's defaulting makes of an absent field: its own default, with the defaults of the
    fields inside it filled in where that default leaves them out."""
    default = schema.get("default")
    if schema.get("type") != "object" or "properties" not in schema:
        return default
    out = {}
    for name, sub in schema["properties"].items():
        value = _defaults_from_schema(sub)
        if value is not None:
            out[name] = value
    return {**out, **_deep_merge(out, default or {})}


def _deep_merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (
            _deep_merge(base.get(key, {}), value) if isinstance(value, dict) and key in base else value
        )
    return merged


def test_crd_defaults_agree_with_the_parser():
    defaulted = _defaults_from_schema(_spec_schema())
    # Parsing the schema's defaults explicitly gives the same spec as parsing nothing.
    assert parse_spec(defaulted) == parse_spec({}) == PipelineSpec()
    assert defaulted["kafka"]["topics"]["deadLetter"]["name"] == "dead_letter_topic"
