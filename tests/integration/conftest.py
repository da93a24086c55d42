"""Integration fixtures: uniquely named topics on the session's Kafka broker (see tests/conftest.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping

import pytest
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.kafka_broker import KafkaBroker


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
        ensure_topics(
            kafka_broker.bootstrap_servers,
            [DesiredTopic(name, partitions=partitions, config=dict(config or {}))],
            timeout=30,
        )
        return name

    return make
