"""The window engine's arithmetic on small hand-made frames: which windows an event falls in, how the partials of
two micro-batches merge, and what the digest of a micro-batch holds. Every expected number is worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from spark_jobs import windows
from spark_jobs.options import Duration
from spark_jobs.windows import WindowSpec

pytestmark = pytest.mark.unit

S = Duration.parse
EVENTS = "event_time timestamp, device_id string, value double, status string"
US = 1_000_000
NOON = datetime(2024, 1, 1, 12, tzinfo=UTC)
NOON_US = int(NOON.timestamp()) * US


def t(seconds: float) -> datetime:
    """12:00:00 UTC plus ``seconds``."""
    return NOON + timedelta(seconds=seconds)


def starts(rows) -> list[tuple[str, int]]:
    return sorted((r.aggregation, (r.window_start - NOON_US) // US) for r in rows)


def test_an_event_falls_in_every_window_that_holds_it_with_an_uneven_slide(spark):
    # 25 s windows every 10 s: starts ..., 0, 10, 20 (seconds after noon). An event at +22 s lies in the windows
    # starting at 0 (ends 25), 10 (ends 35) and 20 (ends 45); one at +27 s only in 10 and 20 (the window starting
    # at 0 ended at 25). A tumbling 10 s window holds each in exactly one window.
    events = spark.createDataFrame([(t(22), "d", 1.0, "N"), (t(27), "d", 2.0, "N")], EVENTS)
    specs = [
        WindowSpec("odd", "device_id", S("25s"), S("10s")),
        WindowSpec("tumbling", "device_id", S("10s")),
    ]
    rows = windows.contributions(events, specs).collect()
    by_value = {v: starts(r for r in rows if r.value == v) for v in (1.0, 2.0)}
    assert by_value[1.0] == [("odd", 0), ("odd", 10), ("odd", 20), ("tumbling", 20)]
    assert by_value[2.0] == [("odd", 10), ("odd", 20), ("tumbling", 20)]


def test_windows_are_aligned_to_the_epoch_before_it_too(spark):
    # An event 3 s before the epoch lies in the tumbling window [-10 s, 0 s): pmod, not the remainder.
    events = spark.createDataFrame([(datetime(1969, 12, 31, 23, 59, 57, tzinfo=UTC), "d", 1.0, "N")], EVENTS)
    (row,) = windows.contributions(events, [WindowSpec("tumbling", "device_id", S("10s"))]).collect()
    assert row.window_start == -10 * US


def test_partials_of_two_batches_merge_into_the_whole_windows_statistics(spark):
    # One window, values 2 4 4 4 in batch 1 and 5 5 7 9 in batch 2. Whole: n 8, mean 5, squared deviations
    # 9+1+1+1+0+0+4+16 = 32, sample stddev sqrt(32/7), min 2, max 9. Batch 1 alone: mean 3.5, M2 = 2.25+3*0.25 = 3;
    # batch 2: mean 6.5, M2 = 2.25+2.25+0.25+6.25 = 11; merged M2 = 3 + 11 + 3^2 * 4*4/8 = 32.
    spec = WindowSpec("w", "device_id", S("30s"))
    first = spark.createDataFrame([(t(1), "d", float(v), "N") for v in (2, 4, 4, 4)], EVENTS)
    second = spark.createDataFrame([(t(2), "d", float(v), "N") for v in (5, 5, 7, 9)], EVENTS)
    one = windows.partials(windows.contributions(first, [spec]), [spec])
    two = windows.partials(windows.contributions(second, [spec]), [spec])
    assert one.first().m2 == pytest.approx(3.0) and two.first().m2 == pytest.approx(11.0)
    merged = windows.merge(one.drop("max_event_time"), two).collect()
    assert [(r.n, r.sum, r.min, r.max, r.updated) for r in merged] == [(8, 40.0, 2.0, 9.0, True)]
    assert merged[0].m2 == pytest.approx(32.0, rel=1e-12)
    values = windows.window_values(spark.createDataFrame(merged))
    (value,) = values.select(
        "*", F.unix_micros("window_start").alias("s"), F.unix_micros("window_end").alias("e")
    ).collect()
    assert (value.record_count, value.avg_value, value.min_value, value.max_value) == (8, 5.0, 2.0, 9.0)
    assert value.stddev_value == pytest.approx(math.sqrt(32 / 7), rel=1e-12)
    assert (value.s, value.e) == (NOON_US, NOON_US + 30 * US)


def test_merge_keeps_windows_a_batch_did_not_touch_and_opens_new_ones(spark):
    spec = WindowSpec("w", "device_id", S("10s"))
    old = windows.partials(
        windows.contributions(spark.createDataFrame([(t(1), "a", 3.0, "N")], EVENTS), [spec]), [spec]
    )
    new = windows.partials(
        windows.contributions(spark.createDataFrame([(t(1), "b", 7.0, "N")], EVENTS), [spec]), [spec]
    )
    merged = {r.group: r for r in windows.merge(old.drop("max_event_time"), new).collect()}
    assert {g: (r.n, r.sum, r.m2, r.updated) for g, r in merged.items()} == {
        "a": (1, 3.0, 0.0, False),
        "b": (1, 7.0, 0.0, True),
    }
    (single,) = windows.window_values(spark.createDataFrame([merged["a"]])).collect()
    assert single.stddev_value is None  # one event: no sample standard deviation, as stddev_samp


def test_digest_holds_partials_and_one_row_per_record_that_is_not_an_event(spark):
    rows = spark.createDataFrame(
        [
            (t(1), "d", 1.0, "N", None, 7),
            (t(2), "d", 3.0, "N", None, 8),
            (None, None, None, None, "INVALID_JSON", 9),
            (None, None, None, None, "EMPTY_MESSAGE", 10),
        ],
        EVENTS + ", error_code string, offset long",
    )
    spec = WindowSpec("w", "device_id", S("10s"))
    digest = windows.digest(
        rows,
        [spec],
        is_event=F.col("error_code").isNull(),
        passthrough_key=F.col("offset"),
        passthrough=F.struct("error_code", "offset"),
    )
    parts = digest.withColumn("max_event_us", F.unix_micros("max_event_time")).collect()
    (window,) = [r for r in parts if r.aggregation == "w"]
    assert (window.n, window.sum, window.window_end - window.window_start) == (2, 4.0, 10 * US)
    assert window.max_event_us == NOON_US + 2 * US and window.passthrough is None
    others = sorted(
        (r.group, r.passthrough.error_code) for r in parts if r.aggregation == windows.PASSTHROUGH
    )
    assert others == [("10", "EMPTY_MESSAGE"), ("9", "INVALID_JSON")]


def test_closed_is_end_at_or_before_the_watermark(spark):
    frame = spark.createDataFrame([(10_000_000,), (10_000_001,), (None,)], "window_end long")
    flags = [r.c for r in frame.select(windows.closed(10_000).alias("c")).collect()]
    assert flags == [True, False, False]  # an all-time group (no end) never closes
