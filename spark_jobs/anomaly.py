"""The anomaly job: z-score detection over sliding windows per device -> ``anomaly_alerts_topic``.

For each device and each window (30 s, sliding every 10 s, watermark 30 s by default) the job computes the count,
mean μ, sample standard deviation σ, minimum and maximum of the values. σ is null for a one-event window and 0 when
all values are equal; in both cases the lab's floor applies: σ is taken as ``--stddev-floor`` (1.0). Then

* z_high = (max - μ) / σ  — ``HIGH_VALUE`` when z_high > threshold;
* z_low  = (min - μ) / σ  — ``LOW_VALUE`` when -z_low > threshold;

and when both breach, the larger magnitude wins (HIGH_VALUE on a tie). Only anomalous windows are written:
``anomaly_type, anomaly_score`` (the breaching z, signed), ``window_start, window_end, device_id, record_count,
avg_value, stddev_value`` (as computed, before the floor), ``min_value, max_value, threshold``; keyed
``device_id|window_start``. Invalid records go to the dead letters.

Usage::

    spark-submit --jars <spark-sql-kafka and its dependencies> spark_jobs/anomaly.py \\
        --bootstrap-servers localhost:9092 --checkpoint-root /tmp/ckpt --threshold 2.0
"""

from __future__ import annotations

import argparse
import math
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
    OptionsError,
    add_common_arguments,
    check_window,
    common_options,
    validate_topic,
)
from spark_jobs.records import flatten_window
from spark_jobs.runner import run_job
from spark_jobs.sinks import start_dead_letter_output, start_topic_output
from spark_jobs.sources import read_kafka

JOB = "anomaly"
HIGH_VALUE = "HIGH_VALUE"
LOW_VALUE = "LOW_VALUE"


@dataclass(frozen=True)
class AnomalyOptions:
    common: CommonOptions = field(default_factory=CommonOptions)
    window: Duration = Duration(30_000)
    slide: Duration = Duration(10_000)
    watermark: Duration = Duration(30_000)
    threshold: float = 2.0
    stddev_floor: float = 1.0
    alerts_topic: str = DEFAULT_TOPICS.alerts

    def __post_init__(self) -> None:
        check_window("--window/--slide", self.window, self.slide)
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise OptionsError(f"--threshold: {self.threshold} must be a number greater than 0 (in σ units)")
        if not (math.isfinite(self.stddev_floor) and self.stddev_floor > 0):
            raise OptionsError(f"--stddev-floor: {self.stddev_floor} must be a number greater than 0")
        validate_topic("--alerts-topic", self.alerts_topic)


# --- transforms (pure) --------------------------------------------------------------------------------------


def window_stats(events: DataFrame, *, window: Duration, slide: Duration, watermark: Duration) -> DataFrame:
    """Per-device sliding-window statistics: ``window_start, window_end, device_id, record_count, avg_value,
    stddev_value, min_value, max_value`` (native aggregates only; no value lists are kept)."""
    return flatten_window(
        events.withWatermark("event_time", watermark.spark())
        .groupBy(F.window("event_time", window.spark(), slide.spark()), "device_id")
        .agg(
            F.count(F.lit(1)).alias("record_count"),
            F.avg("value").alias("avg_value"),
            F.stddev_samp("value").alias("stddev_value"),
            F.min("value").alias("min_value"),
            F.max("value").alias("max_value"),
        )
    )


def score_windows(stats: DataFrame, *, threshold: float, stddev_floor: float) -> DataFrame:
    """Add ``z_high``, ``z_low``, ``anomaly_type`` (null when normal) and ``anomaly_score`` to window statistics."""
    sigma = F.when(
        F.col("stddev_value").isNull() | (F.col("stddev_value") == 0), F.lit(stddev_floor)
    ).otherwise(F.col("stddev_value"))
    z_high = (F.col("max_value") - F.col("avg_value")) / sigma
    z_low = (F.col("min_value") - F.col("avg_value")) / sigma
    scored = stats.select("*", z_high.alias("z_high"), z_low.alias("z_low"))
    high, low = F.col("z_high") > threshold, -F.col("z_low") > threshold
    high_wins = high & (~low | (F.col("z_high") >= -F.col("z_low")))
    kind = F.when(high_wins, F.lit(HIGH_VALUE)).when(low, F.lit(LOW_VALUE))
    score = F.when(high_wins, F.col("z_high")).when(low, F.col("z_low"))
    return scored.select("*", kind.alias("anomaly_type"), score.alias("anomaly_score"))


def alerts(stats: DataFrame, *, threshold: float, stddev_floor: float) -> DataFrame:
    """The anomalous windows only, in the alert record's shape."""
    return (
        score_windows(stats, threshold=threshold, stddev_floor=stddev_floor)
        .where(F.col("anomaly_type").isNotNull())
        .select(
            "anomaly_type",
            "anomaly_score",
            "window_start",
            "window_end",
            "device_id",
            "record_count",
            "avg_value",
            "stddev_value",
            "min_value",
            "max_value",
            F.lit(float(threshold)).alias("threshold"),
        )
    )


# --- wiring: source -> transforms -> sinks ----------------------------------------------------------------------


def start(spark: SparkSession, opts: AnomalyOptions) -> list[StreamingQuery]:
    """Start the dead-letter query and the alerts query; return them."""
    common = opts.common
    parsed = parse_events(read_kafka(spark, common))
    stats = window_stats(valid_events(parsed), window=opts.window, slide=opts.slide, watermark=opts.watermark)
    return [
        start_dead_letter_output(parsed, opts=common, job=JOB),
        start_topic_output(
            alerts(stats, threshold=opts.threshold, stddev_floor=opts.stddev_floor),
            key=["device_id", "window_start"],
            opts=common,
            job=JOB,
            name="alerts",
            topic=opts.alerts_topic,
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    d = AnomalyOptions()
    p = argparse.ArgumentParser(prog="spark_jobs.anomaly", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    g = p.add_argument_group("anomaly job")
    g.add_argument("--window", default=str(d.window), help="length of the windows statistics are taken over")
    g.add_argument("--slide", default=str(d.slide), help="how often a window starts")
    g.add_argument("--watermark", default=str(d.watermark), help="how late an event may arrive")
    g.add_argument("--threshold", type=float, default=d.threshold, help="alert when |z| exceeds this many σ")
    g.add_argument("--stddev-floor", type=float, default=d.stddev_floor, help="σ used when σ is null or 0")
    g.add_argument("--alerts-topic", default=d.alerts_topic, help="topic the alerts go to")
    return p


def options_from(ns: argparse.Namespace) -> AnomalyOptions:
    return AnomalyOptions(
        common=common_options(ns),
        window=Duration.parse(ns.window, flag="--window"),
        slide=Duration.parse(ns.slide, flag="--slide"),
        watermark=Duration.parse(ns.watermark, flag="--watermark"),
        threshold=ns.threshold,
        stddev_floor=ns.stddev_floor,
        alerts_topic=ns.alerts_topic,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, build_parser(), options_from, start, argv)


if __name__ == "__main__":
    sys.exit(main())
