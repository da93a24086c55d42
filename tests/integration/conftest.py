"""Integration fixtures: one real Kafka broker per test session, and uniquely named topics on it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping

import pytest

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import TopicSpec, create_topics


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A started single-node KRaft broker, shared by the session; its log is kept in pytest's temp dir."""
    log_file = tmp_path_factory.mktemp("kafka-broker") / "broker.log"
    with KafkaBroker(log_file=log_file) as broker:
        yield broker


@pytest.fixture
def topic_factory(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create a topic named after the test plus a random suffix and return its name.

    Call as ``topic_factory()``, ``topic_factory("events", partitions=3)`` or with ``config={...}``.
    """

    def make(
        prefix: str | None = None, *, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> str:
        base = re.sub(r"[^a-zA-Z0-9._-]+", "-", prefix or request.node.name)[:180]
        name = f"{base}-{uuid.uuid4().hex[:8]}"
        create_topics(
            kafka_broker.bootstrap_servers,
            [TopicSpec(name, partitions=partitions, config=dict(config or {}))],
        )
        return name

    return make
