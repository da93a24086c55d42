"""Restart policy, backoff, spec changes and suspend for one component, step by step on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sluice_operator.lifecycle import (
    CREATE,
    DELETE,
    KEEP,
    WAIT,
    ComponentRecord,
    ObservedPod,
    backoff_seconds,
    decide,
    next_generation,
)
from sluice_operator.spec import RestartPolicy

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)
POLICY = RestartPolicy(type="OnFailure", backoff_seconds=10, max_backoff_seconds=30, max_attempts=3)


def step(pod, record, *, now, policy=POLICY, wanted=True, suspended=False, desired="h1", stalled=None):
    return decide(
        component="basic",
        wanted=wanted,
        suspended=suspended,
        desired_hash=desired,
        pod=pod,
        record=record,
        policy=policy,
        now=now,
        stalled=stalled,
    )


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(POLICY, n) for n in range(4)] == [10, 20, 30, 30]


def test_failed_pod_is_restarted_after_backoff_until_the_limit():
    record = ComponentRecord()
    d = step(None, record, now=T0)
    assert d.action == CREATE and d.record.config_hash == "h1"
    record, failed = d.record, ObservedPod("Failed", "h1")

    expected_delays = [10, 20, 30]  # 10 * 2^n capped at 30
    now = T0
    for attempt, delay in enumerate(expected_delays, start=1):
        d = step(failed, record, now=now)
        assert (d.action, d.reason) == (WAIT, "BackOff")
        assert d.message == f"basic: pod failed; restart {attempt} in {delay} s"
        assert d.record.next_restart == now + timedelta(seconds=delay)
        record = d.record
        # still waiting one second before the deadline
        assert step(failed, record, now=now + timedelta(seconds=delay - 1)).action == WAIT
        now = now + timedelta(seconds=delay)
        d = step(failed, record, now=now)
        assert (d.action, d.record.restarts) == (DELETE, attempt)
        record = d.record
        d = step(None, record, now=now)
        assert d.action == CREATE and d.record.next_restart is None
        record = d.record

    d = step(failed, record, now=now)
    assert (d.action, d.phase, d.reason) == (KEEP, "GaveUp", "RestartLimitReached")
    assert "after 3 restarts" in d.message and "maxAttempts is 3" in d.message
    assert d.record.gave_up
    assert step(failed, d.record, now=now + timedelta(hours=1)).action == KEEP


def test_never_and_on_failure_leave_ended_pods_always_restarts_completed_ones():
    never = RestartPolicy(type="Never")
    d = step(ObservedPod("Failed", "h1"), ComponentRecord(), now=T0, policy=never)
    assert (d.action, d.phase) == (KEEP, "Failed")
    d = step(ObservedPod("Succeeded", "h1"), ComponentRecord(), now=T0)
    assert (d.action, d.phase) == (KEEP, "Succeeded")
    always = RestartPolicy(type="Always", backoff_seconds=5)
    d = step(ObservedPod("Succeeded", "h1"), ComponentRecord(), now=T0, policy=always)
    assert (d.action, d.record.next_restart) == (WAIT, T0 + timedelta(seconds=5))


def test_unlimited_attempts():
    unlimited = RestartPolicy(max_attempts=0, backoff_seconds=1, max_backoff_seconds=1)
    record = ComponentRecord(restarts=500, next_restart=T0)
    d = step(ObservedPod("Failed", "h1"), record, now=T0, policy=unlimited)
    assert (d.action, d.record.restarts) == (DELETE, 501)


def test_running_pod_is_kept_and_a_spec_change_replaces_it_and_resets_the_count():
    record = ComponentRecord(restarts=2, gave_up=False, config_hash="h1")
    assert step(ObservedPod("Running", "h1"), record, now=T0).action == KEEP
    d = step(ObservedPod("Running", "h1"), record, now=T0, desired="h2")
    assert (d.action, d.reason, d.record.restarts, d.record.config_hash) == (DELETE, "SpecChanged", 0, "h2")
    # a pod that gave up is also replaced when its spec changes
    d = step(ObservedPod("Failed", "h1"), ComponentRecord(gave_up=True), now=T0, desired="h2")
    assert d.action == DELETE and not d.record.gave_up


def test_suspend_and_disable_remove_the_pod():
    d = step(ObservedPod("Running", "h1"), ComponentRecord(), now=T0, suspended=True)
    assert (d.action, d.phase) == (DELETE, "Suspended")
    assert step(None, ComponentRecord(), now=T0, suspended=True).action == KEEP
    d = step(ObservedPod("Running", "h1"), ComponentRecord(), now=T0, wanted=False)
    assert (d.action, d.phase) == (DELETE, "Disabled")


def test_terminating_pod_is_waited_for():
    d = step(ObservedPod("Running", "h1", terminating=True), ComponentRecord(), now=T0, desired="h2")
    assert (d.action, d.phase, d.message) == (WAIT, "Terminating", "basic: waiting for its pod to go")
    assert d.record == ComponentRecord()  # the spec change is taken up once the old pod is gone


def test_checkpoint_generation_moves_only_when_the_fingerprint_changes():
    record, reset = next_generation(ComponentRecord(), "fp1")
    assert (record.generation, record.fingerprint, reset) == (0, "fp1", False)
    assert next_generation(record, "fp1") == (record, False)
    moved, reset = next_generation(record, "fp2")
    assert (moved.generation, moved.fingerprint, reset) == (1, "fp2", True)


def test_a_pod_that_ran_a_whole_window_starts_a_fresh_count():
    # POLICY: maxAttempts 3, windowSeconds 3600 (the default). Three restarts used up by earlier incidents.
    used_up = ComponentRecord(restarts=3, config_hash="h1")
    short = ObservedPod("Failed", "h1", ran_seconds=3599)
    assert (step(short, used_up, now=T0).action, step(short, used_up, now=T0).reason) == (
        KEEP,
        "RestartLimitReached",
    )

    long = ObservedPod("Failed", "h1", ran_seconds=3600)
    d = step(long, used_up, now=T0)
    assert (d.action, d.reason, d.record.restarts) == (WAIT, "BackOff", 0)
    assert d.message == (
        "basic: pod failed; restart 1 in 10 s (it ran 3600 s, at least restartPolicy.windowSeconds: a fresh count)"
    )
    assert d.record.next_restart == T0 + timedelta(seconds=10)  # the first backoff again, not the longest
    # the next passes over the same failed pod count on from the fresh record
    d = step(long, d.record, now=T0 + timedelta(seconds=10))
    assert (d.action, d.record.restarts) == (DELETE, 1)


def test_a_fresh_count_never_revives_a_pipeline_that_gave_up_or_a_pod_of_unknown_run_time():
    gave_up = ComponentRecord(restarts=3, gave_up=True, config_hash="h1")
    assert (
        step(ObservedPod("Failed", "h1", ran_seconds=7200), gave_up, now=T0).reason == "RestartLimitReached"
    )
    used_up = ComponentRecord(restarts=3, config_hash="h1")
    assert step(ObservedPod("Failed", "h1"), used_up, now=T0).reason == "RestartLimitReached"
    window = RestartPolicy(backoff_seconds=10, max_backoff_seconds=30, max_attempts=3, window_seconds=60)
    assert (
        step(ObservedPod("Failed", "h1", ran_seconds=61), used_up, now=T0, policy=window).reason == "BackOff"
    )


def test_a_job_that_lost_source_data_is_not_restarted_and_says_what_is_gone():
    record = ComponentRecord(restarts=1, config_hash="h1")
    lost = ObservedPod(
        "Failed",
        "h1",
        exit_code=3,
        termination_message="SourceDataLost: Could not read records in offset [100, 200) for topic partition s-0",
    )
    d = step(lost, record, now=T0)
    assert (d.action, d.phase, d.reason, d.record.gave_up, d.record.next_restart) == (
        KEEP,
        "DataLost",
        "SourceDataLost",
        True,
        None,
    )
    assert d.message == (
        "basic: Could not read records in offset [100, 200) for topic partition s-0. Not restarting: set "
        "input.failOnDataLoss: false to skip what is gone and go on"
    )
    assert step(lost, d.record, now=T0 + timedelta(hours=1)).action == KEEP  # still not restarted
    assert (
        step(ObservedPod("Failed", "h1", exit_code=1), record, now=T0).reason == "BackOff"
    )  # other failures are restarted as before
    # a spec change (failOnDataLoss: false) replaces the pod with a fresh count
    assert step(lost, d.record, now=T0, desired="h2").action == DELETE


def test_a_stalled_running_job_is_replaced_at_once_and_counted():
    running = ObservedPod("Running", "h1", running_since=T0)
    why = "50 records waiting and no micro-batch committed in the last 400 s (stallSeconds: 300)"
    d = step(
        running, ComponentRecord(restarts=1, config_hash="h1"), now=T0 + timedelta(seconds=400), stalled=why
    )
    assert (d.action, d.phase, d.reason) == (DELETE, "Restarting", "Stalled")
    assert d.message == f"basic: stalled ({why}); replacing its pod (restart 2)"
    assert (d.record.restarts, d.record.next_restart) == (2, None)
    # once gone, it is created again at once (no backoff: stallSeconds was the wait)
    assert step(None, d.record, now=T0 + timedelta(seconds=401)).action == CREATE


def test_a_stalled_job_counts_towards_the_limit_and_policy_never_leaves_it():
    running = ObservedPod("Running", "h1", running_since=T0)
    later = T0 + timedelta(seconds=400)
    d = step(running, ComponentRecord(restarts=3, config_hash="h1"), now=later, stalled="stuck")
    assert (d.action, d.phase, d.reason, d.record.gave_up) == (KEEP, "GaveUp", "RestartLimitReached", True)
    assert (
        d.message
        == "basic: stalled (stuck) after 3 restarts; not restarting again (restartPolicy.maxAttempts is 3)"
    )
    never = RestartPolicy(type="Never")
    d = step(running, ComponentRecord(config_hash="h1"), now=later, stalled="stuck", policy=never)
    assert (d.action, d.phase) == (KEEP, "Running")


def test_a_stall_after_a_long_run_starts_a_fresh_count():
    # it ran 2 h (at least windowSeconds, 1 h by default) before it stalled: the 3 earlier restarts are forgotten
    running = ObservedPod("Running", "h1", running_since=T0)
    d = step(
        running, ComponentRecord(restarts=3, config_hash="h1"), now=T0 + timedelta(hours=2), stalled="stuck"
    )
    assert (d.action, d.record.restarts) == (DELETE, 1)
