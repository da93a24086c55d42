"""Flag parsing and validation: defaults are the lab's, and every bad value is refused with a message naming the
flag and what is accepted."""

from __future__ import annotations

import pytest

from spark_jobs import anomaly, basic, windowed
from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.basic import BasicOptions
from spark_jobs.options import DEFAULT_TOPICS, Duration, OptionsError, Trigger, parse_options
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "millis"),
    [("10s", 10_000), ("30 seconds", 30_000), ("1h", 3_600_000), ("500ms", 500), ("5m", 300_000), ("0s", 0)],
)
def test_durations(text, millis):
    assert Duration.parse(text).millis == millis


@pytest.mark.parametrize("text", ["10", "ten seconds", "-5s", "1.5s", "10 fortnights", ""])
def test_bad_durations_name_the_flag_and_the_forms(text):
    with pytest.raises(OptionsError, match=r"--window: .* is not a duration; .*10s"):
        Duration.parse(text, flag="--window")


def test_spark_interval_strings():
    assert Duration(10_000).spark() == "10 seconds"
    assert Duration(1500).spark() == "1500 milliseconds"
    assert (str(Duration(3_600_000)), str(Duration(90_000)), str(Duration(1500))) == ("1h", "90s", "1500ms")


def test_triggers():
    assert Trigger.parse("available-now").spark_kwargs() == {"availableNow": True}
    assert Trigger.parse("2s").spark_kwargs() == {"processingTime": "2 seconds"}
    with pytest.raises(OptionsError, match="--trigger: 'soon' is not a trigger; use 'available-now'"):
        Trigger.parse("soon")


def test_lab_defaults():
    b = parse_options(BasicOptions, [])
    assert (b.window, b.slide, b.watermark) == (Duration(10_000), Duration(5_000), Duration(10_000))
    assert b.processed_topic == "processed_data_topic" and b.common.source_topic == "stream_data_topic"
    w = parse_options(WindowedOptions, [])
    assert (w.tumbling_window, w.sliding_window, w.sliding_slide, w.status_window) == (
        Duration(10_000),
        Duration(30_000),
        Duration(10_000),
        Duration(3_600_000),
    )
    assert w.windowed_topic == "windowed_results_topic"
    a = parse_options(AnomalyOptions, [])
    assert (a.window, a.slide, a.watermark, a.threshold, a.stddev_floor) == (
        Duration(30_000),
        Duration(10_000),
        Duration(30_000),
        2.0,
        1.0,
    )
    assert a.alerts_topic == "anomaly_alerts_topic"
    assert a.common.output_mode == "append" and a.common.dead_letter_topic == DEFAULT_TOPICS.dead_letter
    assert DEFAULT_TOPICS.all() == [
        "stream_data_topic",
        "processed_data_topic",
        "windowed_results_topic",
        "anomaly_alerts_topic",
        "dead_letter_topic",
    ]


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        (
            basic,
            ["--slide", "20s"],
            "--window/--slide: the slide (20s) must not be longer than the window (10s)",
        ),
        (basic, ["--window", "0s"], "--window/--slide: the window must be longer than 0"),
        (basic, ["--file-format", "csv"], "--file-format: 'csv' is not one of parquet, json"),
        (basic, ["--output-mode", "complete"], "--output-mode: 'complete' is not one of append, update"),
        (
            basic,
            ["--processed-topic", "bad topic!"],
            "--processed-topic: 'bad topic!' is not a valid Kafka topic",
        ),
        (
            windowed,
            ["--sliding-slide", "1m"],
            "--sliding-window/--sliding-slide: the slide (1m) must not be longer",
        ),
        (windowed, ["--watermark", "soon"], "--watermark: 'soon' is not a duration"),
        (anomaly, ["--threshold", "0"], "--threshold: 0.0 must be a number greater than 0"),
        (anomaly, ["--threshold", "nan"], "--threshold: nan must be a number greater than 0"),
        (anomaly, ["--stddev-floor", "-1"], "--stddev-floor: -1.0 must be a number greater than 0"),
        (
            anomaly,
            ["--starting-offsets", "yesterday"],
            "--starting-offsets: 'yesterday' is not 'earliest', 'latest'",
        ),
        (anomaly, ["--source-topic", ".."], "--source-topic: '..' is not a valid Kafka topic name"),
        (anomaly, ["--trigger", "sometimes"], "--trigger: 'sometimes' is not a trigger"),
        (anomaly, ["--log-level", "LOUD"], "--log-level: 'LOUD' is not one of ERROR, WARN, INFO, DEBUG"),
        (anomaly, ["--shuffle-partitions", "0"], "--shuffle-partitions: 0 must be at least 1"),
        (anomaly, ["--spark-conf", "memory"], "--spark-conf: 'memory' is not KEY=VALUE with a Spark key"),
    ],
)
def test_bad_flags_exit_2_with_a_message(module, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_spark_conf_pairs():
    opts = parse_options(
        BasicOptions, ["--spark-conf", "spark.driver.memory=2g", "--spark-conf", "spark.x=a=b"]
    )
    assert opts.common.spark_conf == (("spark.driver.memory", "2g"), ("spark.x", "a=b"))
