"""Where a micro-batch's results go: Kafka topics (outputs and dead letters in one write), the basic job's event
files, and the console. Each function writes one micro-batch; :mod:`spark_jobs.micro_batch` calls them."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.options import CommonOptions


def write_to_kafka(records: DataFrame, opts: CommonOptions) -> None:
    """Write ``topic, key, value, headers`` rows, each to the topic it names (one Kafka write for all of them)."""
    records.write.format("kafka").option("kafka.bootstrap.servers", opts.bootstrap_servers).save()


class EventFiles:
    """Spark's own file sink, called once per micro-batch: the files of a batch appear in its ``_spark_metadata``
    log only once all are written, so readers that honour the log never see a partial batch, and a batch run again
    after a crash is skipped (exactly once).

    A streaming query has one sink; the basic job's query also writes Kafka, so it writes its files from its
    micro-batch handler through the same sink class Spark's ``format("parquet")`` stream uses.
    """

    def __init__(self, spark: SparkSession, *, path: str, file_format: str, partition_by: str) -> None:
        jvm = spark.sparkContext._jvm
        formats = {
            "parquet": jvm.org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat,
            "json": jvm.org.apache.spark.sql.execution.datasources.json.JsonFileFormat,
        }
        columns = jvm.java.util.ArrayList()
        columns.add(partition_by)
        utils = jvm.org.apache.spark.api.python.PythonUtils
        self.path = path
        self._sink = jvm.org.apache.spark.sql.execution.streaming.sinks.FileStreamSink(
            spark._jsparkSession,
            path,
            formats[file_format](),
            utils.toSeq(columns),
            utils.toScalaMap(jvm.java.util.HashMap()),
        )

    def write(self, batch_id: int, rows: DataFrame) -> None:
        self._sink.addBatch(batch_id, rows._jdf)

    def latest_batch(self, spark: SparkSession) -> int | None:
        """The latest batch id in the files' ``_spark_metadata`` log (None when there is none)."""
        jvm = spark.sparkContext._jvm
        log = jvm.org.apache.hadoop.fs.Path(self.path, "_spark_metadata")
        fs = log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(log):
            return None
        names = [status.getPath().getName().removesuffix(".compact") for status in fs.listStatus(log)]
        ids = [int(n) for n in names if n.isdigit()]
        return max(ids) if ids else None


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


def print_rows(title: str, rows: DataFrame, *, order_by: list[str], limit: int) -> None:
    """Print up to ``limit`` rows of ``rows`` (ordered) as one table, unless there are none."""
    total = rows.count()
    if total:
        shown = rows.orderBy(*order_by).limit(limit).collect()
        print(format_table(f"{title}, {total} rows", rows.columns, shown, total), flush=True)
