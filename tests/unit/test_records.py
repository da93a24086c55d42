"""Kafka output records: upsert keys and JSON values with ISO-8601 UTC times."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from spark_jobs.records import to_kafka_records

pytestmark = pytest.mark.unit


def test_key_and_value_encoding(spark):
    df = spark.createDataFrame(
        [
            (
                "sliding",
                datetime(2024, 1, 1, 12, 0, 0),
                datetime(2024, 1, 1, 12, 0, 30),
                "device_007",
                12.5,
                None,
                3,
            )
        ],
        "aggregation string, window_start timestamp, window_end timestamp, device_id string, avg_value double, "
        "stddev_value double, record_count long",
    )
    (rec,) = to_kafka_records(df, key=["aggregation", "device_id", "window_start"]).collect()
    assert rec.key == "sliding|device_007|2024-01-01T12:00:00.000Z"
    assert json.loads(rec.value) == {
        "aggregation": "sliding",
        "window_start": "2024-01-01T12:00:00.000Z",
        "window_end": "2024-01-01T12:00:30.000Z",
        "device_id": "device_007",
        "avg_value": 12.5,
        "stddev_value": None,  # null fields are kept, so every record has the same fields
        "record_count": 3,
    }


def test_console_table_is_one_block_with_rounded_floats_and_utc_times():
    from spark_jobs.sinks import format_table

    rows = [
        ("d1", 12.3456, datetime(2024, 1, 1, 12, 0, 0)),
        ("device_10", None, datetime(2024, 1, 1, 12, 0, 0, 500)),
    ]
    text = format_table(
        "basic / w: batch 3, 5 rows", ["device_id", "avg_value", "window_start"], rows, total=5
    )
    assert text.splitlines() == [
        "== basic / w: batch 3, 5 rows",
        "device_id  avg_value  window_start               ",
        "d1         12.35      2024-01-01T12:00:00Z       ",
        "device_10             2024-01-01T12:00:00.000500Z",
        "... 3 more",
    ]
