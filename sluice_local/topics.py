"""Reading Kafka topics, for the local runtime and tests: end offsets, every record, waiting for records.

They use confluent_kafka's Consumer against any bootstrap address (e.g. a
:class:`sluice_local.kafka_broker.KafkaBroker`). Topics are created by the operator's reconciler,
:func:`sluice_operator.kafka_admin.ensure_topics`, here as in a cluster.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition


class TopicError(RuntimeError):
    """A topic could not be found or read in time; the message names the topic and the cause."""


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # Partitions are assigned by hand and nothing is committed, so the group is never joined.
            "group.id": f"sluice-local-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )


def _partitions(consumer: Consumer, bootstrap: str, topic: str, timeout: float) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise TopicError(f"cannot read metadata of topic {topic!r} from {bootstrap}: {exc}") from exc
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        cause = described.error if described is not None and described.error is not None else "not found"
        raise TopicError(f"topic {topic!r} does not exist on {bootstrap} ({cause}); create it first")
    return sorted(described.partitions)


_LEADER_MOVING = frozenset(
    {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
)
"""Errors of a partition whose leadership is still settling (a new topic, a moved leader): worth a retry."""


def _watermarks(consumer: Consumer, bootstrap: str, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    """Low and high watermark of each partition; errors of a leader still settling are retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    marks = {}
    for partition in _partitions(consumer, bootstrap, topic, timeout):
        while partition not in marks:
            left = deadline - time.monotonic()
            try:
                marks[partition] = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=max(left, 0.1)
                )
            except KafkaException as exc:
                error = exc.args[0]
                if not (isinstance(error, KafkaError) and error.code() in _LEADER_MOVING) or left <= 0:
                    raise TopicError(
                        f"cannot read offsets of {topic!r} partition {partition} on {bootstrap}: {exc}"
                    ) from exc
                time.sleep(min(0.2, left))
    return marks


def end_offsets(bootstrap: str, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
    """High watermark (offset after the last record) of each partition of ``topic``."""
    consumer = _consumer(bootstrap)
    try:
        return {p: high for p, (_low, high) in _watermarks(consumer, bootstrap, topic, timeout).items()}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[Message]:
    """Every record of ``topic`` from the beginning to the end offsets seen at the call, by partition, offset.

    Records produced after the call started are ignored. Raises TopicError if the end is not reached within
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    consumer = _consumer(bootstrap)
    try:
        marks = _watermarks(consumer, bootstrap, topic, timeout)
        ends = {p: high for p, (low, high) in marks.items() if high > low}
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records: list[Message] = []
        remaining = dict(ends)
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                positions = {
                    tp.partition: tp.offset
                    for tp in consumer.position([TopicPartition(topic, p) for p in remaining])
                }
                progress = ", ".join(
                    f"partition {p} at {positions.get(p)} of {end}" for p, end in remaining.items()
                )
                raise TopicError(
                    f"reading {topic!r} from {bootstrap} did not reach its end within {timeout} s: {progress}"
                )
            message = consumer.poll(min(0.5, left))
            if message is not None:
                if message.error() is not None:
                    raise TopicError(f"reading {topic!r} from {bootstrap} failed: {message.error()}")
                if message.offset() < ends.get(message.partition(), -1):
                    records.append(message)
            # Positions, not delivered offsets, tell the end: transaction markers are never delivered.
            for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        records.sort(key=lambda m: (m.partition(), m.offset()))
        return records
    finally:
        consumer.close()


def wait_for_records(bootstrap: str, topic: str, *, count: int = 1, timeout: float = 120.0) -> list[Message]:
    """Every record of ``topic`` once it holds at least ``count`` (polling its end offsets).

    Raises TopicError naming the topic, how many records it holds and the wait if it holds fewer after
    ``timeout`` seconds (or if it does not exist by then).
    """
    deadline = time.monotonic() + timeout
    held = 0
    last_error: TopicError | None = None
    while time.monotonic() < deadline:
        try:
            held = sum(end_offsets(bootstrap, topic, timeout=min(10.0, timeout)).values())
            last_error = None
        except TopicError as exc:  # not created yet, or the broker is still starting
            last_error = exc
        if held >= count:
            return read_all(bootstrap, topic, timeout=max(10.0, deadline - time.monotonic()))
        time.sleep(1.0)
    cause = f" (last error: {last_error})" if last_error is not None else ""
    raise TopicError(
        f"topic {topic!r} on {bootstrap} holds {held} record(s) after {timeout:.0f} s; waited for {count}{cause}"
    )
