"""The SparkSession every job runs in: UTC everywhere, small shuffles, no adaptive re-planning, the Kafka connector
on the class path, and a JVM that compiles Spark's large generated methods."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark_jobs.options import CommonOptions

#: HotSpot leaves methods over 8,000 bytes of bytecode to its interpreter. Spark's whole-stage code generation
#: makes such methods for wide projections like the event parser's, which then run several times slower
#: (measured here: the parse of 300k events 1.5 s with this flag, 2.6 s without).
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"
_JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
#: Settings a job starts from; ``--spark-conf`` overrides them. Adaptive query execution re-plans every stage of
#: every micro-batch's queries: on micro-batches of a few thousand events it costs more than it saves (measured
#: with the benchmark's latency scenario, three jobs on two cores at 1,000 events/s: window-output p50 10 s without
#: it, 14-15 s with it).
#: Spark's console progress bars are off: in a pod's log (or a file) they are lines of carriage returns, one per
#: stage of every micro-batch.
DEFAULT_CONF = {"spark.sql.adaptive.enabled": "false", "spark.ui.showConsoleProgress": "false"}


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
    conf = {**DEFAULT_CONF, **dict(opts.spark_conf)}
    for key in _JAVA_OPTIONS:  # the user's own options stay, after ours
        conf[key] = f"{JIT_OPTIONS} {conf.get(key, '')}".strip()
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(opts.log_level)
    return spark
