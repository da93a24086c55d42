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

JOB = "windowed"
AGGREGATIONS = ("tumbling", "sliding", "status")


@dataclass(frozen=True)
class WindowedOptions:
    """The windowed job's settings, one flag each (see :func:`spark_jobs.options.option`)."""

    common: CommonOptions = field(default_factory=CommonOptions)
    tumbling_window: Duration = option(
        Duration(10_000), help="length of the tumbling windows", check=check_window
    )
    sliding_window: Duration = option(Duration(30_000), help="length of the sliding windows")
    sliding_slide: Duration = option(Duration(10_000), help="how often a sliding window starts")
    status_window: Duration = option(
        Duration(3_600_000), help="length of the per-status windows", check=check_window
    )
    watermark: Duration = option(Duration(10_000), help="how late an event may arrive")
    windowed_topic: str = option(
        DEFAULT_TOPICS.windowed, help="topic all three aggregations go to", check=validate_topic
    )

    def __post_init__(self) -> None:
        check_fields(self)
        check_window("--sliding-window/--sliding-slide", self.sliding_window, self.sliding_slide)


# --- transforms (pure) --------------------------------------------------------------------------------------


def window_specs(opts: WindowedOptions) -> tuple[WindowSpec, ...]:
    """The job's three aggregations, computed together in one pass over each micro-batch."""
    return (
        WindowSpec("tumbling", "device_id", opts.tumbling_window),
        WindowSpec("sliding", "device_id", opts.sliding_window, opts.sliding_slide),
        WindowSpec("status", "status", opts.status_window),
    )


def tumbling(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """Per-device tumbling windows ``[k*window, (k+1)*window)``: average, maximum, minimum and count."""
    return windows.of(values, spec).select(
        F.lit("tumbling").alias("aggregation"),
        "window_start",
        "window_end",
        "device_id",
        "avg_value",
        "max_value",
        "min_value",
        "record_count",
    )


def sliding(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """Per-device sliding windows: average, sample standard deviation (null for one event) and count."""
    return windows.of(values, spec).select(
        F.lit("sliding").alias("aggregation"),
        "window_start",
        "window_end",
        "device_id",
        "avg_value",
        "stddev_value",
        "record_count",
    )


def status_counts(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """How many events of each status fall in each (by default hourly) tumbling window."""
    return windows.of(values, spec).select(
        F.lit("status").alias("aggregation"), "window_start", "window_end", "status", "record_count"
    )


# --- wiring: source -> transforms -> sinks ----------------------------------------------------------------------


def plan(opts: WindowedOptions) -> JobPlan:
    """What the job writes: each aggregation's windows, once final, to ``--windowed-topic``."""
    tumbling_spec, sliding_spec, status_spec = window_specs(opts)

    def output(name: str, spec: WindowSpec, rows, group: str) -> Output:
        return Output(
            name, opts.windowed_topic, ("aggregation", group, "window_start"), lambda v: rows(v, spec)
        )

    return JobPlan(
        job=JOB,
        specs=(tumbling_spec, sliding_spec, status_spec),
        watermark=opts.watermark,
        outputs=(
            output("tumbling", tumbling_spec, tumbling, "device_id"),
            output("sliding", sliding_spec, sliding, "device_id"),
            output("status", status_spec, status_counts, "status"),
        ),
    )


def start(spark: SparkSession, opts: WindowedOptions) -> StreamingQuery:
    """Start the job's streaming query (one read of the source for all three aggregations)."""
    return micro_batch.start(spark, plan(opts), opts.common)


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, WindowedOptions, start, argv)


if __name__ == "__main__":
    sys.exit(main())
