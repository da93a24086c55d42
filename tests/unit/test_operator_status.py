"""Component entries, conditions, phases and settings of the operator (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sluice_operator import status as st
from sluice_operator.lifecycle import ComponentRecord
from sluice_operator.settings import Settings, SettingsError, from_env
from sluice_operator.status import ComponentStatus

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
    from sluice_operator.planner import kafka_retry_delay

    assert [kafka_retry_delay(15, n) for n in range(6)] == [15, 30, 60, 120, 240, 300]
    assert kafka_retry_delay(15, 10_000) == 300


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_record_from_status():
    r = ComponentStatus.from_status(
        {
            "restarts": 2,
            "nextRestart": "2024-01-01T00:00:10+00:00",
            "checkpointGeneration": 3,
            "stateFingerprint": "x",
        }
    ).record
    assert r == ComponentRecord(
        restarts=2, next_restart=T0 + timedelta(seconds=10), generation=3, fingerprint="x"
    )
    assert ComponentStatus.from_status(None) == ComponentStatus()
    assert ComponentStatus.from_status(None).record == ComponentRecord()


STORED = {
    "restarts": 1,
    "nextRestart": "2024-01-01T00:00:20+00:00",
    "gaveUp": False,
    "checkpointGeneration": 2,
    "stateFingerprint": "l2-aaaaaaaaaaaa",
    "configHash": "bbbbbbbbbbbb",
    "pod": "lab-basic",
    "phase": "BackOff",
    "message": "basic: restarting in 5 s",
    "lastStart": "2024-01-01T00:00:03.250000+00:00",
    "checkpointPath": "/var/lib/sluice/checkpoints/basic/g2",
}


def test_component_status_is_read_and_written_with_the_same_keys_and_values():
    entry = ComponentStatus.from_status(STORED)
    assert entry == ComponentStatus(
        record=ComponentRecord(
            restarts=1,
            next_restart=datetime(2024, 1, 1, 0, 0, 20, tzinfo=UTC),
            gave_up=False,
            generation=2,
            fingerprint="l2-aaaaaaaaaaaa",
            config_hash="bbbbbbbbbbbb",
        ),
        pod="lab-basic",
        phase="BackOff",
        message="basic: restarting in 5 s",
        last_start=datetime(2024, 1, 1, 0, 0, 3, 250000, tzinfo=UTC),
        checkpoint_path="/var/lib/sluice/checkpoints/basic/g2",
    )
    assert entry.to_status() == STORED


def test_a_fresh_component_writes_every_key_and_nulls_remove_the_old_values():
    # a merge patch keeps keys it does not name: "nextRestart": None is what clears a past deadline
    assert ComponentStatus(phase="Disabled", message="generator: disabled").to_status() == {
        "restarts": 0,
        "nextRestart": None,
        "gaveUp": False,
        "checkpointGeneration": 0,
        "stateFingerprint": None,
        "configHash": None,
        "pod": None,
        "phase": "Disabled",
        "message": "generator: disabled",
        "lastStart": None,
        "checkpointPath": None,
    }


def _c(kind: str, status: str) -> dict:
    return {"type": kind, "status": status, "reason": "r", "message": "m", "observedGeneration": 4}


TOPICS_AND_CLAIM_OK = [_c("Invalid", "False"), _c("TopicsReady", "True"), _c("CheckpointsReady", "True")]


def _summary(phases: dict[str, str], *, suspended=False, conditions=TOPICS_AND_CLAIM_OK, messages=None):
    components = {
        c: ComponentStatus(phase=p, message=(messages or {}).get(c, f"{c}: {p.lower()}"))
        for c, p in phases.items()
    }
    return st.summarize(
        suspended=suspended,
        components=components,
        enabled=["basic", "anomaly"],
        conditions=conditions,
        generation=4,
    )


def test_summary_of_a_running_pipeline():
    s = _summary({"generator": "Disabled", "basic": "Running", "anomaly": "Running"})
    assert (s.phase, s.jobs_ready) == ("Running", "2/2")
    assert s.conditions == (
        {
            "type": "JobsRunning",
            "status": "True",
            "reason": "Running",
            "message": "2/2 components running",
            "observedGeneration": 4,
        },
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "the pipeline is running",
            "observedGeneration": 4,
        },
    )


def test_summary_is_not_ready_while_the_claim_is_unbound_even_with_every_job_running():
    pending = [_c("Invalid", "False"), _c("TopicsReady", "True"), _c("CheckpointsReady", "False")]
    s = _summary({"basic": "Running", "anomaly": "Running"}, conditions=pending)
    assert (s.phase, s.jobs_ready) == ("Running", "2/2")
    assert [(c["type"], c["status"], c["reason"]) for c in s.conditions] == [
        ("JobsRunning", "True", "Running"),
        ("Ready", "False", "NotReady"),
    ]
    assert s.conditions[1]["message"] == "see the other conditions"


def test_summary_names_the_components_that_gave_up():
    s = _summary(
        {"basic": "GaveUp", "anomaly": "Pending"},
        messages={
            "basic": "basic: failed after 2 restarts; not restarting again (restartPolicy.maxAttempts is 2)"
        },
    )
    assert (s.phase, s.jobs_ready) == ("Degraded", "0/2")
    assert s.conditions[0] == {
        "type": "JobsRunning",
        "status": "False",
        "reason": "RestartLimitReached",
        "message": "basic: failed after 2 restarts; not restarting again (restartPolicy.maxAttempts is 2)",
        "observedGeneration": 4,
    }
    assert (s.conditions[1]["status"], s.conditions[1]["reason"]) == ("False", "NotReady")


def test_summary_of_a_suspended_and_of_a_starting_pipeline():
    s = _summary({"basic": "Suspended", "anomaly": "Suspended"}, suspended=True)
    assert (s.phase, s.jobs_ready) == ("Suspended", "0/2")
    assert (s.conditions[0]["reason"], s.conditions[0]["message"]) == (
        "Suspended",
        "the pipeline is suspended",
    )
    s = _summary({"basic": "Running", "anomaly": "Pending"})
    assert (s.phase, s.jobs_ready) == ("Pending", "1/2")
    assert (s.conditions[0]["status"], s.conditions[0]["reason"], s.conditions[0]["message"]) == (
        "False",
        "Starting",
        "1/2 components running",
    )
