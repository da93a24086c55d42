"""Event-time semantics on a real stream: append mode emits each window once, after the watermark, and an event
arriving after its window closed does not count in it. A file source stands in for Kafka here; the transform is the job's own."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from spark_jobs import basic
from spark_jobs.options import Duration

pytestmark = pytest.mark.unit

S = Duration.parse


def at(hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2024, 1, 1, h, m, s)


def write_batch(directory, index: int, events: list[tuple[str, float]]) -> None:
    lines = [
        json.dumps({"event_time": f"2024-01-01T{hms}Z", "device_id": "d1", "value": v, "status": "Normal"})
        for hms, v in events
    ]
    (directory / f"part-{index:03d}.json").write_text("\n".join(lines) + "\n")


def run_available_now(spark, source_dir, checkpoint, collected: list) -> None:
    """Process every file not yet seen, then stop (a restart from the checkpoint each time)."""
    stream = spark.readStream.schema(
        "event_time timestamp, device_id string, value double, status string"
    ).json(str(source_dir))
    windows = basic.device_windows(stream, window=S("10s"), slide=S("10s"), watermark=S("10s"))
    query = (
        windows.writeStream.outputMode("append")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .foreachBatch(lambda batch, _id: collected.extend(batch.collect()))
        .start()
    )
    try:
        query.awaitTermination(120)
        assert query.exception() is None
    finally:
        query.stop()


def test_append_mode_emits_final_windows_once_and_drops_late_events(spark, tmp_path):
    source, checkpoint = tmp_path / "in", tmp_path / "ckpt"
    source.mkdir()
    out: list = []

    # Run 1: events up to 12:00:25. Watermark after it = 12:00:25 - 10 s = 12:00:15, so windows ending at or
    # before 12:00:15 are final: [12:00:00, 12:00:10) with 1 + 2 = 3. [12:00:10, 12:00:20) is still open.
    write_batch(source, 1, [("12:00:01", 1.0), ("12:00:05", 2.0), ("12:00:12", 10.0), ("12:00:25", 100.0)])
    run_available_now(spark, source, checkpoint, out)
    assert [(r.window_start, r.avg_value, r.record_count) for r in out] == [(at("12:00:00"), 1.5, 2)]

    # Run 2: a late event at 12:00:03 (its window closed at 12:00:10 <= watermark 12:00:15: dropped),
    # one at 12:00:16 (window [12:00:10, 12:00:20) still open: counted) and one at 12:00:45 that moves the
    # watermark to 12:00:35, closing [12:00:10, 12:00:20) and [12:00:20, 12:00:30).
    write_batch(source, 2, [("12:00:03", 1000.0), ("12:00:16", 20.0), ("12:00:45", 7.0)])
    run_available_now(spark, source, checkpoint, out)
    got = sorted((r.window_start, r.avg_value, r.record_count) for r in out)
    assert got == [
        (at("12:00:00"), 1.5, 2),  # emitted once, and without the late 1000
        (at("12:00:10"), 15.0, 2),
        (at("12:00:20"), 100.0, 1),
    ]
