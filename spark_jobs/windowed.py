"""The windowed job: three event-time aggregations of the sensor events, all to ``windowed_results_topic``.

* ``tumbling`` — 10 s tumbling windows per device: ``avg_value, max_value, min_value, record_count``;
* ``sliding``  — 30 s windows sliding every 10 s per device: ``avg_value, stddev_value, record_count``
  (``stddev_value`` is the sample standard deviation, null for a single event);
* ``status``   — hourly windows per status: ``record_count``.

Every record carries ``aggregation`` (one of the names above), ``window_start`` and ``window_end`` (ISO-8601 UTC),
and is keyed ``aggregation|device_id|window_start`` (or ``aggregation|status|window_start``). In append mode (the
default) each window is written once, when the watermark passes its end. Invalid records go to the dead letters.

Usage::

    spark-submit --jars <spark-sql-kafka and its dependencies> spark_jobs/windowed.py \\
        --bootstrap-servers localhost:9092 --checkpoint-root /tmp/ckpt
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.events import parse_events, valid_events
from spark_jobs.options import (
    DEFAULT_TOPICS,
    CommonOptions,
    Duration,
    add_common_arguments,
    check_window,
    common_options,
    validate_topic,
)
from spark_jobs.records import flatten_window
from spark_jobs.runner import run_job
from spark_jobs.sinks import start_dead_letter_output, start_topic_output
from spark_jobs.sources import read_kafka

JOB = "windowed"
AGGREGATIONS = ("tumbling", "sliding", "status")


@dataclass(frozen=True)
class WindowedOptions:
    common: CommonOptions = field(default_factory=CommonOptions)
    tumbling_window: Duration = Duration(10_000)
    sliding_window: Duration = Duration(30_000)
    sliding_slide: Duration = Duration(10_000)
    status_window: Duration = Duration(3_600_000)
    watermark: Duration = Duration(10_000)
    windowed_topic: str = DEFAULT_TOPICS.windowed

    def __post_init__(self) -> None:
        check_window("--tumbling-window", self.tumbling_window)
        check_window("--sliding-window/--sliding-slide", self.sliding_window, self.sliding_slide)
        check_window("--status-window", self.status_window)
        validate_topic("--windowed-topic", self.windowed_topic)


# --- transforms (pure) --------------------------------------------------------------------------------------


def _labelled(aggregation: str, df: DataFrame) -> DataFrame:
    return flatten_window(df).select(F.lit(aggregation).alias("aggregation"), "*")


def tumbling(events: DataFrame, *, window: Duration, watermark: Duration) -> DataFrame:
    """Per-device tumbling windows ``[k*window, (k+1)*window)``: average, maximum, minimum and count."""
    return _labelled(
        "tumbling",
        events.withWatermark("event_time", watermark.spark())
        .groupBy(F.window("event_time", window.spark()), "device_id")
        .agg(
            F.avg("value").alias("avg_value"),
            F.max("value").alias("max_value"),
            F.min("value").alias("min_value"),
            F.count(F.lit(1)).alias("record_count"),
        ),
    )


def sliding(events: DataFrame, *, window: Duration, slide: Duration, watermark: Duration) -> DataFrame:
    """Per-device sliding windows: average, sample standard deviation and count."""
    return _labelled(
        "sliding",
        events.withWatermark("event_time", watermark.spark())
        .groupBy(F.window("event_time", window.spark(), slide.spark()), "device_id")
        .agg(
            F.avg("value").alias("avg_value"),
            F.stddev_samp("value").alias("stddev_value"),
            F.count(F.lit(1)).alias("record_count"),
        ),
    )


def status_counts(events: DataFrame, *, window: Duration, watermark: Duration) -> DataFrame:
    """How many events of each status fall in each (by default hourly) tumbling window."""
    return _labelled(
        "status",
        events.withWatermark("event_time", watermark.spark())
        .groupBy(F.window("event_time", window.spark()), "status")
        .agg(F.count(F.lit(1)).alias("record_count")),
    )


# --- wiring: source -> transforms -> sinks ----------------------------------------------------------------------


def start(spark: SparkSession, opts: WindowedOptions) -> list[StreamingQuery]:
    """Start the dead-letter query and one query per aggregation; return them."""
    common = opts.common
    parsed = parse_events(read_kafka(spark, common))
    events = valid_events(parsed)
    outputs = {
        "tumbling": (tumbling(events, window=opts.tumbling_window, watermark=opts.watermark), "device_id"),
        "sliding": (
            sliding(events, window=opts.sliding_window, slide=opts.sliding_slide, watermark=opts.watermark),
            "device_id",
        ),
        "status": (status_counts(events, window=opts.status_window, watermark=opts.watermark), "status"),
    }
    queries = [start_dead_letter_output(parsed, opts=common, job=JOB)]
    for name, (rows, group) in outputs.items():
        queries.append(
            start_topic_output(
                rows,
                key=["aggregation", group, "window_start"],
                opts=common,
                job=JOB,
                name=name,
                topic=opts.windowed_topic,
            )
        )
    return queries


def build_parser() -> argparse.ArgumentParser:
    d = WindowedOptions()
    p = argparse.ArgumentParser(prog="spark_jobs.windowed", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    g = p.add_argument_group("windowed job")
    g.add_argument("--tumbling-window", default=str(d.tumbling_window), help="length of the tumbling windows")
    g.add_argument("--sliding-window", default=str(d.sliding_window), help="length of the sliding windows")
    g.add_argument("--sliding-slide", default=str(d.sliding_slide), help="how often a sliding window starts")
    g.add_argument("--status-window", default=str(d.status_window), help="length of the per-status windows")
    g.add_argument("--watermark", default=str(d.watermark), help="how late an event may arrive")
    g.add_argument("--windowed-topic", default=d.windowed_topic, help="topic all three aggregations go to")
    return p


def options_from(ns: argparse.Namespace) -> WindowedOptions:
    return WindowedOptions(
        common=common_options(ns),
        tumbling_window=Duration.parse(ns.tumbling_window, flag="--tumbling-window"),
        sliding_window=Duration.parse(ns.sliding_window, flag="--sliding-window"),
        sliding_slide=Duration.parse(ns.sliding_slide, flag="--sliding-slide"),
        status_window=Duration.parse(ns.status_window, flag="--status-window"),
        watermark=Duration.parse(ns.watermark, flag="--watermark"),
        windowed_topic=ns.windowed_topic,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, build_parser(), options_from, start, argv)


if __name__ == "__main__":
    sys.exit(main())
