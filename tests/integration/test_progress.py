"""What a job reports of its progress, on the real broker: its processed offsets in a consumer group, as Kafka's
own ``kafka-consumer-groups.sh`` shows them, with the metadata the operator reads; and its Prometheus metrics,
counted against what the generator produced and an independent parse of the records."""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import reference as ref
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from sluice_operator import kafka_admin
from sluice_operator.progress import read_metadata

from sluice_local.artifacts import KAFKA_DIST, require_java, resolve
from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import read_all
from spark_jobs import windowed
from spark_jobs.generator import producer
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import CommonOptions, Duration, Trigger
from spark_jobs.runner import await_queries
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.integration

EVENTS = {"count": 2_000, "devices": 5, "interval_ms": 50, "seed": 23, "malformed_fraction": 0.05}
PARTITIONS = 3


def consumer_groups_describe(bootstrap: str, group: str) -> list[dict[str, str]]:
    """``kafka-consumer-groups.sh --describe --group`` (its class, from the pinned Kafka jars): one row per
    partition, keyed by the tool's own column names."""
    classpath = ":".join(str(jar) for jar in resolve(KAFKA_DIST))
    command = [
        require_java(17),
        "-Xmx256m",
        "-cp",
        classpath,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
    header = next(i for i, cells in enumerate(lines) if cells[:2] == ["GROUP", "TOPIC"])
    names = lines[header]
    return [dict(zip(names, cells, strict=False)) for cells in lines[header + 1 :] if cells[0] == group]


def committed_metadata(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    return {tp.partition: (tp.offset, tp.metadata) for tp in result.topic_partitions}


def sample(registry, name: str) -> float:
    value = registry.get_sample_value(name, {"component": "windowed"})
    assert value is not None, f"{name} is not exported"
    return value


def test_a_drained_job_shows_lag_0_to_kafkas_tool_and_counts_every_record(
    spark, kafka_broker: KafkaBroker, topic_factory, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    source = topic_factory("progress-source", partitions=PARTITIONS)
    summary = producer.run(
        GeneratorConfig(bootstrap_servers=bootstrap, topic=source, rate=0, **EVENTS),
        handle_signals=False,
        err=io.StringIO(),
    )
    produced = summary["delivered"]
    assert summary["failed"] == 0 and produced == EVENTS["count"]
    # The independent count of what the job must dead-letter: the reference parser over the records as stored.
    invalid = sum(
        1 for m in read_all(bootstrap, source, timeout=60) if ref.parse_record(m.value()).event is None
    )
    assert invalid > 0

    group = f"sluice.test.{uuid.uuid4().hex[:8]}.windowed"
    options = WindowedOptions(
        common=CommonOptions(
            bootstrap_servers=bootstrap,
            source_topic=source,
            dead_letter_topic=topic_factory("progress-dlq"),
            checkpoint_root=str(tmp_path / "ckpt"),
            trigger=Trigger(available_now=True),
            max_offsets_per_trigger=700,  # several micro-batches, each committed to the group
            shuffle_partitions=2,
            max_event_behind=None,  # the generator's events are dated in the past
            query_prefix=f"p{uuid.uuid4().hex[:8]}-",
            consumer_group=group,
        ),
        status_window=Duration.parse("20s"),
        windowed_topic=topic_factory("progress-out"),
    )
    started = time.time()
    query = windowed.start(spark, options)
    try:
        assert await_queries([query]) is None
    finally:
        query.stop()
    batches = [r.batch_id for r in query.handler.reports]
    assert len(batches) >= 3, batches

    # The group is committed to after Spark reports each batch (its listener bus runs behind the query).
    deadline = time.monotonic() + 60
    while True:
        rows = consumer_groups_describe(bootstrap, group)
        if (len(rows) == PARTITIONS and all(r["LAG"] == "0" for r in rows)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(int(r["PARTITION"]) for r in rows) == list(range(PARTITIONS)), rows
    assert all(
        r["TOPIC"] == source and r["LAG"] == "0" and r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"] for r in rows
    ), rows
    assert sum(int(r["CURRENT-OFFSET"]) for r in rows) == produced

    # The metadata the operator reads: the last batch, and the watermark the job's last batch left.
    last = query.handler.reports[-1]
    committed = committed_metadata(bootstrap, group, source)
    assert sum(offset for offset, _ in committed.values()) == produced
    for _, metadata in committed.values():
        commit = read_metadata(metadata)
        assert commit is not None, metadata
        assert commit.batch_id == last.batch_id
        assert commit.watermark is not None
        assert round(commit.watermark.timestamp() * 1000) == last.watermark_after_ms

    # What the operator reads of it (its AdminClient, no path to the job): nothing behind, the last batch.
    reading = kafka_admin.read_progress(bootstrap, source, [group], now=datetime.now(UTC), timeout=30)[group]
    assert reading.lag == 0 and sum(reading.end.values()) == produced
    assert reading.commit is not None and reading.commit.batch_id == last.batch_id
    unknown = f"sluice.test.{uuid.uuid4().hex[:8]}.never"
    never = kafka_admin.read_progress(bootstrap, source, [unknown], now=datetime.now(UTC), timeout=30)[
        unknown
    ]
    assert (never.committed, never.commit, never.lag) == ({}, None, produced)

    # Started again on its checkpoint with a group that has never seen it (a pipeline upgraded to name one) and no
    # new input: it reports its position before any micro-batch, so the operator does not see it as behind.
    fresh_group = f"sluice.test.{uuid.uuid4().hex[:8]}.windowed"
    again = windowed.start(
        spark, replace(options, common=replace(options.common, consumer_group=fresh_group))
    )
    try:
        assert await_queries([again]) is None
    finally:
        again.stop()
    resumed = kafka_admin.read_progress(bootstrap, source, [fresh_group], now=datetime.now(UTC), timeout=30)[
        fresh_group
    ]
    assert resumed.lag == 0 and resumed.commit is not None and resumed.commit.batch_id == last.batch_id
    assert started <= resumed.commit.at.timestamp() <= time.time()  # when Spark committed that batch

    registry = query.reporter.metrics.registry
    assert sample(registry, "sluice_job_input_rows_total") == produced
    assert sample(registry, "sluice_job_dead_letters_total") == invalid
    assert sample(registry, "sluice_job_batches_total") == len(batches)
    assert sample(registry, "sluice_job_records_behind") == 0
    assert sample(registry, "sluice_job_watermark_timestamp_seconds") == last.watermark_after_ms / 1000
    # The open windows as the last snapshot on disk holds them (read here, not counted by the job).
    snapshot = tmp_path / "ckpt" / "windowed" / "windows" / str(last.batch_id)
    open_windows = spark.read.parquet(str(snapshot)).count()
    assert open_windows > 0
    assert sample(registry, "sluice_job_state_windows") == open_windows
    # Its files, without the checksums Hadoop's local file system keeps beside each (.<name>.crc).
    on_disk = sum(f.stat().st_size for f in snapshot.rglob("*") if f.is_file() and f.suffix != ".crc")
    assert sample(registry, "sluice_job_state_bytes") == on_disk
    assert (
        sum(
            registry.get_sample_value(
                "sluice_job_source_processed_offset", {"component": "windowed", "partition": str(p)}
            )
            for p in range(PARTITIONS)
        )
        == produced
    )
    assert started <= sample(registry, "sluice_job_last_batch_timestamp_seconds") <= time.time()
