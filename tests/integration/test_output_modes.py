"""Append versus update mode of the windowed job on a tiny hand-made data set, end to end through Kafka.

Four events (times after 2024-03-01T00:00:00Z, 10 s watermark):

    d1 +1 s 10.0 Normal,  d1 +3 s 20.0 Normal,  d1 +12 s 30.0 Warning,  d2 +5 s 7.0 Normal

The latest event is at +12 s, so the watermark ends at +2 s: no window has closed. Append mode therefore writes
nothing; update mode writes every window with its current value.
"""

from __future__ import annotations

import json
import math

import pytest
from confluent_kafka import Producer

from sluice_local.topics import read_all
from spark_jobs import windowed
from spark_jobs.options import CommonOptions, Duration, Trigger
from spark_jobs.runner import await_queries

pytestmark = pytest.mark.integration

EVENTS = [
    ("d1", "2024-03-01T00:00:01Z", 10.0, "Normal"),
    ("d1", "2024-03-01T00:00:03Z", 20.0, "Normal"),
    ("d1", "2024-03-01T00:00:12Z", 30.0, "Warning"),
    ("d2", "2024-03-01T00:00:05Z", 7.0, "Normal"),
]


def produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for device, ts, value, status in EVENTS:
        body = {"timestamp": ts, "value": value, "device_id": device, "status": status}
        producer.produce(topic, key=device.encode(), value=json.dumps(body).encode())
    assert producer.flush(30) == 0


def run_windowed(spark, bootstrap, source, *, out, dead, tmp_path, mode: str) -> dict[str, dict]:
    opts = windowed.WindowedOptions(
        common=CommonOptions(
            bootstrap_servers=bootstrap,
            source_topic=source,
            dead_letter_topic=dead,
            checkpoint_root=str(tmp_path / mode),
            trigger=Trigger(available_now=True),
            output_mode=mode,
            console=False,
            query_prefix=f"modes-{mode}-",
            shuffle_partitions=2,
            max_event_behind=None,  # the events are dated 2024-03-01 and produced now
        ),
        windowed_topic=out,
        status_window=Duration.parse("1h"),
    )
    queries = [windowed.start(spark, opts)]
    try:
        assert await_queries(queries) is None
    finally:
        for q in queries:
            q.stop()
    latest: dict[str, dict] = {}
    for record in read_all(bootstrap, out):
        latest[record.key().decode()] = json.loads(record.value())  # upsert by key: the last value wins
    return latest


@pytest.mark.timeout(600)
def test_append_writes_nothing_before_the_watermark_and_update_writes_current_values(
    spark, kafka_broker, topic_factory, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    source = topic_factory("modes-src")
    produce(bootstrap, source)

    appended = run_windowed(
        spark,
        bootstrap,
        source,
        out=topic_factory("modes-append"),
        dead=topic_factory(),
        tmp_path=tmp_path,
        mode="append",
    )
    assert appended == {}

    latest = run_windowed(
        spark,
        bootstrap,
        source,
        out=topic_factory("modes-update"),
        dead=topic_factory(),
        tmp_path=tmp_path,
        mode="update",
    )
    tumbling = {k: v for k, v in latest.items() if v["aggregation"] == "tumbling"}
    assert {
        k: (v["avg_value"], v["max_value"], v["min_value"], v["record_count"]) for k, v in tumbling.items()
    } == {
        "tumbling|d1|2024-03-01T00:00:00.000Z": (15.0, 20.0, 10.0, 2),
        "tumbling|d1|2024-03-01T00:00:10.000Z": (30.0, 30.0, 30.0, 1),
        "tumbling|d2|2024-03-01T00:00:00.000Z": (7.0, 7.0, 7.0, 1),
    }
    assert tumbling["tumbling|d1|2024-03-01T00:00:10.000Z"]["window_end"] == "2024-03-01T00:00:20.000Z"

    # 30 s windows sliding 10 s: +1 s and +3 s lie in the windows starting -20 s, -10 s, 0 s; +12 s in -10 s, 0 s,
    # +10 s. Sample stddev of {10, 20} = sqrt(50) and of {10, 20, 30} = 10.
    sliding = {k: v for k, v in latest.items() if v["aggregation"] == "sliding"}
    expected_sliding = {
        "sliding|d1|2024-02-29T23:59:40.000Z": (15.0, math.sqrt(50), 2),
        "sliding|d1|2024-02-29T23:59:50.000Z": (20.0, 10.0, 3),
        "sliding|d1|2024-03-01T00:00:00.000Z": (20.0, 10.0, 3),
        "sliding|d1|2024-03-01T00:00:10.000Z": (30.0, None, 1),
        "sliding|d2|2024-02-29T23:59:40.000Z": (7.0, None, 1),
        "sliding|d2|2024-02-29T23:59:50.000Z": (7.0, None, 1),
        "sliding|d2|2024-03-01T00:00:00.000Z": (7.0, None, 1),
    }
    assert sliding.keys() == expected_sliding.keys()
    for key, (avg, std, count) in expected_sliding.items():
        got = sliding[key]
        assert got["avg_value"] == pytest.approx(avg, rel=1e-12) and got["record_count"] == count
        assert got["stddev_value"] == (None if std is None else pytest.approx(std, rel=1e-12))

    status = {k: v["record_count"] for k, v in latest.items() if v["aggregation"] == "status"}
    assert status == {
        "status|Normal|2024-03-01T00:00:00.000Z": 3,
        "status|Warning|2024-03-01T00:00:00.000Z": 1,
    }
