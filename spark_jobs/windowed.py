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

from spark_jobs import micro_batch, windows
from spark_jobs.micro_batch import JobPlan, Output
from spark_jobs.options import (
    DEFAULT_TOPICS,
    CommonOptions,
    Duration,
    add_common_arguments,
    check_window,
    common_options,
    validate_topic,
)
from spark_jobs.runner import run_job
from spark_jobs.windows import WindowSpec

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
