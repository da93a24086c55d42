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

import argparse
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
    OptionsError,
    add_common_arguments,
    check_window,
    common_options,
    validate_topic,
)
from spark_jobs.runner import run_job
from spark_jobs.windows import WindowSpec

JOB = "basic"


@dataclass(frozen=True)
class BasicOptions:
    common: CommonOptions = field(default_factory=CommonOptions)
    window: Duration = Duration(10_000)
    slide: Duration = Duration(5_000)
    watermark: Duration = Duration(10_000)
    processed_topic: str = DEFAULT_TOPICS.processed
    output_dir: str = "/tmp/sluice/output"
    file_format: str = "parquet"

    def __post_init__(self) -> None:
        check_window("--window/--slide", self.window, self.slide)
        validate_topic("--processed-topic", self.processed_topic)
        if self.file_format not in FILE_FORMATS:
            raise OptionsError(f"--file-format: {self.file_format!r} is not one of {', '.join(FILE_FORMATS)}")


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


def build_parser() -> argparse.ArgumentParser:
    d = BasicOptions()
    p = argparse.ArgumentParser(prog="spark_jobs.basic", description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    g = p.add_argument_group("basic job")
    g.add_argument("--window", default=str(d.window), help="length of the per-device windows")
    g.add_argument("--slide", default=str(d.slide), help="how often a window starts")
    g.add_argument("--watermark", default=str(d.watermark), help="how late an event may arrive")
    g.add_argument("--processed-topic", default=d.processed_topic, help="topic of the per-device windows")
    g.add_argument("--output-dir", default=d.output_dir, help="directory the event files are written under")
    g.add_argument(
        "--file-format", default=d.file_format, help=f"format of the event files: {', '.join(FILE_FORMATS)}"
    )
    return p


def options_from(ns: argparse.Namespace) -> BasicOptions:
    return BasicOptions(
        common=common_options(ns),
        window=Duration.parse(ns.window, flag="--window"),
        slide=Duration.parse(ns.slide, flag="--slide"),
        watermark=Duration.parse(ns.watermark, flag="--watermark"),
        processed_topic=ns.processed_topic,
        output_dir=ns.output_dir,
        file_format=ns.file_format,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the job with ``argv`` (default: the command line); the process exit code."""
    return run_job(JOB, build_parser(), options_from, start, argv)


if __name__ == "__main__":
    sys.exit(main())
