"""The benchmark's batch ceilings: what Spark computes in one batch job over a file holding the same records the jobs
read from Kafka, with the jobs' own transforms (or the plain 10 s tumbling aggregation a user would write), and
the records a job's drain must have written."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs import windows
from spark_jobs.events import dead_letters, parse_events, screen_events, valid_events
from spark_jobs.micro_batch import input_limits
from spark_jobs.records import to_kafka_records


def tumbling_rows(raw: DataFrame, opts) -> DataFrame:
    """Parse (as the jobs do, :func:`screen_events`), then 10 s tumbling windows per device (average, maximum,
    minimum, count) with Spark's own window()."""
    events = valid_events(screen_events(raw, input_limits(opts.common)))
    return events.groupBy(F.window("event_time", "10 seconds"), "device_id").agg(
        F.avg("value"), F.max("value"), F.min("value"), F.count(F.lit(1))
    )


def _output_records(plan, values: DataFrame) -> DataFrame:
    records = [to_kafka_records(out.rows(values), key=list(out.key)) for out in plan.outputs]
    union = records[0]
    for more in records[1:]:
        union = union.unionByName(more)
    return union


def job_records(module, opts, raw: DataFrame) -> DataFrame:
    """Every record the job's transforms make of ``raw`` as one batch: its outputs for every window (none is
    waited for) and its dead letters. The basic job's event files are written by :func:`job_files`."""
    plan = module.plan(opts)
    parsed = parse_events(raw, input_limits(opts.common))
    values = windows.aggregate(valid_events(parsed), plan.specs)
    letters = dead_letters(parsed, job=plan.job, max_bytes=opts.common.dead_letter_max_bytes).select(
        "key", "value"
    )
    return _output_records(plan, values).unionByName(letters)


def job_files(module, opts, raw: DataFrame) -> DataFrame | None:
    """The basic job's event files (the valid events, with their UTC date), or None for the other jobs."""
    plan = module.plan(opts)
    if plan.event_files is None:
        return None
    return valid_events(parse_events(raw, input_limits(opts.common))).withColumn(
        "event_date", F.to_date("event_time")
    )


def expected_records(module, opts, raw: DataFrame) -> DataFrame:
    """The output records a drain of ``raw`` in one micro-batch writes in append mode: the windows the final
    watermark (latest event time, in whole milliseconds, minus the delay) has closed."""
    plan = module.plan(opts)
    events = valid_events(parse_events(raw, input_limits(opts.common)))
    latest_ms = events.select(F.max(F.unix_millis("event_time"))).first()[0]
    watermark = F.timestamp_millis(F.lit(latest_ms - plan.watermark.millis))
    values = windows.aggregate(events, plan.specs).where(F.col("window_end") <= watermark)
    return _output_records(plan, values)
