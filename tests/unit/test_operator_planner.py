"""One reconcile pass decided from what it observed: the plan's actions, Events and status, worked out by hand.

The pods a scenario observes are built with the manifests' own builder (as the operator would have created them);
everything a test expects of the plan is written out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sluice_operator import components, manifests, planner
from sluice_operator.kafka_admin import TopicResult
from sluice_operator.lifecycle import ComponentRecord
from sluice_operator.planner import (
    CREATE_CLAIM,
    CREATE_POD,
    DELETE_POD,
    NORMAL,
    WARNING,
    Event,
    Observed,
    Retry,
)
from sluice_operator.progress import Commit, Reading
from sluice_operator.spec import parse_spec
from sluice_operator.status import ComponentStatus

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RAW = {
    "kafka": {"bootstrapServers": "kafka:9092"},
    "restartPolicy": {"backoffSeconds": 10, "maxBackoffSeconds": 30, "maxAttempts": 3},
}
SPEC = parse_spec(RAW)
TOPICS = [
    "stream_data_topic",
    "processed_data_topic",
    "windowed_results_topic",
    "anomaly_alerts_topic",
    "dead_letter_topic",
]
UNCHANGED = [TopicResult(t, "unchanged", "as specified") for t in TOPICS]
BOUND = {"metadata": {"name": "lab-checkpoints"}, "status": {"phase": "Bound"}}
COMPONENTS = ("generator", "basic", "windowed", "anomaly")


def decide(observed: Observed | None, *, spec=SPEC, problems=(), **kw) -> planner.Plan:
    args = dict(
        name="lab",
        namespace="team-a",
        generation=1,
        status={},
        remembered={},
        reported=frozenset(),
        now=T0,
        kafka_retry_base=15.0,
    )
    args.update(kw)
    return planner.decide(spec=spec, problems=list(problems), observed=observed, **args)


def pod(
    component: str, phase: str, *, spec=SPEC, generation: int = 0, started: datetime | None = None
) -> dict:
    """The component's pod as the operator creates it, in ``phase`` (its container running since ``started``)."""
    plan = manifests.pod_plan(
        pipeline="lab",
        namespace="team-a",
        spec=spec,
        component=components.get(component),
        generation=generation,
    )
    status: dict = {"phase": phase}
    if started is not None:
        state = {"running": {"startedAt": started.isoformat().replace("+00:00", "Z")}}
        status["containerStatuses"] = [{"name": component, "state": state}]
    return {**plan.manifest, "status": status}


def running(spec=SPEC, started: datetime | None = None, **phases: str) -> dict[str, dict]:
    return {c: pod(c, phases.get(c, "Running"), spec=spec, started=started) for c in COMPONENTS}


def conditions(plan: planner.Plan) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in plan.status["conditions"]]


def condition(plan: planner.Plan, kind: str) -> tuple[str, str, str, str]:
    (found,) = [c for c in conditions(plan) if c[0] == kind]
    return found


UNREAD = "the progress of basic, windowed, anomaly is unknown: not read yet"


def test_a_fresh_pipeline_gets_its_claim_and_a_pod_per_component():
    created = TopicResult("stream_data_topic", "created", "created with 3 partitions, replication factor 1")
    plan = decide(Observed(topics=[created, *UNCHANGED[1:]], claim=None, pods={}))

    assert [(a.kind, a.name) for a in plan.actions] == [
        (CREATE_CLAIM, "lab-checkpoints"),
        (CREATE_POD, "lab-generator"),
        (CREATE_POD, "lab-basic"),
        (CREATE_POD, "lab-windowed"),
        (CREATE_POD, "lab-anomaly"),
    ]
    assert [a.event for a in plan.actions] == [
        Event(NORMAL, "CheckpointsCreated", "created PersistentVolumeClaim lab-checkpoints"),
        Event(NORMAL, "PodCreated", "generator: created pod lab-generator"),
        Event(NORMAL, "PodCreated", "basic: created pod lab-basic"),
        Event(NORMAL, "PodCreated", "windowed: created pod lab-windowed"),
        Event(NORMAL, "PodCreated", "anomaly: created pod lab-anomaly"),
    ]
    claim = plan.actions[0].manifest
    assert (claim["kind"], claim["metadata"]["namespace"]) == ("PersistentVolumeClaim", "team-a")
    assert [a.manifest["kind"] for a in plan.actions[1:]] == ["Pod"] * 4
    assert plan.events == (
        Event(NORMAL, "Created", "topic stream_data_topic: created with 3 partitions, replication factor 1"),
    )
    assert (plan.retry, plan.reported) == (None, frozenset())

    status = plan.status
    assert {
        k: status[k] for k in ("observedGeneration", "kafkaFailures", "checkpointClaim", "phase", "jobsReady")
    } == {
        "observedGeneration": 1,
        "kafkaFailures": 0,
        "checkpointClaim": "lab-checkpoints",
        "phase": "Pending",
        "jobsReady": "0/4",
    }
    assert status["topics"] == {
        "source": {"name": "stream_data_topic", "partitions": 3},
        "processed": {"name": "processed_data_topic", "partitions": 1},
        "windowed": {"name": "windowed_results_topic", "partitions": 1},
        "alerts": {"name": "anomaly_alerts_topic", "partitions": 1},
        "dead_letter": {"name": "dead_letter_topic", "partitions": 1},
    }
    assert conditions(plan) == [
        ("TopicsReady", "True", "TopicsReady", "all topics exist as specified"),
        ("CheckpointsReady", "False", "Pending", "lab-checkpoints is Pending"),  # a new claim is Pending
        ("JobsRunning", "False", "Starting", "0/4 components running"),
        ("Progressing", "Unknown", "ProgressUnknown", UNREAD),  # no reading in this scenario
        ("Stalled", "Unknown", "ProgressUnknown", UNREAD),
        ("Lagging", "Unknown", "ProgressUnknown", UNREAD),
        ("Ready", "False", "Pending", "CheckpointsReady: lab-checkpoints is Pending"),  # the first in the way
        ("Invalid", "False", "Valid", "the spec is valid"),
    ]
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {"2024-01-01T00:00:00Z"}
    assert {c["observedGeneration"] for c in status["conditions"]} == {1}

    basic = status["components"]["basic"]
    created_hash = plan.actions[2].manifest["metadata"]["annotations"]["streaming.sluice.dev/config-hash"]
    assert basic == {
        "restarts": 0,
        "nextRestart": None,
        "gaveUp": False,
        "checkpointGeneration": 0,
        "stateFingerprint": basic["stateFingerprint"],
        "configHash": created_hash,
        "pod": "lab-basic",
        "phase": "Pending",
        "reason": "Created",
        "message": "basic: creating its pod",
        "lastStart": "2024-01-01T00:00:00+00:00",
        "checkpointPath": "/var/lib/sluice/checkpoints/basic/g0",
        "executors": None,
        "progress": None,
    }
    assert basic["stateFingerprint"].startswith("l2-") and len(basic["stateFingerprint"]) == 15
    generator = status["components"]["generator"]
    assert (generator["stateFingerprint"], generator["checkpointPath"], generator["pod"]) == (
        None,
        None,
        "lab-generator",
    )
    # what the next pass starts from is what was written
    assert {c: e.to_status() for c, e in plan.components.items()} == status["components"]


def test_a_failed_pod_waits_out_its_backoff_then_is_replaced():
    steady = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=running()))
    ready = "the pipeline is running and keeps up"
    assert (steady.actions, steady.events, steady.status["phase"]) == (
        (),
        (Event(NORMAL, "Ready", ready),),
        "Running",
    )
    assert condition(steady, "Ready") == ("Ready", "True", "Ready", ready)
    assert steady.standing == {"Ready"}

    failed = running(basic="Failed")
    first = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=failed),
        remembered=steady.components,
        standing=steady.standing,
    )
    assert first.actions == ()
    backoff = "basic: pod failed; restart 1 in 10 s"
    assert first.events == (Event(WARNING, "BackOff", backoff), Event(WARNING, "Degraded", backoff))
    assert first.standing == {"Degraded"}
    basic = first.status["components"]["basic"]
    assert (basic["phase"], basic["nextRestart"], basic["restarts"]) == (
        "BackOff",
        "2024-01-01T00:00:10+00:00",
        0,
    )
    assert (first.status["phase"], first.status["jobsReady"]) == ("Degraded", "3/4")
    assert conditions(first)[2] == ("JobsRunning", "False", "Starting", "3/4 components running")

    # 4 s later, with a status in hand from before the backoff (one patch behind): the memo keeps the deadline,
    # and the BackOff Event is not posted again
    later = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=failed),
        remembered=first.components,
        status=steady.status,
        now=T0 + timedelta(seconds=4),
        standing=first.standing,
    )
    assert (later.actions, later.events) == ((), ())
    basic = later.status["components"]["basic"]
    assert (basic["message"], basic["nextRestart"]) == (
        "basic: restarting in 6 s",
        "2024-01-01T00:00:10+00:00",
    )

    due = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=failed),
        remembered=later.components,
        now=T0 + timedelta(seconds=10),
        standing=later.standing,
    )
    assert [(a.kind, a.name, a.event) for a in due.actions] == [
        (DELETE_POD, "lab-basic", Event(NORMAL, "Restarting", "basic: replacing its failed pod (restart 1)"))
    ]
    assert due.events == ()
    basic = due.status["components"]["basic"]
    assert (basic["phase"], basic["restarts"], basic["pod"]) == ("Restarting", 1, "lab-basic")

    gone = {c: p for c, p in failed.items() if c != "basic"}
    again = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=gone),
        remembered=due.components,
        now=T0 + timedelta(seconds=11),
    )
    assert [(a.kind, a.name, a.event) for a in again.actions] == [
        (CREATE_POD, "lab-basic", Event(NORMAL, "PodCreated", "basic: created pod lab-basic"))
    ]
    basic = again.status["components"]["basic"]
    assert (basic["restarts"], basic["nextRestart"], basic["phase"], basic["lastStart"]) == (
        1,
        None,
        "Pending",
        "2024-01-01T00:00:11+00:00",
    )


def test_the_restart_limit_is_told_once_and_named_by_the_jobs_running_condition():
    failed = running(basic="Failed")
    spent = {"basic": ComponentStatus(record=ComponentRecord(restarts=3))}
    plan = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=failed), remembered=spent)
    message = "basic: failed after 3 restarts; not restarting again (restartPolicy.maxAttempts is 3)"
    assert (plan.actions, plan.events) == (
        (),
        (Event(WARNING, "RestartLimitReached", message), Event(WARNING, "Degraded", message)),
    )
    assert conditions(plan)[2] == ("JobsRunning", "False", "RestartLimitReached", message)
    assert (plan.status["phase"], plan.status["components"]["basic"]["gaveUp"]) == ("Degraded", True)

    again = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=failed),
        remembered=plan.components,
        standing=plan.standing,
    )
    assert (again.actions, again.events) == ((), ())


def test_suspend_removes_the_pods_and_then_waits():
    suspended = parse_spec({**RAW, "suspend": True})
    plan = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=running()), spec=suspended)
    assert [(a.kind, a.name, a.event) for a in plan.actions] == [
        (DELETE_POD, f"lab-{c}", Event(NORMAL, "Suspended", f"{c}: removing its pod (suspended)"))
        for c in COMPONENTS
    ]
    assert plan.events == ()
    assert (plan.status["phase"], plan.status["jobsReady"]) == ("Suspended", "0/4")
    assert conditions(plan)[2:7] == [
        ("JobsRunning", "False", "Suspended", "the pipeline is suspended"),
        ("Progressing", "False", "Suspended", "the pipeline is suspended"),
        ("Stalled", "False", "Suspended", "the pipeline is suspended"),
        ("Lagging", "Unknown", "Suspended", "the pipeline is suspended"),
        ("Ready", "False", "Suspended", "JobsRunning: the pipeline is suspended"),
    ]
    assert plan.status["components"]["basic"]["pod"] == "lab-basic"

    after = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods={}), spec=suspended, remembered=plan.components
    )
    assert (after.actions, after.events) == ((), ())
    basic = after.status["components"]["basic"]
    assert (basic["phase"], basic["message"], basic["pod"]) == ("Suspended", "basic: suspended", None)


def test_an_invalid_spec_is_reported_and_nothing_is_done():
    spec, problems = planner.read_spec({**RAW, "spark": {"conf": {"spark.master": "local[1]"}}})
    assert problems == [
        "spec.spark.conf: spark.master are set by the operator (spark.master from spark.mode and spark.master); "
        "remove them from spark.conf"
    ]
    remembered = {"basic": ComponentStatus(record=ComponentRecord(restarts=2))}
    plan = decide(None, spec=spec, problems=problems, remembered=remembered, reported=frozenset({"x"}))
    message = problems[0]
    assert plan.status == {
        "observedGeneration": 1,
        "phase": "Invalid",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": message,
                "observedGeneration": 1,
                "lastTransitionTime": "2024-01-01T00:00:00Z",
            },
            {
                "type": "Invalid",
                "status": "True",
                "reason": "InvalidSpec",
                "message": message,
                "observedGeneration": 1,
                "lastTransitionTime": "2024-01-01T00:00:00Z",
            },
        ],
    }
    told = f"invalid:{message}"
    assert (plan.actions, plan.events) == ((), (Event(WARNING, "InvalidSpec", message, once=told),))
    assert (plan.components, plan.reported, plan.retry) == (remembered, frozenset({"x", told}), None)
    # the timer's next pass tells nothing new; a valid spec forgets it, so the same mistake made later is told
    again = decide(None, spec=spec, problems=problems, remembered=remembered, reported=plan.reported)
    assert (again.events, again.reported) == ((), plan.reported)
    fixed = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=running()), reported=plan.reported)
    assert fixed.reported == frozenset({"x"})


def test_a_spec_that_does_not_parse_is_invalid_too():
    spec, problems = planner.read_spec({"kafka": {"topics": {"source": {"partitions": 0}}}})
    assert (spec, problems) == (None, ["spec.kafka.topics.source.partitions: 0 must be at least 1"])
    plan = decide(None, spec=None, problems=problems)
    assert plan.status["phase"] == "Invalid"
    why = "spec.kafka.topics.source.partitions: 0 must be at least 1"
    assert plan.events == (Event(WARNING, "InvalidSpec", why, once=f"invalid:{why}"),)


def test_a_standing_topic_refusal_is_told_once():
    refusal = TopicResult(
        "stream_data_topic", "partitions_decrease_refused", "has 3 partitions; cannot decrease to 1"
    )
    observed = Observed(topics=[refusal, *UNCHANGED[1:]], claim=BOUND, pods=running())
    first = decide(observed)
    told = "topic stream_data_topic: has 3 partitions; cannot decrease to 1"
    assert first.events == (Event(WARNING, "PartitionsDecreaseRefused", told),)
    assert first.reported == frozenset({told})
    assert conditions(first)[0] == ("TopicsReady", "False", "PartitionDecreaseRefused", told)
    assert condition(first, "Ready") == ("Ready", "False", "PartitionDecreaseRefused", f"TopicsReady: {told}")
    assert first.actions == ()

    second = decide(observed, reported=first.reported, remembered=first.components)
    assert (second.events, second.reported) == ((), frozenset({told}))
    assert conditions(second)[0] == ("TopicsReady", "False", "PartitionDecreaseRefused", told)


def test_a_replication_mismatch_and_a_raised_partition_count():
    mismatch = TopicResult("anomaly_alerts_topic", "replication_mismatch", "has replication factor 1, not 3")
    raised = TopicResult("processed_data_topic", "partitions_raised", "raised partitions from 1 to 2")
    plan = decide(Observed(topics=[raised, mismatch], claim=BOUND, pods=running()))
    assert plan.events == (
        Event(NORMAL, "PartitionsRaised", "topic processed_data_topic: raised partitions from 1 to 2"),
        Event(WARNING, "ReplicationMismatch", "topic anomaly_alerts_topic: has replication factor 1, not 3"),
    )
    assert conditions(plan)[0] == (
        "TopicsReady",
        "False",
        "ReplicationMismatch",
        "topic anomaly_alerts_topic: has replication factor 1, not 3",
    )


def test_kafka_unavailable_ends_the_pass_and_retries_later_and_later():
    down = Observed(kafka_unavailable="Kafka at kafka:9092 did not answer within 5 s")
    before = {
        "phase": "Running",
        "kafkaFailures": 2,
        "conditions": [
            {
                "type": "TopicsReady",
                "status": "True",
                "reason": "TopicsReady",
                "message": "all topics exist as specified",
                "observedGeneration": 1,
                "lastTransitionTime": "2023-12-31T00:00:00Z",
            }
        ],
    }
    remembered = {"basic": ComponentStatus(record=ComponentRecord(restarts=1))}
    plan = decide(down, status=before, remembered=remembered, reported=frozenset({"x"}))
    assert plan.retry == Retry("Kafka is unreachable; retrying in 60 s", 60.0)  # 15 s doubled twice
    assert (plan.actions, plan.events) == (
        (),
        (Event(WARNING, "KafkaUnavailable", "Kafka at kafka:9092 did not answer within 5 s"),),
    )
    assert {k: v for k, v in plan.status.items() if k != "conditions"} == {
        "observedGeneration": 1,
        "phase": "Running",
        "kafkaFailures": 3,
    }
    assert conditions(plan) == [
        ("TopicsReady", "False", "KafkaUnavailable", "Kafka at kafka:9092 did not answer within 5 s"),
        ("Ready", "False", "KafkaUnavailable", "waiting for Kafka"),
        ("Invalid", "False", "Valid", "the spec is valid"),
    ]
    assert plan.status["conditions"][0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    assert (plan.components, plan.reported) == (remembered, frozenset({"x"}))

    first = decide(down)
    assert first.retry == Retry("Kafka is unreachable; retrying in 15 s", 15.0)
    assert (first.status["phase"], first.status["kafkaFailures"]) == ("Pending", 1)
    assert decide(down, status={"kafkaFailures": 9}).retry == Retry(
        "Kafka is unreachable; retrying in 300 s", 300.0
    )


def test_a_topic_error_is_told_on_every_pass_and_the_pods_are_still_reconciled():
    plan = decide(Observed(topic_error="topic x: Kafka refused: boom", claim=BOUND, pods={}))
    assert plan.events == (Event(WARNING, "TopicError", "topic x: Kafka refused: boom"),)
    assert [a.kind for a in plan.actions] == [CREATE_POD] * 4
    assert conditions(plan)[0] == ("TopicsReady", "False", "TopicError", "topic x: Kafka refused: boom")
    assert "topics" not in plan.status and plan.status["kafkaFailures"] == 0


def test_an_existing_claim_is_never_created_and_must_be_bound():
    shared = parse_spec({**RAW, "checkpoints": {"existingClaim": "shared"}})
    missing = decide(Observed(topics=UNCHANGED, claim=None, pods=running(shared)), spec=shared)
    assert missing.actions == ()
    assert missing.status["checkpointClaim"] == "shared"
    assert conditions(missing)[1] == (
        "CheckpointsReady",
        "False",
        "ClaimNotFound",
        "PersistentVolumeClaim shared does not exist",
    )
    bound = decide(
        Observed(topics=UNCHANGED, claim={"status": {"phase": "Bound"}}, pods=running(shared)), spec=shared
    )
    assert conditions(bound)[1] == ("CheckpointsReady", "True", "Bound", "shared is bound")
    unbound = decide(Observed(topics=UNCHANGED, claim={"metadata": {}}, pods=running(shared)), spec=shared)
    assert conditions(unbound)[1] == ("CheckpointsReady", "False", "Pending", "shared is not bound yet")


def test_a_window_change_moves_the_job_to_a_fresh_checkpoint_and_replaces_its_pod():
    steady = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=running()))
    wider = parse_spec({**RAW, "jobs": {"basic": {"window": "1m", "slide": "30s"}}})
    plan = decide(
        Observed(topics=UNCHANGED, claim=BOUND, pods=running()),
        spec=wider,
        remembered=steady.components,
        generation=2,
    )
    assert plan.events == (
        Event(
            WARNING,
            "CheckpointReset",
            "basic: its windows or source changed, so its state cannot be reused; it starts on a fresh checkpoint "
            "from the earliest offsets (the old one stays at /var/lib/sluice/checkpoints/basic/g0)",
        ),
    )
    assert [(a.kind, a.name, a.event) for a in plan.actions] == [
        (DELETE_POD, "lab-basic", Event(NORMAL, "SpecChanged", "basic: the spec changed; replacing its pod"))
    ]
    basic = plan.status["components"]["basic"]
    assert (basic["checkpointGeneration"], basic["checkpointPath"]) == (
        1,
        "/var/lib/sluice/checkpoints/basic/g1",
    )
    assert plan.status["components"]["windowed"]["checkpointGeneration"] == 0


def test_suspend_is_applied_while_kafka_is_unreachable():
    suspended = parse_spec({**RAW, "suspend": True})
    down = Observed(
        kafka_unavailable="Kafka at kafka:9092 did not answer within 5 s", pods=running(suspended)
    )
    plan = decide(down, spec=suspended, status={"phase": "Running"})
    assert [(a.kind, a.name) for a in plan.actions] == [(DELETE_POD, f"lab-{c}") for c in COMPONENTS]
    assert plan.status["phase"] == "Suspended"
    assert {c: e["phase"] for c, e in plan.status["components"].items()} == dict.fromkeys(
        COMPONENTS, "Suspended"
    )
    assert plan.retry == Retry(
        "Kafka is unreachable; retrying in 15 s", 15.0
    )  # topics are still to be checked


def test_a_component_turned_off_while_kafka_is_unreachable_loses_its_pod_and_the_others_are_left_alone():
    spec = parse_spec({**RAW, "generator": {"enabled": False}})
    down = Observed(kafka_unavailable="Kafka at kafka:9092 did not answer within 5 s", pods=running(spec))
    plan = decide(down, spec=spec)
    assert [(a.kind, a.name) for a in plan.actions] == [(DELETE_POD, "lab-generator")]
    assert set(plan.status["components"]) == {"generator"}


def test_how_long_a_failed_pod_ran_comes_from_its_container_and_decides_a_fresh_count():
    def failed(ran: timedelta) -> dict:
        started = T0 - ran
        terminated = {"startedAt": started.isoformat(), "finishedAt": T0.isoformat(), "exitCode": 1}
        return {
            **pod("basic", "Failed"),
            "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": terminated}}]},
        }

    used_up = {
        "basic": ComponentStatus(
            record=ComponentRecord(
                restarts=3,
                config_hash=pod("basic", "Failed")["metadata"]["annotations"][
                    manifests.ANNOTATION_CONFIG_HASH
                ],
            )
        )
    }
    seen = Observed(topics=UNCHANGED, claim=BOUND, pods={**running(), "basic": failed(timedelta(hours=2))})
    plan = decide(seen, remembered=used_up)
    assert plan.components["basic"].phase == "BackOff" and plan.components["basic"].record.restarts == 0
    seen = Observed(topics=UNCHANGED, claim=BOUND, pods={**running(), "basic": failed(timedelta(minutes=5))})
    assert decide(seen, remembered=used_up).components["basic"].phase == "GaveUp"


def test_lost_source_data_degrades_the_pipeline_with_one_event():
    terminated = {
        "exitCode": 3,
        "message": "SourceDataLost: Could not read records in offset [5, 9) for topic partition x-0",
    }
    lost = {
        **pod("windowed", "Failed"),
        "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": terminated}}]},
    }
    seen = Observed(topics=UNCHANGED, claim=BOUND, pods={**running(), "windowed": lost})
    plan = decide(seen)
    message = (
        "windowed: Could not read records in offset [5, 9) for topic partition x-0. Not restarting: set "
        "input.failOnDataLoss: false to skip what is gone and go on"
    )
    assert (plan.actions, plan.events) == (
        (),
        (Event(WARNING, "SourceDataLost", message), Event(WARNING, "Degraded", message)),
    )
    assert plan.status["phase"] == "Degraded"
    assert ("JobsRunning", "False", "SourceDataLost", message) in conditions(plan)
    again = decide(seen, remembered=plan.components, standing=plan.standing)
    assert again.events == () and again.status["phase"] == "Degraded"  # told once


def test_topics_another_pipeline_owns_stop_the_pipeline_with_one_event():
    taken = {"stream_data_topic": "team-a/first"}
    seen = Observed(topics=UNCHANGED[1:], claim=BOUND, pods=running(), topics_taken=taken)
    plan = decide(seen)
    why = (
        "topic stream_data_topic is owned by pipeline team-a/first; this pipeline neither adopts, changes, writes "
        "nor deletes them and runs no pods: give it other topic names (spec.kafka.topics), or delete the other "
        "pipeline"
    )
    assert plan.events[0] == Event(WARNING, "TopicOwnedByAnotherPipeline", why)
    assert [(a.kind, a.name) for a in plan.actions] == [(DELETE_POD, f"lab-{c}") for c in COMPONENTS]
    assert ("TopicsReady", "False", "TopicOwnedByAnotherPipeline", why) in conditions(plan)
    assert plan.retry is None
    quiet = decide(Observed(claim=BOUND, pods={}, topics_taken=taken), reported=plan.reported)
    assert (quiet.actions, [e for e in quiet.events if e.reason == "TopicOwnedByAnotherPipeline"]) == ((), [])


def reading(
    at: datetime, committed: int | None, *, end: int = 1_500, commit: Commit | None = None
) -> Reading:
    """The source topic's 3 partitions, each ``end / 3`` records, and a group that committed ``committed / 3`` on
    each (None: nothing)."""
    per = {p: end // 3 for p in range(3)}
    done = {} if committed is None else {p: committed // 3 for p in range(3)}
    return Reading(at=at, end=per, start={p: 0 for p in range(3)}, committed=done, commit=commit)


def test_each_jobs_progress_goes_into_its_status_and_the_conditions_against_the_slo():
    spec = parse_spec({**RAW, "slo": {"maxLagRecords": 1000}})
    ten_before = T0 - timedelta(seconds=10)
    commit = Commit(batch_id=4, at=T0 - timedelta(seconds=2), watermark=T0 - timedelta(seconds=12))
    observed = Observed(
        topics=UNCHANGED,
        claim=BOUND,
        pods=running(spec, started=T0 - timedelta(seconds=60)),
        readings={
            "basic": reading(T0, 1_500, commit=commit),  # caught up
            "windowed": reading(T0, 1_200, commit=commit),  # 300 behind, within 1000
            "anomaly": reading(T0, None),  # nothing committed: 1,500 behind, more than 1000
        },
    )
    before = {
        "basic": reading(ten_before, 1_200, end=1_200)
    }  # 10 s before: 300 written and 300 processed since
    plan = decide(observed, spec=spec, before=before)

    progress = {c: plan.status["components"][c]["progress"] for c in ("basic", "windowed", "anomaly")}
    assert progress == {
        "basic": {
            "lagRecords": 0,
            "inputRate": 30.0,
            "processedRate": 30.0,
            "lastProgressTime": "2023-12-31T23:59:58+00:00",
            "freshnessSeconds": 12.0,
        },
        "windowed": {
            "lagRecords": 300,
            "inputRate": None,  # no earlier reading of it
            "processedRate": None,
            "lastProgressTime": "2023-12-31T23:59:58+00:00",
            "freshnessSeconds": 12.0,
        },
        "anomaly": {
            "lagRecords": 1500,
            "inputRate": None,
            "processedRate": None,
            "lastProgressTime": None,
            "freshnessSeconds": None,
        },
    }
    assert plan.status["components"]["generator"]["progress"] is None
    assert plan.status["lagRecords"] == 1800
    lagging = "anomaly: 1500 records behind; more than maxLagRecords (1000)"
    assert conditions(plan)[3:7] == [
        (
            "Progressing",
            "True",
            "Progressing",
            "basic: caught up; windowed: 300 records behind; anomaly: 1500 records behind; more than "
            "maxLagRecords (1000)",
        ),
        ("Stalled", "False", "NotStalled", "no job is stalled"),
        ("Lagging", "True", "Lagging", lagging),
        ("Ready", "False", "Lagging", f"Lagging: {lagging}"),
    ]
    assert (plan.actions, plan.events, plan.status["phase"]) == (
        (),
        (Event(WARNING, "Lagging", lagging),),
        "Running",
    )
    # the base of the next rates: basic's new reading (10 s on); the others' first
    assert plan.readings == {c: observed.readings[c] for c in ("basic", "windowed", "anomaly")}


def test_a_stalled_job_is_restarted_with_a_warning_and_counted():
    spec = parse_spec({**RAW, "slo": {"stallSeconds": 60}})
    commit = Commit(batch_id=9, at=T0 - timedelta(seconds=300), watermark=None)
    started = T0 - timedelta(seconds=600)
    pods_ = running(spec, started=started)

    def seen(at: datetime) -> Observed:
        readings = {j: reading(at, 1_500, commit=commit) for j in ("basic", "anomaly")}
        readings["windowed"] = reading(at, 900, commit=commit)  # 600 waiting, its last commit 300 s ago
        return Observed(topics=UNCHANGED, claim=BOUND, pods=pods_, readings=readings)

    # 90 s ago a pass first saw windowed's records waiting (it had been idle, with nothing to read, since its
    # last commit): not stalled then; 90 s on, with nothing committed, it is.
    first = decide(seen(T0 - timedelta(seconds=90)), spec=spec, now=T0 - timedelta(seconds=90))
    assert first.actions == () and condition(first, "Stalled")[1] == "False"
    plan = decide(seen(T0), spec=spec, remembered=first.components, standing=first.standing)
    readings = seen(T0).readings

    why = "600 records waiting and no micro-batch committed in the last 90 s (stallSeconds: 60)"
    message = f"windowed: stalled ({why}); replacing its pod (restart 1)"
    assert [(a.kind, a.name, a.event) for a in plan.actions] == [
        (DELETE_POD, "lab-windowed", Event(WARNING, "Stalled", message))
    ]
    windowed = plan.status["components"]["windowed"]
    assert (windowed["phase"], windowed["restarts"], windowed["message"]) == ("Restarting", 1, message)
    assert condition(plan, "Stalled") == ("Stalled", "True", "Stalled", f"windowed: {why}")
    # the pipeline, Ready before, became Degraded (a job restarting); the restart's Event already says it stalled
    assert plan.events == (Event(WARNING, "Degraded", message),)
    assert condition(plan, "Ready") == ("Ready", "False", "Starting", "JobsRunning: 3/4 components running")
    assert plan.status["phase"] == "Degraded"

    # its new pod, running for 10 s, has stallSeconds from its start: not stalled, though nothing was committed
    fresh = {**running(spec, started=started), "windowed": pod("windowed", "Running", spec=spec, started=T0)}
    later = T0 + timedelta(seconds=10)
    again = decide(
        Observed(
            topics=UNCHANGED,
            claim=BOUND,
            pods=fresh,
            readings={**readings, "windowed": reading(later, 900, commit=commit)},
        ),
        spec=spec,
        now=later,
        remembered=plan.components,
    )
    assert again.actions == ()
    assert condition(again, "Stalled")[1] == "False"
    assert again.status["components"]["windowed"]["restarts"] == 1


def with_status(pod_: dict, uid: str, **status) -> dict:
    return {**pod_, "metadata": {**pod_["metadata"], "uid": uid}, "status": {**pod_["status"], **status}}


def test_a_pod_that_cannot_start_is_told_once_per_pod_with_the_reason_in_its_status():
    message = 'Back-off pulling image "registry.example/sluice/spark-jobs:9.9"'
    waiting = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": message}}}
    stuck = with_status(pod("anomaly", "Pending"), "u1", containerStatuses=[waiting])
    seen = Observed(topics=UNCHANGED, claim=BOUND, pods={**running(), "anomaly": stuck})
    first = decide(seen)
    told = Event(
        WARNING, "ImagePullBackOff", f"anomaly: pod lab-anomaly: {message}", once="pod:u1:ImagePullBackOff"
    )
    assert first.events == (told,)
    anomaly = first.status["components"]["anomaly"]
    assert (anomaly["phase"], anomaly["reason"], anomaly["message"]) == (
        "Pending",
        "ImagePullBackOff",
        f"anomaly: pending; ImagePullBackOff: {message}",
    )
    # the next passes do not tell it again; a new pod with the same problem is a new occurrence
    again = decide(seen, reported=first.reported, standing=first.standing, remembered=first.components)
    assert again.events == ()
    renewed = Observed(topics=UNCHANGED, claim=BOUND, pods={**running(), "anomaly": with_status(stuck, "u2")})
    later = decide(renewed, reported=again.reported, standing=again.standing, remembered=again.components)
    assert [e.once for e in later.events] == ["pod:u2:ImagePullBackOff"]
    assert later.reported == frozenset({"pod:u2:ImagePullBackOff"})  # u1 is gone: forgotten


def test_an_unschedulable_pod_and_an_oom_killed_container_are_told():
    unschedulable = with_status(
        pod("windowed", "Pending"),
        "u3",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }
        ],
    )
    killed = with_status(
        pod("basic", "Failed"),
        "u4",
        phase="Failed",
        containerStatuses=[{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
    )
    plan = decide(
        Observed(
            topics=UNCHANGED, claim=BOUND, pods={**running(), "windowed": unschedulable, "basic": killed}
        )
    )
    oom = (
        "basic: pod lab-basic: its container used more memory than its limit (1408Mi) and was killed; raise "
        "spec.spark.driver.memory (the pod's limit is the heap plus 384 MiB)"
    )
    assert [e for e in plan.events if e.once] == [
        Event(WARNING, "OOMKilled", oom, once="pod:u4:OOMKilled"),
        Event(
            WARNING,
            "Unschedulable",
            "windowed: pod lab-windowed: 0/1 nodes are available: 1 Insufficient cpu.",
            once="pod:u3:Unschedulable",
        ),
    ]
    assert plan.status["components"]["basic"]["reason"] == "OOMKilled"
    assert plan.status["components"]["windowed"]["reason"] == "Unschedulable"


def test_entering_ready_and_lagging_is_told_once_each_time_and_not_again_after_an_operator_restart():
    spec = parse_spec({**RAW, "slo": {"maxLagRecords": 100}})
    started = T0 - timedelta(seconds=30)

    def seen(committed: int) -> Observed:
        readings = {j: reading(T0, committed) for j in ("basic", "windowed", "anomaly")}
        return Observed(topics=UNCHANGED, claim=BOUND, pods=running(spec, started=started), readings=readings)

    ready = decide(seen(1_500), spec=spec)
    assert ready.events == (Event(NORMAL, "Ready", "the pipeline is running and keeps up"),)
    steady = decide(seen(1_500), spec=spec, standing=ready.standing)
    assert steady.events == ()
    behind = decide(seen(1_200), spec=spec, standing=steady.standing)  # 300 behind each
    assert [(e.type, e.reason) for e in behind.events] == [(WARNING, "Lagging")]
    assert behind.standing == {"Lagging"}
    caught_up = decide(seen(1_500), spec=spec, standing=behind.standing)
    assert caught_up.events == (Event(NORMAL, "Ready", "the pipeline is running and keeps up"),)
    # the operator restarted: no memory, the status in hand says Ready: nothing to tell
    restarted = decide(seen(1_500), spec=spec, status=caught_up.status, standing=None)
    assert restarted.events == ()


# --- cluster modes: executors outside the drivers' pods ----------------------------------------------------------

STANDALONE = parse_spec(
    {
        **RAW,
        "spark": {"mode": "standalone", "executorWaitSeconds": 60},
        "checkpoints": {"existingClaim": "shared"},
        "slo": {"stallSeconds": 60},
    }
)
SHARED = {"metadata": {"name": "shared"}, "status": {"phase": "Bound"}}


def waiting(component: str, *, spec, since: datetime, ready: bool = False) -> dict:
    """A cluster-mode driver's pod, Running since ``since``, its readiness probe failing since then."""
    found = pod(component, "Running", spec=spec, started=since)
    found["status"]["containerStatuses"][0]["ready"] = ready
    stamp = since.isoformat().replace("+00:00", "Z")
    found["status"]["conditions"] = [{"type": "Ready", "status": str(ready), "lastTransitionTime": stamp}]
    return found


def test_a_job_without_an_executor_past_its_wait_is_said_and_not_restarted_even_when_it_stalls():
    started = T0 - timedelta(seconds=600)
    commit = Commit(batch_id=3, at=T0 - timedelta(seconds=500), watermark=None)
    pods_ = {c: waiting(c, spec=STANDALONE, since=started, ready=c != "windowed") for c in COMPONENTS}
    pods_["generator"] = pod("generator", "Running", spec=STANDALONE, started=started)

    def seen(at: datetime) -> Observed:
        readings = {j: reading(at, 1_500, commit=commit) for j in ("basic", "anomaly")}
        readings["windowed"] = reading(at, 300, commit=commit)  # 1,200 waiting, nothing committed for 500 s
        return Observed(topics=UNCHANGED, claim=SHARED, pods=pods_, readings=readings)

    earlier = T0 - timedelta(seconds=120)  # a pass saw the records waiting then
    before = decide(seen(earlier), spec=STANDALONE, now=earlier)
    observed = seen(T0)
    plan = decide(observed, spec=STANDALONE, remembered=before.components, standing=before.standing)

    # stalled, but a new driver would wait for an executor as well: no restart, the reason is said instead
    assert plan.actions == ()
    said = (
        "no executor for 600 s: the master spark://sluice-spark-master:7077 has no worker with 1 free core(s) and 1g "
        "free memory for it (each job takes spark.executor.instances x cores = 1 core(s)); add workers, or lower "
        "spark.executor"
    )
    assert condition(plan, "ExecutorsUnavailable") == (
        "ExecutorsUnavailable",
        "True",
        "NoExecutors",
        f"windowed: {said}",
    )
    assert condition(plan, "Ready") == (
        "Ready",
        "False",
        "NoExecutors",
        f"ExecutorsUnavailable: windowed: {said}",
    )
    assert condition(plan, "Stalled")[1] == "True"
    windowed = plan.status["components"]["windowed"]
    assert (windowed["phase"], windowed["reason"], windowed["restarts"]) == ("Running", "NoExecutors", 0)
    assert windowed["message"].endswith(said)
    # told once, by the pass that first found it (480 s without one then); not again
    assert [e for e in before.events if e.reason == "ExecutorsUnavailable"] == [
        Event(WARNING, "ExecutorsUnavailable", f"windowed: {said.replace('600 s', '480 s')}")
    ]
    assert [e.reason for e in plan.events] == ["Stalled"]


def test_a_job_waiting_less_than_its_wait_is_not_unavailable_and_local_mode_has_no_such_condition():
    since = T0 - timedelta(seconds=59)
    pods_ = {c: waiting(c, spec=STANDALONE, since=since) for c in COMPONENTS}
    plan = decide(Observed(topics=UNCHANGED, claim=SHARED, pods=pods_), spec=STANDALONE)
    assert condition(plan, "ExecutorsUnavailable") == (
        "ExecutorsUnavailable",
        "False",
        "Available",
        "no job is waiting for an executor",
    )
    # back in local mode the condition is gone, not left as it was
    local = decide(Observed(topics=UNCHANGED, claim=BOUND, pods=running()), status=plan.status)
    assert "ExecutorsUnavailable" not in [c[0] for c in conditions(local)]


KUBERNETES = parse_spec(
    {
        **RAW,
        "spark": {"mode": "kubernetes", "executor": {"instances": 2}, "executorWaitSeconds": 30},
        "checkpoints": {"existingClaim": "shared"},
    }
)


def test_a_kubernetes_mode_driver_is_created_after_what_it_needs_and_its_executor_pods_are_reported():
    plan = decide(Observed(topics=UNCHANGED, claim=SHARED, pods={}), spec=KUBERNETES)
    created = {a.name: a for a in plan.actions if a.kind == CREATE_POD}
    assert created["lab-generator"].needs == ()
    needs = created["lab-windowed"].needs
    assert [(n["kind"], n["metadata"]["name"]) for n in needs] == [
        ("ServiceAccount", "lab-spark"),
        ("Role", "lab-spark"),
        ("RoleBinding", "lab-spark"),
        ("ConfigMap", "lab-spark-executors"),
        ("Service", "lab-windowed-driver"),
    ]
    assert sorted(needs[3]["data"]) == ["anomaly.yaml", "basic.yaml", "windowed.yaml"]

    # windowed's two executor pods: one running, one no node can take; its driver has had none for 45 s
    since = T0 - timedelta(seconds=45)
    drivers = {c: waiting(c, spec=KUBERNETES, since=since, ready=c != "windowed") for c in COMPONENTS}
    pending = {
        "metadata": {"name": "lab-windowed-exec-2", "uid": "e2"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient cpu.",
                }
            ],
        },
    }
    executors = {
        "windowed": [{"metadata": {"name": "lab-windowed-exec-1"}, "status": {"phase": "Running"}}, pending]
    }
    later = decide(
        Observed(topics=UNCHANGED, claim=SHARED, pods=drivers, executors=executors), spec=KUBERNETES
    )
    assert later.status["components"]["windowed"]["executors"] == 1
    assert later.status["components"]["basic"]["executors"] == 0
    assert later.status["components"]["generator"]["executors"] is None
    assert condition(later, "ExecutorsUnavailable")[3] == (
        "windowed: no executor for 45 s; its executor pods: lab-windowed-exec-2: Unschedulable: 0/2 nodes are "
        "available: 2 Insufficient cpu."
    )


def test_a_kubernetes_mode_pipeline_name_must_leave_room_for_its_services():
    ok = planner.read_spec(
        {**RAW, "spark": {"mode": "kubernetes"}, "checkpoints": {"existingClaim": "x"}}, name="a" * 47
    )
    assert ok[1] == []
    _, problems = planner.read_spec(
        {**RAW, "spark": {"mode": "kubernetes"}, "checkpoints": {"existingClaim": "x"}}, name="a" * 48
    )
    assert problems == [
        "metadata.name: in kubernetes mode each job's driver has a Service <name>-<job>-driver, at most 63 "
        "characters, so the pipeline's name may have at most 47 (it has 48); rename the pipeline, or use spark.mode "
        "local or standalone"
    ]
    _, problems = planner.read_spec({**RAW, "spark": {"mode": "kubernetes"}}, name="lab")
    assert problems == [
        "spec.checkpoints.existingClaim: kubernetes mode needs a shared (ReadWriteMany) volume the executor pods "
        "mount (their executors write the state stores); set it, or use spark.mode: local"
    ]
