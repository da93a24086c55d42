"""The jobs' pure transforms on small hand-made DataFrames; every expected number is worked out by hand below."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from spark_jobs import anomaly, basic, windowed, windows
from spark_jobs.options import Duration
from spark_jobs.windows import WindowSpec

pytestmark = pytest.mark.unit

EVENTS_SCHEMA = "event_time timestamp, device_id string, value double, status string"
S = Duration.parse


def t(hms: str, micros: int = 0) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2024, 1, 1, h, m, s, micros)


def frame(spark, rows):
    return spark.createDataFrame(rows, EVENTS_SCHEMA)


def over(df, spec: WindowSpec, transform):
    """``transform`` of every window of ``spec`` over ``df`` (a bounded frame: every window, no watermark)."""
    return transform(windows.aggregate(df, [spec]), spec)


def by_window(rows, *fields):
    return {(r.window_start, r.window_end, r.device_id): tuple(getattr(r, f) for f in fields) for r in rows}


# --- basic: 10 s windows sliding every 5 s ---------------------------------------------------------------------


def test_basic_sliding_windows_overlap_and_boundaries(spark):
    # Each event belongs to the two windows [k*5, k*5+10) that contain it:
    #   12:00:01 (10) and 12:00:04 (20) -> [11:59:55, 12:00:05) and [12:00:00, 12:00:10)
    #   12:00:07 (30)                   -> [12:00:00, 12:00:10) and [12:00:05, 12:00:15)
    #   12:00:10 (40), on a boundary    -> [12:00:05, 12:00:15) and [12:00:10, 12:00:20), not [12:00:00, 12:00:10)
    df = frame(
        spark,
        [
            (t("12:00:01"), "d1", 10.0, "Normal"),
            (t("12:00:04"), "d1", 20.0, "Normal"),
            (t("12:00:07"), "d1", 30.0, "Warning"),
            (t("12:00:10"), "d1", 40.0, "Normal"),
            (t("12:00:02"), "d2", 5.0, "Normal"),
        ],
    )
    spec = WindowSpec("device_windows", "device_id", S("10s"), S("5s"))
    rows = over(df, spec, basic.device_windows).collect()
    assert by_window(rows, "avg_value", "record_count") == {
        (t("11:59:55"), t("12:00:05"), "d1"): (15.0, 2),
        (t("12:00:00"), t("12:00:10"), "d1"): (20.0, 3),
        (t("12:00:05"), t("12:00:15"), "d1"): (35.0, 2),
        (t("12:00:10"), t("12:00:20"), "d1"): (40.0, 1),
        (t("11:59:55"), t("12:00:05"), "d2"): (5.0, 1),
        (t("12:00:00"), t("12:00:10"), "d2"): (5.0, 1),
    }
    assert rows[0].asDict().keys() == {"window_start", "window_end", "device_id", "avg_value", "record_count"}


def test_basic_status_counts(spark):
    df = frame(
        spark,
        [(t("12:00:00"), "d1", 1.0, s) for s in ["Normal", "Normal", "Error", "Normal", "Warning", "Error"]],
    )
    got = {
        r.status: r.record_count
        for r in over(df, WindowSpec("status_counts", "status", None), basic.status_counts).collect()
    }
    assert got == {"Normal": 3, "Error": 2, "Warning": 1}


# --- windowed ------------------------------------------------------------------------------------------------------


def test_tumbling_avg_min_max_count_and_half_open_windows(spark):
    df = frame(
        spark,
        [
            (t("12:00:00"), "d1", 5.0, "Normal"),
            (t("12:00:09", 999_000), "d1", 15.0, "Normal"),  # last millisecond of [12:00:00, 12:00:10)
            (t("12:00:10"), "d1", 100.0, "Danger"),  # first instant of the next window
        ],
    )
    rows = over(df, WindowSpec("tumbling", "device_id", S("10s")), windowed.tumbling).collect()
    assert {r.aggregation for r in rows} == {"tumbling"}
    assert by_window(rows, "avg_value", "max_value", "min_value", "record_count") == {
        (t("12:00:00"), t("12:00:10"), "d1"): (10.0, 15.0, 5.0, 2),
        (t("12:00:10"), t("12:00:20"), "d1"): (100.0, 100.0, 100.0, 1),
    }


def test_sliding_stddev_is_the_sample_stddev(spark):
    # values 2 4 4 4 5 5 7 9: mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, sample variance 32/7.
    values = [2, 4, 4, 4, 5, 5, 7, 9]
    df = frame(spark, [(t("12:00:11"), "d1", float(v), "Normal") for v in values])
    rows = over(df, WindowSpec("sliding", "device_id", S("30s"), S("10s")), windowed.sliding).collect()
    # 12:00:11 lies in [11:59:50, 12:00:20), [12:00:00, 12:00:30) and [12:00:10, 12:00:40)
    assert sorted(r.window_start for r in rows) == [t("11:59:50"), t("12:00:00"), t("12:00:10")]
    for r in rows:
        assert r.aggregation == "sliding"
        assert r.avg_value == 5.0 and r.record_count == 8
        assert r.stddev_value == pytest.approx(math.sqrt(32 / 7), rel=1e-12)


def test_sliding_stddev_of_a_single_event_is_null(spark):
    rows = over(
        frame(spark, [(t("12:00:00"), "d1", 3.0, "Normal")]),
        WindowSpec("sliding", "device_id", S("30s"), S("10s")),
        windowed.sliding,
    ).collect()
    assert [r.stddev_value for r in rows] == [None, None, None]


def test_hourly_counts_by_status(spark):
    df = frame(
        spark,
        [
            (t("12:00:00"), "d1", 1.0, "Normal"),
            (t("12:59:59"), "d2", 1.0, "Normal"),
            (t("12:30:00"), "d3", 1.0, "Error"),
            (t("13:00:00"), "d1", 1.0, "Normal"),
        ],
    )
    rows = over(df, WindowSpec("status", "status", S("1h")), windowed.status_counts).collect()
    got = {(r.window_start, r.window_end, r.status): r.record_count for r in rows}
    assert got == {
        (t("12:00:00"), t("13:00:00"), "Normal"): 2,
        (t("12:00:00"), t("13:00:00"), "Error"): 1,
        (t("13:00:00"), t("14:00:00"), "Normal"): 1,
    }
    assert {r.aggregation for r in rows} == {"status"}


# --- anomaly -------------------------------------------------------------------------------------------------------


def stats_frame(spark, rows):
    schema = (
        "window_start timestamp, window_end timestamp, device_id string, record_count long, avg_value double, "
        "stddev_value double, min_value double, max_value double"
    )
    return spark.createDataFrame(rows, schema)


def test_window_stats_and_high_value_z_score(spark):
    # nine 10s and one 100 in one 30 s window: mean 19, squared deviations 9*81 + 81^2 = 7290,
    # sample variance 7290/9 = 810, sigma = sqrt(810) = 28.4605, z_high = 81/sqrt(810) = 2.8460 > 2.
    rows = [(t(f"12:00:{i + 1:02d}"), "d1", 10.0, "Normal") for i in range(9)]
    rows.append((t("12:00:05"), "d1", 100.0, "Danger"))
    stats = over(frame(spark, rows), WindowSpec("stats", "device_id", S("30s")), anomaly.window_stats)
    (alert,) = anomaly.alerts(stats, threshold=2.0, stddev_floor=1.0).collect()
    assert alert.anomaly_type == "HIGH_VALUE"
    assert alert.anomaly_score == pytest.approx(81 / math.sqrt(810), rel=1e-12)
    assert (alert.window_start, alert.window_end) == (t("12:00:00"), t("12:00:30"))
    assert (alert.record_count, alert.avg_value, alert.min_value, alert.max_value) == (10, 19.0, 10.0, 100.0)
    assert alert.stddev_value == pytest.approx(math.sqrt(810), rel=1e-12)
    assert alert.threshold == 2.0
    assert isinstance(alert.record_count, int) and isinstance(alert.anomaly_score, float)


def test_low_value_z_score_is_negative(spark):
    # nine 100s and one 10: mean 91, the same sigma sqrt(810); z_low = (10 - 91)/sqrt(810) = -2.8460.
    rows = [(t(f"12:00:{i + 1:02d}"), "d1", 100.0, "Normal") for i in range(9)]
    rows.append((t("12:00:05"), "d1", 10.0, "Normal"))
    stats = over(frame(spark, rows), WindowSpec("stats", "device_id", S("30s")), anomaly.window_stats)
    (alert,) = anomaly.alerts(stats, threshold=2.0, stddev_floor=1.0).collect()
    assert alert.anomaly_type == "LOW_VALUE"
    assert alert.anomaly_score == pytest.approx(-81 / math.sqrt(810), rel=1e-12)


def test_no_alert_below_threshold(spark):
    # four 10s and one 100: mean 28, squared deviations 4*324 + 72^2 = 6480, variance 1620,
    # z_high = 72/sqrt(1620) = 1.7889: an alert at threshold 1.5, none at 2.0.
    rows = [(t(f"12:00:0{i}"), "d1", 10.0, "Normal") for i in range(1, 5)] + [
        (t("12:00:06"), "d1", 100.0, "x")
    ]
    stats = over(frame(spark, rows), WindowSpec("stats", "device_id", S("30s")), anomaly.window_stats)
    assert anomaly.alerts(stats, threshold=2.0, stddev_floor=1.0).collect() == []
    (alert,) = anomaly.alerts(stats, threshold=1.5, stddev_floor=1.0).collect()
    assert alert.anomaly_score == pytest.approx(72 / math.sqrt(1620), rel=1e-12)


def test_sigma_floor_for_null_and_zero_stddev(spark):
    w0, w1 = t("12:00:00"), t("12:00:30")
    stats = stats_frame(
        spark,
        [
            # a one-event window: sigma null -> floor; max == mean so z = 0, never an alert, never NaN
            (w0, w1, "single", 1, 50.0, None, 50.0, 50.0),
            # sigma 0 with max 3 above the mean (constructed): z = 3 / floor(1.0) = 3 > 2
            (w0, w1, "zero", 4, 10.0, 0.0, 10.0, 13.0),
            # a positive sigma is used as it is: z = 3 / 0.5 = 6
            (w0, w1, "small", 4, 10.0, 0.5, 10.0, 13.0),
        ],
    )
    scored = {r.device_id: r for r in anomaly.score_windows(stats, threshold=2.0, stddev_floor=1.0).collect()}
    assert (scored["single"].z_high, scored["single"].z_low, scored["single"].anomaly_type) == (
        0.0,
        0.0,
        None,
    )
    assert (scored["zero"].anomaly_type, scored["zero"].anomaly_score) == ("HIGH_VALUE", 3.0)
    assert scored["small"].anomaly_score == 6.0
    # a different floor changes the score of the zero-sigma window only: 3 / 2.0 = 1.5, below the threshold
    refloored = {
        r.device_id: r for r in anomaly.score_windows(stats, threshold=2.0, stddev_floor=2.0).collect()
    }
    assert (refloored["zero"].z_high, refloored["zero"].anomaly_type) == (1.5, None)
    assert refloored["small"].anomaly_score == 6.0


def test_when_both_sides_breach_the_larger_magnitude_wins(spark):
    w0, w1 = t("12:00:00"), t("12:00:30")
    stats = stats_frame(
        spark,
        [
            (w0, w1, "high", 10, 0.0, 1.0, -3.0, 4.0),  # z_high 4, z_low -3 -> HIGH 4
            (w0, w1, "low", 10, 0.0, 1.0, -5.0, 4.0),  # z_high 4, z_low -5 -> LOW -5
            (w0, w1, "tie", 10, 0.0, 1.0, -4.0, 4.0),  # tie -> HIGH 4
        ],
    )
    got = {
        r.device_id: (r.anomaly_type, r.anomaly_score)
        for r in anomaly.alerts(stats, threshold=2.0, stddev_floor=1.0).collect()
    }
    assert got == {"high": ("HIGH_VALUE", 4.0), "low": ("LOW_VALUE", -5.0), "tie": ("HIGH_VALUE", 4.0)}
