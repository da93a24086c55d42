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
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.events import parse_events, valid_events
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
from spark_jobs.records import flatten_window
from spark_jobs.runner import run_job
from spark_jobs.sinks import (
    start_console_output,
    start_dead_letter_output,
    start_file_output,
    start_topic_output,
)
from spark_jobs.sources import read_kafka

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


def status_counts(events: DataFrame) -> DataFrame:
    """How many events of each status have been seen: ``status, record_count``."""
    return events.groupBy("status").agg(F.count(F.lit(1)).alias("record_count"))


def device_windows(events: DataFrame, *, window: Duration, slide: Duration, watermark: Duration) -> DataFrame:
    """Average and count of each device's values in sliding event-time windows.

    ``window_start, window_end, device_id, avg_value, record_count``; windows are aligned to the epoch
    (``[k*slide, k*slide + window)``). A window is final once the watermark reaches its end; an event arriving
    later does not count in it (it still counts in the windows it belongs to that are open).
    """
    return flatten_window(
        events.withWatermark("event_time", watermark.spark())
        .groupBy(F.window("event_time", window.spark(), slide.spark()), "device_id")
        .agg(F.avg("value").alias("avg_value"), F.count(F.lit(1)).alias("record_count"))
    )


# --- wiring: source -> transforms -> sinks ----------------------------------------------------------------------


def start(spark: SparkSession, opts: BasicOptions) -> list[StreamingQuery]:
    """Start the job's queries (see the module docstring) and return them."""
    common = opts.common
    parsed = parse_events(read_kafka(spark, common))
    events = valid_events(parsed)
    queries = [
        start_dead_letter_output(parsed, opts=common, job=JOB),
        start_topic_output(
            device_windows(events, window=opts.window, slide=opts.slide, watermark=opts.watermark),
            key=["device_id", "window_start"],
            opts=common,
            job=JOB,
            name="device_windows",
            topic=opts.processed_topic,
        ),
        start_file_output(
            events,
            path=f"{opts.output_dir.rstrip('/')}/events",
            file_format=opts.file_format,
            opts=common,
            job=JOB,
            name="event_files",
        ),
    ]
    if common.console:
        queries.append(
            start_console_output(
                status_counts(events), opts=common, job=JOB, name="status_counts", output_mode="complete"
            )
        )
    return queries


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
