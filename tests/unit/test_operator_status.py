"""Component entries, conditions, phases and settings of the operator (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sluice_operator import status as st
from sluice_operator.lifecycle import ComponentRecord
from sluice_operator.progress import Progress, Verdict
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
    "reason": "BackOff",
    "message": "basic: restarting in 5 s",
    "lastStart": "2024-01-01T00:00:03.250000+00:00",
    "checkpointPath": "/var/lib/sluice/checkpoints/basic/g2",
    "progress": None,  # written each pass from what Kafka says, never read back
    "executors": None,  # counted each pass (kubernetes mode), never read back
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
        reason="BackOff",
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
        "reason": None,
        "message": "generator: disabled",
        "lastStart": None,
        "checkpointPath": None,
        "executors": None,
        "progress": None,
    }


def _c(kind: str, status: str) -> dict:
    return {"type": kind, "status": status, "reason": "r", "message": "m", "observedGeneration": 4}


TOPICS_AND_CLAIM_OK = [_c("Invalid", "False"), _c("TopicsReady", "True"), _c("CheckpointsReady", "True")]


CAUGHT_UP = (
    Progress(lag_records=0),
    Verdict(progressing=True, stalled=False, lagging=False, why="caught up"),
)


def _summary(
    phases: dict[str, str],
    *,
    suspended=False,
    conditions=TOPICS_AND_CLAIM_OK,
    messages=None,
    judged: dict | None = None,
    unknown: str | None = None,
):
    """basic and anomaly enabled (generator too when in ``phases``); each job caught up unless ``judged`` says
    otherwise (job -> (progress, verdict), or None: not read)."""
    judged = {"basic": CAUGHT_UP, "anomaly": CAUGHT_UP, **(judged or {})}
    components = {
        c: ComponentStatus(
            phase=p,
            message=(messages or {}).get(c, f"{c}: {p.lower()}"),
            progress=(judged.get(c) or (None, None))[0],
            verdict=(judged.get(c) or (None, None))[1],
        )
        for c, p in phases.items()
    }
    return st.summarize(
        suspended=suspended,
        components=components,
        enabled=["basic", "anomaly"],
        jobs=["basic", "windowed", "anomaly"],  # windowed is not enabled: not followed
        conditions=conditions,
        generation=4,
        progress_unknown=unknown,
    )


def _brief(s: st.Summary) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in s.conditions]


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
            "type": "Progressing",
            "status": "True",
            "reason": "Progressing",
            "message": "basic: caught up; anomaly: caught up",
            "observedGeneration": 4,
        },
        {
            "type": "Stalled",
            "status": "False",
            "reason": "NotStalled",
            "message": "no job is stalled",
            "observedGeneration": 4,
        },
        {
            "type": "Lagging",
            "status": "False",
            "reason": "WithinSlo",
            "message": "every job is within spec.slo",
            "observedGeneration": 4,
        },
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "the pipeline is running and keeps up",
            "observedGeneration": 4,
        },
    )
    assert s.lag_records == 0


def test_a_stalled_job_makes_the_pipeline_stalled_and_not_ready_naming_it():
    why = "900 records waiting and no micro-batch committed in the last 320 s (stallSeconds: 300)"
    stalled = (
        Progress(lag_records=900),
        Verdict(progressing=False, stalled=True, lagging=False, why=why),
    )
    behind = (
        Progress(lag_records=40),
        Verdict(progressing=True, stalled=False, lagging=False, why="40 behind"),
    )
    s = _summary({"basic": "Running", "anomaly": "Running"}, judged={"basic": behind, "anomaly": stalled})
    assert s.phase == "Running" and s.lag_records == 940
    assert _brief(s)[1:] == [
        ("Progressing", "False", "Stalled", f"anomaly: {why}"),
        ("Stalled", "True", "Stalled", f"anomaly: {why}"),
        ("Lagging", "False", "WithinSlo", "every job is within spec.slo"),
        ("Ready", "False", "Stalled", f"Stalled: anomaly: {why}"),
    ]


def test_a_lagging_job_makes_the_pipeline_not_ready_naming_it_and_its_bound():
    why = "5000 records behind; more than maxLagRecords (1000)"
    lagging = (
        Progress(lag_records=5000),
        Verdict(
            progressing=True,
            stalled=False,
            lagging=True,
            why="5000 records behind",
            over=("more than maxLagRecords (1000)",),
        ),
    )
    s = _summary({"basic": "Running", "anomaly": "Running"}, judged={"basic": lagging})
    assert s.lag_records == 5000
    assert _brief(s)[1:] == [
        ("Progressing", "True", "Progressing", f"basic: {why}; anomaly: caught up"),
        ("Stalled", "False", "NotStalled", "no job is stalled"),
        ("Lagging", "True", "Lagging", f"basic: {why}"),
        ("Ready", "False", "Lagging", f"Lagging: basic: {why}"),
    ]


def test_progress_not_read_is_unknown_and_does_not_decide_ready():
    s = _summary(
        {"basic": "Running", "anomaly": "Running"},
        judged={"basic": None, "anomaly": None},
        unknown="Kafka did not answer",
    )
    message = "the progress of basic, anomaly is unknown: Kafka did not answer"
    assert s.lag_records is None
    assert _brief(s)[1:] == [
        ("Progressing", "Unknown", "ProgressUnknown", message),
        ("Stalled", "Unknown", "ProgressUnknown", message),
        ("Lagging", "Unknown", "ProgressUnknown", message),
        ("Ready", "True", "Ready", "the pipeline is running and keeps up"),
    ]


def test_a_job_not_running_with_records_waiting_is_not_progressing():
    waiting = (
        Progress(lag_records=30),
        Verdict(
            progressing=False,
            stalled=False,
            lagging=False,
            why="30 records waiting and the job is not running",
        ),
    )
    s = _summary({"basic": "Running", "anomaly": "Pending"}, judged={"anomaly": waiting})
    assert _brief(s)[1] == (
        "Progressing",
        "False",
        "NotRunning",
        "anomaly: 30 records waiting and the job is not running",
    )
    assert _brief(s)[-1] == ("Ready", "False", "Starting", "JobsRunning: 1/2 components running")


def test_summary_is_not_ready_while_the_claim_is_unbound_even_with_every_job_running():
    pending = [_c("Invalid", "False"), _c("TopicsReady", "True"), _c("CheckpointsReady", "False")]
    s = _summary({"basic": "Running", "anomaly": "Running"}, conditions=pending)
    assert (s.phase, s.jobs_ready) == ("Running", "2/2")
    assert [(c["type"], c["status"], c["reason"]) for c in s.conditions] == [
        ("JobsRunning", "True", "Running"),
        ("Progressing", "True", "Progressing"),
        ("Stalled", "False", "NotStalled"),
        ("Lagging", "False", "WithinSlo"),
        ("Ready", "False", "r"),  # the reason of the first condition in the way
    ]
    assert s.conditions[-1]["message"] == "CheckpointsReady: m"


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
    assert (s.conditions[-1]["status"], s.conditions[-1]["reason"]) == ("False", "RestartLimitReached")


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


def test_every_field_a_component_entry_writes_is_in_the_crds_status_schema():
    """The API server prunes what a structural schema does not declare: a field missing from the CRD is dropped
    from every status patch (kopf logs "inconsistencies"), so users never see it."""
    from sluice_operator import crd

    entry = ComponentStatus(
        record=ComponentRecord(
            restarts=1, next_restart=T2, gave_up=False, generation=2, fingerprint="f", config_hash="h"
        ),
        pod="p-windowed",
        phase="Running",
        reason="Running",
        message="running",
        last_start=T1,
        checkpoint_path="/var/lib/sluice/x",
        progress=Progress(
            lag_records=3, input_rate=1.0, processed_rate=1.0, last_progress=T1, freshness_seconds=2
        ),
        executors=2,
    ).to_status()
    schema = crd.status_schema()["properties"]["components"]["additionalProperties"]["properties"]
    assert set(entry) - set(schema) == set()
    assert set(entry["progress"]) - set(schema["progress"]["properties"]) == set()
