"""The component registry: one declaration of the generator and the jobs, matching the spec and the programs, and
the only place that lists them."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import fields
from pathlib import Path

import pytest
from sluice_operator import commands, components
from sluice_operator.spec import Jobs, PipelineSpec, Topics, parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "spark_jobs", ROOT / "sluice_local", ROOT / "operator" / "sluice_operator"]


def test_every_job_of_the_spec_is_declared_once_and_every_declared_part_exists() -> None:
    paths = {c.settings_path for c in components.COMPONENTS}
    assert len(paths) == len(components.COMPONENTS)
    assert {f"jobs.{f.name}" for f in fields(Jobs)} == {c.settings_path for c in components.JOBS}
    spec = PipelineSpec()
    for component in components.COMPONENTS:
        assert hasattr(component.settings(spec), "enabled"), component.name
        assert importlib.util.find_spec(component.module) is not None, component.module
        for topic in (*component.topics, *component.outputs):
            assert topic.role in {f.name for f in fields(Topics)}, (component.name, topic.role)


def test_stateful_components_are_the_jobs_and_every_job_writes_somewhere() -> None:
    assert components.names(components.JOBS) == ("basic", "windowed", "anomaly")
    assert components.names() == ("generator", "basic", "windowed", "anomaly")
    for job in components.JOBS:
        assert job.spark and job.outputs, job.name


def test_anomaly_flags_written_out_by_hand() -> None:
    spec = parse_spec(
        {
            "kafka": {"bootstrapServers": "k:9092", "topics": {"alerts": {"name": "al"}}},
            "jobs": {"anomaly": {"threshold": 3, "maxOffsetsPerTrigger": 500, "outputMode": "update"}},
            "spark": {"driver": {"cores": 3, "memory": "2g"}, "conf": {"spark.x.y": "z"}},
        }
    )
    args = commands.arguments(
        spec=spec,
        component=components.get("anomaly"),
        generation=2,
        root="/s",
        consumer_group="sluice.ns.p.anomaly",
    )
    assert args == [
        "--bootstrap-servers", "k:9092",
        "--source-topic", "stream_data_topic", "--dead-letter-topic", "dead_letter_topic",
        "--checkpoint-root", "/s/checkpoints/anomaly/g2",
        "--previous-checkpoint-root", "/s/checkpoints/anomaly/g1",
        "--trigger", "5s", "--output-mode", "update",
        "--master", "local[3]", "--shuffle-partitions", "3",
        "--max-offsets-per-trigger", "500",
        "--max-event-ahead", "1h", "--max-event-behind", "168h",
        "--max-record-bytes", "65536", "--max-field-length", "256", "--fail-on-data-loss",
        "--dead-letter-max-bytes", "1048576", "--consumer-group", "sluice.ns.p.anomaly",
        "--spark-conf", "spark.driver.memory=2g", "--spark-conf", "spark.x.y=z",
        "--window", "30s", "--slide", "10s", "--watermark", "30s", "--threshold", "3.0", "--stddev-floor", "1.0",
        "--metrics-port", "9400",
        "--alerts-topic", "al",
    ]  # fmt: skip


def test_generator_flags_written_out_by_hand() -> None:
    spec = parse_spec({"generator": {"rate": 50, "seed": 7}})
    assert commands.arguments(spec=spec, component=components.get("generator")) == [
        "--bootstrap-servers", "sluice-kafka:9092", "--topic", "stream_data_topic",
        "--devices", "10", "--rate", "50.0", "--anomaly-probability", "0.1",
        "--malformed-fraction", "0.0", "--late-fraction", "0.0", "--seed", "7",
    ]  # fmt: skip


def _name_lists(path: Path, names: set[str]) -> list[str]:
    """Literal tuples, lists, sets and dict keys in ``path`` holding two or more component names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        literal = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
        if len(literal & names) >= 2:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(literal & names)}")
    return found


def test_no_list_of_components_outside_the_registry() -> None:
    names = set(components.names())
    registry = Path(components.__file__).resolve()
    stray = [
        hit
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
        if path.resolve() != registry
        for hit in _name_lists(path, names)
    ]
    assert not stray, "list the components through sluice_operator.components instead:\n" + "\n".join(stray)


def test_the_stray_list_check_finds_a_list(tmp_path: Path) -> None:
    sample = ROOT / "tests" / "unit" / "test_golden_pods.py"  # lists the components on purpose
    assert _name_lists(sample, set(components.names()))


def test_a_fresh_checkpoint_resumes_from_the_previous_generation_unless_the_spec_asks_for_a_replay() -> None:
    def flags(generation: int, **checkpoints: str) -> list[str]:
        spec = parse_spec({"checkpoints": checkpoints})
        args = commands.arguments(
            spec=spec, component=components.get("basic"), generation=generation, root="/s"
        )
        return [a for a in args if "checkpoints/basic" in a]

    assert flags(0) == ["/s/checkpoints/basic/g0"]
    assert flags(1) == ["/s/checkpoints/basic/g1", "/s/checkpoints/basic/g0"]
    assert flags(1, onReset="Replay") == ["/s/checkpoints/basic/g1"]
