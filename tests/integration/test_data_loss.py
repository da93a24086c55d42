"""No silent loss: when records a job has not read yet are gone from Kafka (expired by retention, deleted), the job
stops and names the partition and the offsets, unless it is told to skip them (``--no-fail-on-data-loss``).

The loss is made for real: the broker's log start offset is moved past the checkpoint's position with the
AdminClient's DeleteRecords, what retention does to a pipeline stopped for longer than the topic keeps records.
"""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pyspark.sql import SparkSession
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import read_all
from spark_jobs import anomaly
from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.options import CommonOptions, Trigger
from spark_jobs.runner import await_queries, data_loss_message, data_lost
from spark_jobs.sources import earliest_offsets

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    """``count`` events, keyed by ``n % 2`` so that two partitions get some."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(first, first + count):
        body = {
            "timestamp": f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "value": 1.0,
            "device_id": "d",
            "status": "s",
        }
        producer.produce(topic, key=b"d%d" % (n % 2), value=json.dumps(body).encode())
    assert producer.flush(30) == 0


def _options(bootstrap: str, topics: tuple[str, str, str], root, **more) -> AnomalyOptions:
    """The anomaly job over ``topics`` (source, alerts, dead letters), available-now, its checkpoints in ``root``."""
    source, alerts, dlq = topics
    common = CommonOptions(
        bootstrap_servers=bootstrap,
        source_topic=source,
        dead_letter_topic=dlq,
        checkpoint_root=str(root),
        trigger=Trigger(available_now=True),
        shuffle_partitions=2,
        max_event_behind=None,  # events dated 2024
        query_prefix=f"loss-{uuid.uuid4().hex[:6]}-",
        **more,
    )
    return AnomalyOptions(common=common, alerts_topic=alerts)


def _run(spark: SparkSession, opts: AnomalyOptions) -> tuple[str | None, int]:
    """Run the job to the end: its failure (None when it ran through) and how many records it read."""
    query = anomaly.start(spark, opts)
    try:
        return await_queries([query]), sum(p["numInputRows"] for p in query.recentProgress)
    finally:
        query.stop()


@pytest.mark.timeout(600)
def test_records_gone_before_the_job_read_them_stop_it_naming_the_offsets(
    spark: SparkSession, kafka_broker: KafkaBroker, tmp_path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    suffix = uuid.uuid4().hex[:8]
    source, alerts, dlq = (f"loss-{r}-{suffix}" for r in ("src", "alerts", "dlq"))
    ensure_topics(bootstrap, [DesiredTopic(source), DesiredTopic(alerts), DesiredTopic(dlq)], timeout=30)

    def options(**more) -> AnomalyOptions:
        return _options(bootstrap, (source, alerts, dlq), tmp_path, **more)

    _produce(bootstrap, source, 0, 100)
    assert _run(spark, options()) == (None, 100)  # read offsets 0..99
    _produce(bootstrap, source, 100, 100)  # 100..199, not read yet
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.delete_records([TopicPartition(source, 0, 150)]).values()
    assert future.result(timeout=30).low_watermark == 150  # 100..149 are gone

    failure, _ = _run(spark, options())
    assert failure is not None and data_lost(failure), failure
    message = data_loss_message(failure, earliest_offsets(bootstrap, source))
    assert message == (
        f"SourceDataLost: Could not read records in offset [100, 200) for topic partition {source}-0; "
        "Kafka now holds partition 0 from offset 150"
    )

    # Told to skip what is gone, the job goes on from what Kafka still holds.
    assert _run(spark, options(fail_on_data_loss=False)) == (None, 50)  # 150..199
    assert read_all(bootstrap, dlq, timeout=10) == []


@pytest.mark.timeout(600)
def test_a_fresh_checkpoint_starts_where_the_previous_one_had_got_to(
    spark: SparkSession, kafka_broker: KafkaBroker, tmp_path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    suffix = uuid.uuid4().hex[:8]
    source, alerts, dlq = (f"resume-{r}-{suffix}" for r in ("src", "alerts", "dlq"))
    ensure_topics(
        bootstrap, [DesiredTopic(source, partitions=2), DesiredTopic(alerts), DesiredTopic(dlq)], timeout=30
    )

    def run(root: str, **more) -> int:
        failure, read = _run(spark, _options(bootstrap, (source, alerts, dlq), tmp_path / root, **more))
        assert failure is None, failure
        return read

    _produce(bootstrap, source, 0, 100)
    assert run("g0") == 100
    _produce(bootstrap, source, 100, 50)
    # The windows changed: a fresh checkpoint (g1) that resumes reads only what g0 had not read.
    assert run("g1", previous_checkpoint_root=str(tmp_path / "g0")) == 50
    # Run again on its own checkpoint, it goes on from there (nothing new), whatever it was told to resume from.
    assert run("g1", previous_checkpoint_root=str(tmp_path / "g0")) == 0
    # Replay: a fresh checkpoint with no previous one reads the topic from its earliest offset.
    assert run("replay") == 150
    # A previous checkpoint that never committed: the flag falls back to --starting-offsets.
    assert run("g2", previous_checkpoint_root=str(tmp_path / "never")) == 150
