"""The Kafka source every job reads sensor events from."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.options import CommonOptions


def read_kafka(spark: SparkSession, opts: CommonOptions) -> DataFrame:
    """A streaming DataFrame of the raw records of ``opts.source_topic`` (headers included, so that a
    dead-lettered record keeps them)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", opts.bootstrap_servers)
        .option("subscribe", opts.source_topic)
        .option("startingOffsets", opts.starting_offsets)
        .option("includeHeaders", "true")
        # A topic deleted or truncated under a running job is reported in the log, not a reason to stop the job.
        .option("failOnDataLoss", "false")
    )
    if opts.max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(opts.max_offsets_per_trigger))
    return reader.load()
