"""Topic planning without a broker: what the operator does to a topic given what exists, worked out by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import KafkaError, KafkaException
from sluice_operator.kafka_admin import (
    ACTIONS,
    CurrentTopic,
    DesiredTopic,
    KafkaAdminError,
    KafkaUnavailable,
    TopicChange,
    TopicResult,
    _failure,
    plan_topic,
    plan_topics,
)

pytestmark = pytest.mark.unit

RETENTION_DAY = {"retention.ms": "86400000"}


def _summary(changes: list[TopicChange]) -> list[tuple[str, str]]:
    return [(c.action, c.detail) for c in changes]


def test_a_missing_topic_is_created_with_everything_the_spec_says():
    desired = DesiredTopic("events", 3, 1, {"retention.ms": "86400000", "cleanup.policy": "delete"})
    [change] = plan_topic(desired, None)
    assert change.action == "created"
    assert (
        change.detail
        == "created with 3 partitions, replication factor 1, cleanup.policy=delete, retention.ms=86400000"
    )
    assert (change.partitions, change.replication) == (3, 1)
    assert change.config == {"retention.ms": "86400000", "cleanup.policy": "delete"}


def test_a_topic_as_specified_is_unchanged():
    current = CurrentTopic("events", 3, 1, {"retention.ms": "86400000", "max.message.bytes": "2000000"})
    assert _summary(plan_topic(DesiredTopic("events", 3, 1, RETENTION_DAY), current)) == [
        ("unchanged", "3 partitions, replication factor 1, 1 config value(s) as in the spec")
    ]


def test_more_partitions_in_the_spec_raise_them():
    [change] = plan_topic(DesiredTopic("events", 6, 1), CurrentTopic("events", 3, 1))
    assert (change.action, change.detail, change.partitions) == ("partitions_raised", "partitions 3 -> 6", 6)


def test_fewer_partitions_in_the_spec_are_refused_and_reported():
    [change] = plan_topic(DesiredTopic("events", 3, 1), CurrentTopic("events", 6, 1))
    assert change.action == "partitions_decrease_refused"
    assert change.detail == ("has 6 partitions, the spec asks 3: Kafka cannot decrease partitions; keeping 6")
    assert change.partitions is None  # nothing to send to Kafka
    assert change.result().problem


def test_a_different_replication_factor_is_reported_not_changed():
    [change] = plan_topic(DesiredTopic("events", 3, 3), CurrentTopic("events", 3, 1))
    assert (change.action, change.detail) == (
        "replication_mismatch",
        "replication factor is 1, the spec asks 3: not changed",
    )
    assert change.result().problem


def test_only_config_values_that_differ_are_set_and_other_keys_are_kept():
    current = CurrentTopic(
        "events", 1, 1, {"retention.ms": "86400000", "segment.ms": "1", "max.message.bytes": "2000000"}
    )
    desired = DesiredTopic(
        "events", 1, 1, {"retention.ms": "3600000", "cleanup.policy": "compact", "segment.ms": "1"}
    )
    [change] = plan_topic(desired, current)
    assert change.action == "config_updated"
    # Sorted by key; a key not set on the topic shows as "(not set)"; max.message.bytes is not touched.
    assert change.detail == "cleanup.policy (not set) -> compact, retention.ms 86400000 -> 3600000"
    assert change.config == {"cleanup.policy": "compact", "retention.ms": "3600000"}


def test_several_differences_give_one_step_each_in_a_stable_order():
    current = CurrentTopic("events", 6, 1, {"retention.ms": "1"})
    desired = DesiredTopic("events", 3, 2, {"retention.ms": "2"})
    assert _summary(plan_topic(desired, current)) == [
        (
            "partitions_decrease_refused",
            "has 6 partitions, the spec asks 3: Kafka cannot decrease partitions; keeping 6",
        ),
        ("replication_mismatch", "replication factor is 1, the spec asks 2: not changed"),
        ("config_updated", "retention.ms 1 -> 2"),
    ]
    assert _summary(plan_topic(DesiredTopic("events", 8, 1, {"retention.ms": "2"}), current)) == [
        ("partitions_raised", "partitions 6 -> 8"),
        ("config_updated", "retention.ms 1 -> 2"),
    ]


def test_planning_many_topics_keeps_their_order_and_merges_identical_duplicates():
    a, b = DesiredTopic("a", 1, 1), DesiredTopic("b", 2, 1)
    changes = plan_topics([b, a, b], {"a": CurrentTopic("a", 1, 1)})
    assert [(c.name, c.action) for c in changes] == [("b", "created"), ("a", "unchanged")]


def test_the_same_name_with_different_settings_is_refused():
    with pytest.raises(ValueError, match=r"topic 'a' is listed twice with different settings"):
        plan_topics([DesiredTopic("a", 1, 1), DesiredTopic("a", 2, 1)], {})


def test_planning_against_another_topic_is_a_bug():
    with pytest.raises(ValueError, match="'a' from the state of topic 'b'"):
        plan_topic(DesiredTopic("a", 1, 1), CurrentTopic("b", 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "", "partitions": 1, "replication": 1}, ValueError, "must not be empty"),
        (
            {"name": "t", "partitions": 0, "replication": 1},
            ValueError,
            "partitions must be at least 1, got 0",
        ),
        (
            {"name": "t", "partitions": 1, "replication": 0},
            ValueError,
            "replication factor must be at least 1, got 0",
        ),
        (
            {"name": "t", "partitions": 1, "replication": 1, "config": {"retention.ms": 86400000}},
            TypeError,
            "quote numbers",
        ),
    ],
)
def test_a_desired_topic_refuses_impossible_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        DesiredTopic(**kwargs)


def test_only_refusals_and_mismatches_are_problems():
    problems = {action for action in ACTIONS if TopicResult("t", action, "").problem}
    assert problems == {"partitions_decrease_refused", "replication_mismatch"}


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError._TRANSPORT, KafkaUnavailable),
        (KafkaError._TIMED_OUT, KafkaUnavailable),
        (KafkaError._ALL_BROKERS_DOWN, KafkaUnavailable),
        (KafkaError.REQUEST_TIMED_OUT, KafkaUnavailable),
        (KafkaError.INVALID_REPLICATION_FACTOR, KafkaAdminError),
        (KafkaError.INVALID_CONFIG, KafkaAdminError),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaAdminError),
    ],
)
def test_transport_failures_mean_unavailable_and_broker_answers_mean_admin_errors(code, kind):
    error = _failure(KafkaException(KafkaError(code)), "kafka:9092", "creating topic 'events'", 5.0)
    assert type(error) is kind
    assert "kafka:9092" in str(error)
    assert "creating topic 'events'" in str(error)
    assert KafkaError(code).name() in str(error)


def test_a_topic_that_appeared_meanwhile_is_a_retriable_error():
    error = _failure(
        KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)),
        "k:9092",
        "creating topic 'a'",
        5.0,
    )
    assert isinstance(error, KafkaAdminError)
    assert error.retriable


def test_the_module_does_not_import_kubernetes_or_kopf():
    code = (
        "import sys, sluice_operator.kafka_admin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
