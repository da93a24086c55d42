"""The SparkSession every job runs in: UTC everywhere, small shuffles, the Kafka connector on the class path."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jobs.options import CommonOptions


def build_session(app_name: str, opts: CommonOptions) -> SparkSession:
    """Create (or reuse) the session for ``app_name``.

    Under ``spark-submit`` the master and jars come from its command line; ``--master`` and ``--jars`` serve runs
    with ``python -m``.
    """
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(opts.shuffle_partitions))
    )
    if opts.master:
        builder = builder.master(opts.master)
    if opts.jars:
        builder = builder.config("spark.jars", ",".join(opts.jars))
    for key, value in opts.spark_conf:
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(opts.log_level)
    return spark
