"""The lab's pipeline as the chaos tier runs it: a parsed ``StreamingPipeline`` spec with every setting the
reference depends on spelled out, its topics, its jobs' pod commands, and what the reference expects of them.

The reference (``reference.py``) computes each output from the events cut into the micro-batches a job ran; the
windows here are the spec's, written out twice on purpose (once as the spec's text, once as the reference's
numbers) so that a change to one without the other fails.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import reference as ref
from confluent_kafka import Message
from reference import Event, Windowing, seconds
from sluice_operator import commands, components
from sluice_operator.checkpoints import checkpoint_root, output_dir
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics
from sluice_operator.spec import PipelineSpec, parse_spec

from sluice_local.job_process import job_environment, local_command
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.generator.producer import run as produce

JOBS = ("basic", "windowed", "anomaly")
OUTPUT_TOPIC = {"basic": "processed", "windowed": "windowed", "anomaly": "alerts"}
"""Each job's output topic, by its role in ``spec.kafka.topics``."""
ROLES = ("source", "processed", "windowed", "alerts", "deadLetter")

BASIC = Windowing(seconds(10), seconds(5), seconds(10))
TUMBLING = Windowing(seconds(10), seconds(10), seconds(10))
SLIDING = Windowing(seconds(30), seconds(10), seconds(10))
STATUS = Windowing(seconds(60), seconds(60), seconds(10))
ANOMALY = Windowing(seconds(30), seconds(10), seconds(30))
THRESHOLD, STDDEV_FLOOR = 2.0, 1.0


def create_topics(bootstrap: str, prefix: str) -> dict[str, str]:
    """New topics for every role (the source with 3 partitions), named ``<prefix>-<role>-<random>``."""
    suffix = uuid.uuid4().hex[:8]
    topics = {role: f"{prefix}-{role}-{suffix}" for role in ROLES}
    ensure_topics(
        bootstrap,
        [DesiredTopic(topics["source"], partitions=3), *(DesiredTopic(topics[r]) for r in ROLES[1:])],
        timeout=30,
    )
    return topics


def produce_events(bootstrap: str, topic: str, start: datetime, count: int, seed: int) -> int:
    """``count`` valid events of 4 devices, 50 ms apart in event time from ``start`` (the generator, flat out);
    how many Kafka acknowledged."""
    summary = produce(
        GeneratorConfig(
            bootstrap_servers=bootstrap,
            topic=topic,
            devices=4,
            rate=0,
            count=count,
            seed=seed,
            start_time=start,
            interval_ms=50,
        ),
        handle_signals=False,
    )
    assert summary["failed"] == 0, summary
    return summary["delivered"]


def lab_spec(bootstrap: str, topics: dict[str, str], *, generator: dict, every_job: dict) -> PipelineSpec:
    """The lab's pipeline on ``topics``: the windows above (the status window 1 minute, so that some close), the
    generator's ``generator`` settings, and ``every_job`` (trigger, maxOffsetsPerTrigger) on each job."""
    return parse_spec(
        {
            "kafka": {
                "bootstrapServers": bootstrap,
                "topics": {role: {"name": n} for role, n in topics.items()},
            },
            "generator": generator,
            "monitoring": {
                "metricsPort": 0
            },  # the jobs share this machine; a test that reads them gives ports
            "jobs": {
                "basic": {"window": "10s", "slide": "5s", "watermark": "10s", **every_job},
                "windowed": {
                    "tumblingWindow": "10s",
                    "slidingWindow": "30s",
                    "slidingSlide": "10s",
                    "statusWindow": "1m",
                    "watermark": "10s",
                    **every_job,
                },
                "anomaly": {
                    "window": "30s",
                    "slide": "10s",
                    "watermark": "30s",
                    "threshold": THRESHOLD,
                    "stddevFloor": STDDEV_FLOOR,
                    **every_job,
                },
            },
        }
    )


def spawn(spec: PipelineSpec, component: str, work: Path, log: Path, *extra: str) -> subprocess.Popen:
    """Start ``component`` as its pod runs it (the operator's flags for ``spec``, state under ``work``), plus
    ``extra`` flags, in its own process group, its output in ``log`` (appended)."""
    found = components.get(component)
    args = [*commands.arguments(spec=spec, component=found, root=str(work)), *extra]
    with log.open("a") as out:
        return subprocess.Popen(
            local_command(found, args),
            env=job_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def query_dir(work: Path, job: str) -> Path:
    """Where ``job``'s streaming query keeps its checkpoint (offsets, commits, state)."""
    return Path(checkpoint_root(root=str(work), job=job, generation=0)) / job


def batch_ends(work: Path, job: str, topic: str) -> list[dict[int, int]]:
    """The end offsets (exclusive) of each committed micro-batch of ``job``, by partition, from its checkpoint's
    offset log (Spark's format: a version line, the batch's metadata, then one JSON line per source)."""
    query = query_dir(work, job)
    committed = sorted(int(p.name) for p in (query / "commits").glob("*") if p.name.isdigit())
    ends = []
    for batch in committed:
        lines = (query / "offsets" / str(batch)).read_text().splitlines()
        ends.append({int(partition): offset for partition, offset in json.loads(lines[2])[topic].items()})
    return ends


def expected_outputs(job: str, batches: Sequence[Sequence[Event]]) -> dict[str, dict[str, dict]]:
    """The reference's records of ``job`` by output topic role, for the events cut into ``batches``."""
    if job == "basic":
        return {"processed": ref.basic_records(batches, BASIC)}
    if job == "windowed":
        return {
            "windowed": {
                **ref.tumbling_records(batches, TUMBLING),
                **ref.sliding_records(batches, SLIDING),
                **ref.status_records(batches, STATUS),
            }
        }
    alerts = ref.anomaly_records(batches, ANOMALY, threshold=THRESHOLD, stddev_floor=STDDEV_FLOOR)
    return {"alerts": alerts.alerts}


def dead_letters_of(letters: Sequence[Message], job: str) -> dict[tuple[int, int], str]:
    """``job``'s dead letters: (source partition, offset) -> error code (a letter written twice counts once)."""
    found = {}
    for letter in letters:
        headers = dict(letter.headers())
        if headers["sluice.dlq.job"] == job.encode():
            position = (int(headers["sluice.dlq.source_partition"]), int(headers["sluice.dlq.source_offset"]))
            found[position] = headers["sluice.dlq.error_code"].decode()
    return found


def event_files(spark, work: Path) -> Counter:
    """The events the basic job's file sink holds (read back with Spark, honouring its log)."""
    rows = spark.read.parquet(str(Path(output_dir(root=str(work), generation=0)) / "events")).selectExpr(
        "unix_micros(event_time) AS t", "device_id", "value", "status"
    )
    return Counter(Event(r.t, r.device_id, r.value, r.status) for r in rows.collect())
