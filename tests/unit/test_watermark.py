"""Event-time semantics on a real stream: append mode emits each window once, after the watermark, and an event
arriving after its window closed does not count in it. A file source of Kafka-shaped records stands in for Kafka,
and a list stands in for the Kafka writer; everything between is the jobs' own micro-batch handler."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from spark_jobs import basic, micro_batch
from spark_jobs.options import CommonOptions, Duration, Trigger

pytestmark = pytest.mark.unit

S = Duration.parse


def at(hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2024, 1, 1, h, m, s)


def write_batch(directory, index: int, events: list[tuple[str, float]]) -> None:
    lines = [
        json.dumps(
            {
                "value": json.dumps(
                    {"timestamp": f"2024-01-01T{hms}Z", "value": v, "device_id": "d1", "status": "Normal"}
                ),
                "offset": index * 100 + i,
            }
        )
        for i, (hms, v) in enumerate(events)
    ]
    (directory / f"part-{index:03d}.json").write_text("\n".join(lines) + "\n")


def kafka_shaped(spark, source_dir):
    """The files as Kafka records: the fields Spark's Kafka source gives, the payload in ``value``."""
    stream = spark.readStream.schema("value string, offset long").json(str(source_dir))
    return stream.select(
        F.lit(None).cast("binary").alias("key"),
        F.col("value").cast("binary").alias("value"),
        F.lit("events").alias("topic"),
        F.lit(0).alias("partition"),
        "offset",
        F.timestamp_micros(F.lit(0)).alias("timestamp"),
    )


def run_available_now(spark, source_dir, checkpoint, collected: list) -> None:
    """Process every file not yet seen, then stop (a restart from the checkpoint each time)."""
    opts = basic.BasicOptions(
        common=CommonOptions(checkpoint_root=str(checkpoint), trigger=Trigger(available_now=True)),
        window=S("10s"),
        slide=S("10s"),
        watermark=S("10s"),
        output_dir=str(checkpoint / "out"),
    )

    def write(records, _opts) -> None:
        rows = records.where(F.col("topic") == opts.processed_topic).select(F.col("value").cast("string"))
        collected.extend(json.loads(r.value) for r in rows.collect())

    query = micro_batch.start(
        spark, basic.plan(opts), opts.common, source=kafka_shaped(spark, source_dir), write=write
    )
    try:
        query.awaitTermination(120)
        assert query.exception() is None
    finally:
        query.stop()


def windows_of(records: list[dict]) -> list[tuple[str, float, int]]:
    return [(r["window_start"], r["avg_value"], r["record_count"]) for r in records]


def test_append_mode_emits_final_windows_once_and_drops_late_events(spark, tmp_path):
    source, checkpoint = tmp_path / "in", tmp_path / "ckpt"
    source.mkdir()
    out: list = []

    # Run 1: events up to 12:00:25. Watermark after it = 12:00:25 - 10 s = 12:00:15, so windows ending at or
    # before 12:00:15 are final: [12:00:00, 12:00:10) with 1 + 2 = 3. [12:00:10, 12:00:20) is still open.
    write_batch(source, 1, [("12:00:01", 1.0), ("12:00:05", 2.0), ("12:00:12", 10.0), ("12:00:25", 100.0)])
    run_available_now(spark, source, checkpoint, out)
    assert windows_of(out) == [("2024-01-01T12:00:00.000Z", 1.5, 2)]

    # Run 2: a late event at 12:00:03 (its window closed at 12:00:10 <= watermark 12:00:15: dropped),
    # one at 12:00:16 (window [12:00:10, 12:00:20) still open: counted) and one at 12:00:45 that moves the
    # watermark to 12:00:35, closing [12:00:10, 12:00:20) and [12:00:20, 12:00:30).
    write_batch(source, 2, [("12:00:03", 1000.0), ("12:00:16", 20.0), ("12:00:45", 7.0)])
    run_available_now(spark, source, checkpoint, out)
    assert sorted(windows_of(out)) == [
        ("2024-01-01T12:00:00.000Z", 1.5, 2),  # emitted once, and without the late 1000
        ("2024-01-01T12:00:10.000Z", 15.0, 2),
        ("2024-01-01T12:00:20.000Z", 100.0, 1),
    ]
