"""Where the jobs write: Kafka topics (echoed to the console), Parquet/JSON files, and the dead-letter topic.

Each function starts one streaming query with its own checkpoint under ``<checkpoint root>/<job>/<name>``.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.events import dead_letters
from spark_jobs.options import CommonOptions
from spark_jobs.records import to_kafka_records


def _writer(df: DataFrame, *, opts: CommonOptions, job: str, name: str, output_mode: str):
    return (
        df.writeStream.queryName(f"{opts.query_prefix}{job}.{name}")
        .option("checkpointLocation", opts.checkpoint(job, name))
        .outputMode(output_mode)
        .trigger(**opts.trigger.spark_kwargs())
    )


def _kafka_options(opts: CommonOptions, topic: str) -> dict[str, str]:
    return {"kafka.bootstrap.servers": opts.bootstrap_servers, "topic": topic}


def start_topic_output(
    rows: DataFrame,
    *,
    key: list[str],
    opts: CommonOptions,
    job: str,
    name: str,
    topic: str,
    output_mode: str | None = None,
) -> StreamingQuery:
    """Write ``rows`` to ``topic`` as keyed JSON records (see :func:`to_kafka_records`).

    With the console on, the same micro-batch is also printed as a table: one query does both, so the source is
    read once and the console shows exactly what was written.
    """
    mode = output_mode or opts.output_mode
    kafka = _kafka_options(opts, topic)
    if not opts.console:
        records = to_kafka_records(rows, key=key)
        return (
            _writer(records, opts=opts, job=job, name=name, output_mode=mode)
            .format("kafka")
            .options(**kafka)
            .start()
        )

    show_rows = opts.console_rows

    def emit(batch: DataFrame, batch_id: int) -> None:
        batch.persist()
        try:
            to_kafka_records(batch, key=key).write.format("kafka").options(**kafka).save()
            total = batch.count()
            if total:
                shown = batch.orderBy(*key).limit(show_rows).collect()
                title = f"{job} / {name} -> {topic}: batch {batch_id}, {total} rows"
                print(format_table(title, batch.columns, shown, total), flush=True)
        finally:
            batch.unpersist()

    return _writer(rows, opts=opts, job=job, name=name, output_mode=mode).foreachBatch(emit).start()


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if not value.microsecond else value.isoformat() + "Z"
    return "" if value is None else str(value)


def format_table(title: str, columns: list[str], rows: list, total: int) -> str:
    """A micro-batch as one printable block (printed at once, so tables of concurrent queries never interleave);
    floats to 2 decimals, times as ISO-8601 UTC."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    more = [f"... {total - len(rows)} more"] if total > len(rows) else []
    return "\n".join([f"== {title}", line, *body, *more, ""])


def start_console_output(
    rows: DataFrame, *, opts: CommonOptions, job: str, name: str, output_mode: str
) -> StreamingQuery:
    """Print each micro-batch of ``rows`` (a console-only view such as running status counts)."""
    return (
        _writer(rows, opts=opts, job=job, name=name, output_mode=output_mode)
        .format("console")
        .option("numRows", str(opts.console_rows))
        .option("truncate", "false")
        .start()
    )


def start_file_output(
    events: DataFrame, *, path: str, file_format: str, opts: CommonOptions, job: str, name: str
) -> StreamingQuery:
    """Append ``events`` to ``path`` in ``file_format``, partitioned by UTC ``event_date`` (exactly once: Spark's
    file sink keeps a ``_spark_metadata`` log, and readers that honour it never see a partial batch)."""
    dated = events.withColumn("event_date", F.to_date("event_time"))
    return (
        _writer(dated, opts=opts, job=job, name=name, output_mode="append")
        .format(file_format)
        .option("path", path)
        .partitionBy("event_date")
        .start()
    )


def start_dead_letter_output(parsed: DataFrame, *, opts: CommonOptions, job: str) -> StreamingQuery:
    """Send every record :func:`spark_jobs.events.parse_events` rejected to the dead-letter topic."""
    return (
        _writer(dead_letters(parsed, job=job), opts=opts, job=job, name="dead_letters", output_mode="append")
        .format("kafka")
        .options(**_kafka_options(opts, opts.dead_letter_topic))
        .start()
    )
