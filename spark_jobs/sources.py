"""The Kafka source every job reads sensor events from."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.options import CommonOptions


def read_kafka(spark: SparkSession, opts: CommonOptions, *, starting_offsets: str | None = None) -> DataFrame:
    """A streaming DataFrame of the raw records of ``opts.source_topic`` (headers included, so that a
    dead-lettered record keeps them), from ``starting_offsets`` (default ``opts.starting_offsets``) when the
    query's checkpoint is new."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", opts.bootstrap_servers)
        .option("subscribe", opts.source_topic)
        .option("startingOffsets", starting_offsets or opts.starting_offsets)
        .option("includeHeaders", "true")
        # Records expired or deleted before the job read them: a failure naming the offsets, unless told to skip.
        .option("failOnDataLoss", "true" if opts.fail_on_data_loss else "false")
    )
    if opts.max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(opts.max_offsets_per_trigger))
    return reader.load()


def earliest_offsets(bootstrap_servers: str, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
    """The first offset Kafka still holds in each partition of ``topic`` (empty when Kafka does not answer)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "sluice-offsets", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[0]
            for p in sorted(partitions)
        }
    except (KafkaException, KeyError):
        return {}
    finally:
        consumer.close()
