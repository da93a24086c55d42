"""``python -m sluice_local peek`` (what ``make kind-demo`` prints) against a real broker."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from confluent_kafka import Producer

from sluice_local.topics import TopicError, wait_for_records

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, records: list[tuple[str, str, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, millis in records:
        producer.produce(topic, key=key, value=value, timestamp=millis)
    assert producer.flush(30) == 0


def _peek(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice_local", "peek", "--bootstrap", bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_peek_prints_the_latest_records_by_timestamp(kafka_broker, topic_factory):
    topic = topic_factory()
    # 2026-01-01T00:00:00Z = 1767225600000 ms; the records arrive out of time order.
    _produce(
        kafka_broker.bootstrap_servers,
        topic,
        [
            ("d1", '{"v":1}', 1767225602000),
            ("d2", '{"v":2}', 1767225600000),
            ("d3", '{"v":3}', 1767225601000),
        ],
    )
    result = _peek(
        kafka_broker.bootstrap_servers,
        "--count",
        "3",
        "--show",
        "2",
        "--timeout",
        "30",
        topic,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{topic}: 3 record(s); the latest 2:",
        '  2026-01-01T00:00:01.000Z  key=d3  {"v":3}',
        '  2026-01-01T00:00:02.000Z  key=d1  {"v":1}',
    ]


def test_waiting_returns_once_enough_records_arrive(kafka_broker, topic_factory):
    topic = topic_factory()
    late = threading.Timer(
        2.0, _produce, args=(kafka_broker.bootstrap_servers, topic, [("k", "late", 1767225600000)])
    )
    late.start()
    try:
        records = wait_for_records(kafka_broker.bootstrap_servers, topic, count=1, timeout=30)
    finally:
        late.join()
    assert [m.value() for m in records] == [b"late"]


def test_too_few_records_fail_naming_topic_count_and_wait(kafka_broker, topic_factory):
    topic = topic_factory()
    _produce(kafka_broker.bootstrap_servers, topic, [("k", "only", 1767225600000)])
    with pytest.raises(
        TopicError, match=rf"topic '{topic}' on .* holds 1 record\(s\) after 3 s; waited for 2"
    ):
        wait_for_records(kafka_broker.bootstrap_servers, topic, count=2, timeout=3)


def test_peek_exits_non_zero_for_a_missing_topic(kafka_broker):
    result = _peek(
        kafka_broker.bootstrap_servers,
        "--timeout",
        "3",
        "no-such-topic",
    )
    assert result.returncode == 1
    assert "no-such-topic" in result.stderr and "does not exist" in result.stderr
