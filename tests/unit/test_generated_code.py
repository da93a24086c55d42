"""The code Spark generates for the stage every record of a job runs through (the screen of the source and the
digest of the micro-batch) stays in methods HotSpot compiles.

HotSpot leaves a method of more than 8,000 bytes of bytecode to its interpreter (``HugeMethodLimit``); the jobs
start their JVMs with ``-XX:-DontCompileHugeMethods`` (:data:`spark_jobs.session.JIT_OPTIONS`), but a user's
``--spark-conf`` can replace the flag, and a huge method costs even when it is compiled: before the screen
(:func:`~spark_jobs.events.screen_events`) the windowed job's digest stage had a method of 10,950 bytes, after it
5,505, and the stage ran ~16 % faster (README, Performance). Spark reports the sizes itself (``maxMethodCodeSize`` of each whole-stage
subtree, from compiling it), so this is a property of the plan, not a timing.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime

import pytest

from spark_jobs import anomaly, basic, windowed
from spark_jobs.events import parse_events, screen_events
from spark_jobs.micro_batch import MicroBatches, input_limits
from spark_jobs.options import CommonOptions

pytestmark = pytest.mark.unit

#: HotSpot's HugeMethodLimit, in bytes of bytecode.
HUGE_METHOD_BYTES = 8_000

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "headers array<struct<key:string,value:binary>>"
)
EVENT = b'{"timestamp": "2024-01-01T12:00:00Z", "value": 42.5, "device_id": "device_001", "status": "Normal"}'

JOBS = {
    "basic": lambda common, tmp: basic.plan(basic.BasicOptions(common=common, output_dir=str(tmp / "out"))),
    "windowed": lambda common, _tmp: windowed.plan(windowed.WindowedOptions(common=common)),
    "anomaly": lambda common, _tmp: anomaly.plan(anomaly.AnomalyOptions(common=common)),
}


@contextlib.contextmanager
def conf(spark, key: str, value: str):
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def kafka_rows(spark):
    """Records shaped like Spark's Kafka source gives them, from a scan that is not a local relation (Spark
    would evaluate the screen on a local relation while planning, and no code would be generated for it)."""
    rows = [
        (b"k%d" % i, EVENT, "stream_data_topic", 0, i, datetime(2024, 1, 1, 12, 0, 1), [("h", b"v")])
        for i in range(4)
    ]
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, 1), KAFKA_SCHEMA)


def method_sizes(spark, frame) -> list[int]:
    """``maxMethodCodeSize`` of every whole-stage subtree of ``frame``'s physical plan, as Spark's
    ``debug.codegenString`` reports it."""
    plan = frame._jdf.queryExecution().executedPlan()
    text = spark._jvm.org.apache.spark.sql.execution.debug.package.codegenString(plan)
    return [int(size) for size in re.findall(r"maxMethodCodeSize:(\d+)", text)]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_stage_every_record_runs_has_no_method_the_jit_leaves_alone(spark, tmp_path, job):
    common = CommonOptions(checkpoint_root=str(tmp_path / "ckpt"))
    handler = MicroBatches(spark, JOBS[job](common, tmp_path), common)
    # As the jobs run (spark_jobs.session.DEFAULT_CONF); adaptive plans are only generated when they run.
    with conf(spark, "spark.sql.adaptive.enabled", "false"):
        parts = handler.digest(screen_events(kafka_rows(spark), input_limits(common)))
        sizes = method_sizes(spark, parts)
        assert sizes, "no whole-stage generated code in the digest's plan: the check would hold vacuously"
        assert max(sizes) < HUGE_METHOD_BYTES, (
            f"{job}: generated methods of {sorted(sizes)} bytes of bytecode"
        )


def test_the_check_sees_a_method_over_the_limit(spark):
    """The parse with every record's reasons in the stage (:func:`~spark_jobs.events.parse_events`, what the jobs
    ran before the screen) makes a method over the limit: the check above can fail."""
    with conf(spark, "spark.sql.adaptive.enabled", "false"):
        parsed = parse_events(kafka_rows(spark), input_limits(CommonOptions()))
        assert max(method_sizes(spark, parsed)) >= HUGE_METHOD_BYTES
