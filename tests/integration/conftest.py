"""Integration fixtures: uniquely named topics on the session's Kafka broker (see tests/conftest.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping

import pytest

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import TopicSpec, create_topics


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
