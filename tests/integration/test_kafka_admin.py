"""The operator's topic module against a real broker: create, stay idempotent, grow, refuse, configure, delete.

Every effect is checked with a separate confluent_kafka AdminClient (metadata and ``describe_configs``), not with
the module's own reads.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource
from sluice_operator.kafka_admin import (
    CurrentTopic,
    DesiredTopic,
    KafkaAdminError,
    KafkaUnavailable,
    TopicResult,
    delete_topics,
    describe_topics,
    ensure_topics,
)

from sluice_local.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def _layout(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """``partition -> (leader, replicas)`` as the broker's metadata has it; empty when the topic is missing."""
    described = _admin(bootstrap).list_topics(timeout=10).topics.get(topic)
    if described is None or not described.partitions:
        return {}
    return {p: (m.leader, list(m.replicas)) for p, m in described.partitions.items()}


def _config(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's effective config values, straight from ``describe_configs``."""
    admin = _admin(bootstrap)  # held until the answer is in: a collected client fails its futures
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result(timeout=10).items()}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def new_topic(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Names for topics the test creates through the module; whatever exists of them is deleted afterwards."""
    names: list[str] = []

    def name() -> str:
        names.append(f"{request.node.name[:60]}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield name
    admin = _admin(kafka_broker.bootstrap_servers)
    for future in admin.delete_topics(names, operation_timeout=10).values() if names else ():
        with contextlib.suppress(KafkaException):  # never created, or already gone
            future.result(timeout=15)


def test_creates_topics_with_their_partitions_replication_and_config(
    kafka_broker: KafkaBroker, new_topic: Callable[[], str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    events, alerts = new_topic(), new_topic()
    results = ensure_topics(
        bootstrap,
        [
            DesiredTopic(events, 3, 1, {"retention.ms": "86400000", "cleanup.policy": "compact,delete"}),
            DesiredTopic(alerts, 1, 1, {}),
        ],
        client_config={"client.id": "sluice-kafka-admin-test"},
    )

    assert [(r.name, r.action) for r in results] == [(events, "created"), (alerts, "created")]
    assert results[0].detail == (
        "created with 3 partitions, replication factor 1, cleanup.policy=compact,delete, retention.ms=86400000"
    )
    assert not any(r.problem for r in results)
    # Returned only once every partition has a leader: usable at once.
    assert _layout(bootstrap, events) == {0: (1, [1]), 1: (1, [1]), 2: (1, [1])}
    assert _layout(bootstrap, alerts) == {0: (1, [1])}
    config = _config(bootstrap, events)
    assert config["retention.ms"] == "86400000"
    assert config["cleanup.policy"] == "compact,delete"
    assert _config(bootstrap, alerts)["retention.ms"] == "604800000"  # Kafka's default: nothing was set

    assert describe_topics(bootstrap, [events, alerts, "sluice-no-such-topic"]) == {
        events: CurrentTopic(events, 3, 1, {"retention.ms": "86400000", "cleanup.policy": "compact,delete"}),
        alerts: CurrentTopic(alerts, 1, 1, {}),
    }


def test_a_second_call_changes_nothing(kafka_broker: KafkaBroker, new_topic: Callable[[], str]) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = DesiredTopic(new_topic(), 2, 1, {"retention.ms": "3600000"})
    assert [r.action for r in ensure_topics(bootstrap, [topic])] == ["created"]
    before = (_layout(bootstrap, topic.name), _config(bootstrap, topic.name))

    assert ensure_topics(bootstrap, [topic]) == [
        TopicResult(
            topic.name, "unchanged", "2 partitions, replication factor 1, 1 config value(s) as in the spec"
        )
    ]
    assert (_layout(bootstrap, topic.name), _config(bootstrap, topic.name)) == before


def test_raising_partitions_from_one_to_three(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=1)

    assert ensure_topics(bootstrap, [DesiredTopic(topic, 3, 1, {})]) == [
        TopicResult(topic, "partitions_raised", "partitions 1 -> 3")
    ]
    assert sorted(_layout(bootstrap, topic)) == [0, 1, 2]
    assert [r.action for r in ensure_topics(bootstrap, [DesiredTopic(topic, 3, 1, {})])] == ["unchanged"]


def test_a_partition_decrease_is_refused_and_the_partitions_stay(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(partitions=3)

    [result] = ensure_topics(bootstrap, [DesiredTopic(topic, 1, 1, {})])

    assert (result.action, result.problem) == ("partitions_decrease_refused", True)
    assert result.detail == "has 3 partitions, the spec asks 1: Kafka cannot decrease partitions; keeping 3"
    assert sorted(_layout(bootstrap, topic)) == [0, 1, 2]


def test_a_config_change_is_applied_and_keys_outside_the_spec_are_kept(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory(config={"retention.ms": "86400000", "max.message.bytes": "2000000"})

    assert ensure_topics(bootstrap, [DesiredTopic(topic, 1, 1, {"retention.ms": "3600000"})]) == [
        TopicResult(topic, "config_updated", "retention.ms 86400000 -> 3600000")
    ]
    config = _config(bootstrap, topic)
    assert config["retention.ms"] == "3600000"
    assert config["max.message.bytes"] == "2000000"


def test_a_replication_factor_above_the_broker_count_is_a_clear_error(
    kafka_broker: KafkaBroker, new_topic: Callable[[], str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = new_topic()

    with pytest.raises(KafkaAdminError) as caught:
        ensure_topics(bootstrap, [DesiredTopic(topic, 1, 2, {})])

    message = str(caught.value)
    assert f"creating topic {topic!r}" in message
    assert "replication factor 2" in message
    assert "the cluster has 1 broker(s)" in message
    assert "INVALID_REPLICATION_FACTOR" in message
    assert _layout(bootstrap, topic) == {}


def test_one_refused_topic_does_not_stop_the_others_in_the_same_call(
    kafka_broker: KafkaBroker, new_topic: Callable[[], str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    good, bad = DesiredTopic(new_topic(), 2, 1, {}), DesiredTopic(new_topic(), 1, 2, {})

    with pytest.raises(KafkaAdminError, match=f"creating topic {bad.name!r}"):
        ensure_topics(bootstrap, [bad, good])

    assert sorted(_layout(bootstrap, good.name)) == [0, 1]
    assert _layout(bootstrap, bad.name) == {}
    assert [r.action for r in ensure_topics(bootstrap, [good])] == ["unchanged"]


def test_an_existing_topic_with_another_replication_factor_is_reported(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    [result] = ensure_topics(kafka_broker.bootstrap_servers, [DesiredTopic(topic, 1, 3, {})])
    assert (result.action, result.detail) == (
        "replication_mismatch",
        "replication factor is 1, the spec asks 3: not changed",
    )


def test_an_unreachable_broker_fails_fast_with_kafka_unavailable() -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=rf"Kafka at {bootstrap} is unreachable"):
        ensure_topics(bootstrap, [DesiredTopic("sluice-unreachable", 1, 1, {})])  # the default timeout: 15 s
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("call", [delete_topics, describe_topics], ids=["delete", "describe"])
def test_every_call_fails_fast_when_kafka_is_unreachable(call: Callable[..., object]) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=rf"Kafka at {bootstrap} is unreachable"):
        call(bootstrap, ["sluice-unreachable"], timeout=3)
    assert time.monotonic() - started < 8


def test_delete_removes_topics_and_tolerates_missing_ones(
    kafka_broker: KafkaBroker, topic_factory: Callable[..., str]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    first, second = topic_factory(), topic_factory(partitions=2)
    missing = f"sluice-never-created-{uuid.uuid4().hex[:8]}"

    assert delete_topics(bootstrap, [first, missing, second]) == [first, second]
    remaining = set(_admin(bootstrap).list_topics(timeout=10).topics)
    assert not {first, second, missing} & remaining
    assert delete_topics(bootstrap, [first, missing]) == []
