"""Conditions, phases and settings of the operator (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sluice_operator import status as st
from sluice_operator.settings import Settings, SettingsError, from_env

pytestmark = pytest.mark.unit

T1 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2024, 1, 1, 12, 5, tzinfo=UTC)


def test_transition_time_moves_only_when_the_status_changes():
    first = st.merge_conditions(
        None, [st.condition(st.TOPICS_READY, False, "KafkaUnavailable", "down", generation=1)], now=T1
    )
    assert first[0]["lastTransitionTime"] == "2024-01-01T12:00:00Z" and first[0]["status"] == "False"
    same = st.merge_conditions(
        first, [st.condition(st.TOPICS_READY, False, "KafkaUnavailable", "still", generation=2)], now=T2
    )
    assert same[0]["lastTransitionTime"] == "2024-01-01T12:00:00Z" and same[0]["message"] == "still"
    flipped = st.merge_conditions(
        same, [st.condition(st.TOPICS_READY, True, "TopicsReady", "ok", generation=2)], now=T2
    )
    assert flipped[0]["lastTransitionTime"] == "2024-01-01T12:05:00Z"
    both = st.merge_conditions(flipped, [st.condition(st.READY, None, "Unknown", "?", generation=2)], now=T2)
    assert [c["type"] for c in both] == ["TopicsReady", "Ready"] and both[1]["status"] == "Unknown"


@pytest.mark.parametrize(
    ("phases", "suspended", "expected"),
    [
        ({"basic": "Running", "anomaly": "Running"}, False, "Running"),
        ({"basic": "Running", "anomaly": "Pending"}, False, "Pending"),
        ({"basic": "Running", "anomaly": "BackOff"}, False, "Degraded"),
        ({"basic": "GaveUp", "anomaly": "Failed"}, False, "Failed"),
        ({"basic": "Running", "anomaly": "Running"}, True, "Suspended"),
    ],
)
def test_phase(phases, suspended, expected):
    assert st.pipeline_phase(suspended=suspended, phases=phases, enabled=["basic", "anomaly"]) == expected


def test_jobs_ready():
    assert (
        st.jobs_ready({"generator": "Running", "basic": "Pending", "x": "Running"}, ["generator", "basic"])
        == "1/2"
    )


def test_settings_from_env():
    assert from_env({}) == Settings()
    s = from_env(
        {"SLUICE_WATCH_NAMESPACE": "team-a", "SLUICE_RECONCILE_INTERVAL": "2.5", "SLUICE_METRICS_PORT": "0"}
    )
    assert (s.watch_namespace, s.reconcile_interval, s.metrics_port) == ("team-a", 2.5, 0)
    with pytest.raises(SettingsError, match=r"SLUICE_DELETE_ATTEMPTS='x' is not a whole number"):
        from_env({"SLUICE_DELETE_ATTEMPTS": "x"})
    with pytest.raises(SettingsError, match=r"SLUICE_KAFKA_TIMEOUT='0' must be at least 0.1"):
        from_env({"SLUICE_KAFKA_TIMEOUT": "0"})


def test_kafka_retry_delay_doubles_up_to_five_minutes():
    from sluice_operator.handlers import kafka_retry_delay

    assert [kafka_retry_delay(15, n) for n in range(6)] == [15, 30, 60, 120, 240, 300]
    assert kafka_retry_delay(15, 10_000) == 300
