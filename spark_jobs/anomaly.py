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

import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs import micro_batch, windows
from spark_jobs.micro_batch import JobPlan, Output
from spark_jobs.options import (
    DEFAULT_TOPICS,
    CommonOptions,
    Duration,
    check_fields,
    check_window,
    option,
    validate_topic,
)
from spark_jobs.runner import run_job
from spark_jobs.windows import WindowSpec

JOB = "anomaly"
HIGH_VALUE = "HIGH_VALUE"
LOW_VALUE = "LOW_VALUE"


@dataclass(frozen=True)
class AnomalyOptions:
    """The anomaly job's settings, one flag each (see :func:`spark_jobs.options.option`); the bounds of
    ``--threshold`` and ``--stddev-floor`` are the operator's spec's."""

    common: CommonOptions = field(default_factory=CommonOptions)
    window: Duration = option(Duration(30_000), help="length of the windows statistics are taken over")
    slide: Duration = option(Duration(10_000), help="how often a window starts")
    watermark: Duration = option(Duration(30_000), help="how late an event may arrive")
    threshold: float = option(
        2.0, help="alert when |z| exceeds this many σ", minimum=0, exclusive_minimum=True, maximum=1000
    )
    stddev_floor: float = option(
        1.0, help="σ used when σ is null or 0", minimum=0, exclusive_minimum=True, maximum=1_000_000
    )
    alerts_topic: str = option(DEFAULT_TOPICS.alerts, help="topic the alerts go to", check=validate_topic)

    def __post_init__(self) -> None:
        check_fields(self)
        check_window("--window/--slide", self.window, self.slide)


# --- transforms (pure) --------------------------------------------------------------------------------------


def window_spec(opts: AnomalyOptions) -> WindowSpec:
    """The windows statistics are taken over: per device, ``--window`` long, one every ``--slide``."""
    return WindowSpec("stats", "device_id", opts.window, opts.slide)


def window_stats(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """Per-device window statistics: ``window_start, window_end, device_id, record_count, avg_value,
    stddev_value, min_value, max_value`` (from :func:`spark_jobs.windows.window_values`)."""
    return windows.of(values, spec).select(
        "window_start",
        "window_end",
        "device_id",
        "record_count",
        "avg_value",
        "stddev_value",
        "min_value",
        "max_value",
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


def plan(opts: AnomalyOptions) -> JobPlan:
    """What the job writes: the anomalous windows, once final, to ``--alerts-topic``."""
    spec = window_spec(opts)

    def rows(values: DataFrame) -> DataFrame:
        return alerts(window_stats(values, spec), threshold=opts.threshold, stddev_floor=opts.stddev_floor)

    return JobPlan(
        job=JOB,
        specs=(spec,),
        watermark=opts.watermark,
        outputs=(Output("alerts", opts.alerts_topic, ("device_id", "window_start"), rows),),
    )


def start(spark: SparkSession, opts: AnomalyOptions) -> StreamingQuery:
    """Start the job's streaming query."""
    return micro_batch.start(spark, plan(opts), opts.common)


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, AnomalyOptions, start, argv)


if __name__ == "__main__":
    sys.exit(main())
