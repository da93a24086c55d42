"""The basic job: running counts by status, per-device sliding windows, and the parsed events kept as files.

* status counts (all time) -> console;
* 10 s windows sliding every 5 s, 10 s watermark: average and count per device -> ``processed_data_topic``
  (``window_start, window_end, device_id, avg_value, record_count``, keyed ``device_id|window_start``) and console;
* every valid event -> Parquet (or JSON) files under ``--output-dir``/events, partitioned by UTC date;
* every invalid record -> the dead-letter topic.

Usage::

    spark-submit --jars <spark-sql-kafka and its dependencies> spark_jobs/basic.py \\
        --bootstrap-servers localhost:9092 --checkpoint-root /tmp/ckpt --output-dir /tmp/out
    python -m spark_jobs.basic --master 'local[2]' --jars ... (same flags)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from spark_jobs import micro_batch, windows
from spark_jobs.micro_batch import ConsoleView, EventFileOutput, JobPlan, Output
from spark_jobs.options import (
    DEFAULT_TOPICS,
    FILE_FORMATS,
    CommonOptions,
    Duration,
    check_fields,
    check_window,
    option,
    validate_topic,
)
from spark_jobs.runner import run_job
from spark_jobs.windows import WindowSpec

JOB = "basic"


@dataclass(frozen=True)
class BasicOptions:
    """The basic job's settings, one flag each (see :func:`spark_jobs.options.option`)."""

    common: CommonOptions = field(default_factory=CommonOptions)
    window: Duration = option(Duration(10_000), help="length of the per-device windows")
    slide: Duration = option(Duration(5_000), help="how often a window starts")
    watermark: Duration = option(Duration(10_000), help="how late an event may arrive")
    processed_topic: str = option(
        DEFAULT_TOPICS.processed, help="topic of the per-device windows", check=validate_topic
    )
    output_dir: str = option("/tmp/sluice/output", help="directory the event files are written under")
    file_format: str = option("parquet", help="format of the event files", choices=FILE_FORMATS)

    def __post_init__(self) -> None:
        check_fields(self)
        check_window("--window/--slide", self.window, self.slide)


# --- transforms (pure) --------------------------------------------------------------------------------------


def window_specs(opts: BasicOptions, *, console: bool) -> tuple[WindowSpec, ...]:
    """The per-device sliding windows, and (only watched on the console) the running counts by status."""
    specs = (WindowSpec("device_windows", "device_id", opts.window, opts.slide),)
    return (*specs, WindowSpec("status_counts", "status", None)) if console else specs


def device_windows(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """Average and count of each device's values in sliding event-time windows.

    ``window_start, window_end, device_id, avg_value, record_count``; windows are aligned to the epoch
    (``[k*slide, k*slide + window)``). A window is final once the watermark reaches its end; an event arriving
    later does not count in it (it still counts in the windows it belongs to that are open).
    """
    return windows.of(values, spec).select(
        "window_start", "window_end", "device_id", "avg_value", "record_count"
    )


def status_counts(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """How many events of each status have been seen: ``status, record_count``."""
    return windows.of(values, spec).select("status", "record_count")


# --- wiring: source -> transforms -> sinks ----------------------------------------------------------------------


def plan(opts: BasicOptions) -> JobPlan:
    """What the job writes: the device windows to ``--processed-topic``, every valid event to the files, and the
    status counts to the console (when it is on)."""
    specs = window_specs(opts, console=opts.common.console)
    windows_spec = specs[0]
    views = ()
    if opts.common.console:
        views = (ConsoleView("status_counts", lambda v: status_counts(v, specs[1]), ("status",)),)
    return JobPlan(
        job=JOB,
        specs=specs,
        watermark=opts.watermark,
        outputs=(
            Output(
                "device_windows",
                opts.processed_topic,
                ("device_id", "window_start"),
                lambda v: device_windows(v, windows_spec),
            ),
        ),
        event_files=EventFileOutput(f"{opts.output_dir.rstrip('/')}/events", opts.file_format),
        console_views=views,
    )


def start(spark: SparkSession, opts: BasicOptions) -> StreamingQuery:
    """Start the job's streaming query (see the module docstring)."""
    return micro_batch.start(spark, plan(opts), opts.common)


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, BasicOptions, start, argv)


if __name__ == "__main__":
    sys.exit(main())
