"""What to do with one component's pod, decided from what is observed: pure, so every rule is unit-tested.

A component is the generator or one of the jobs. Each reconcile pass looks at its pod (or its absence), the
component's record in the pipeline's status, the spec and the clock, and :func:`decide` returns one action:

* ``create`` — no pod, and none is waited for: create it;
* ``delete`` — the pod must go (disabled, suspended, spec changed, or a failed pod whose backoff is over);
* ``wait`` — nothing to do yet (a restart backoff, a pod still terminating);
* ``keep`` — the pod is as it should be (or stays failed: restart policy Never, or the limit was reached).

Restarts follow ``spec.restartPolicy``: a failed pod (or, with ``Always``, one that completed) is recreated after
``backoffSeconds * 2^restarts`` seconds, capped at ``maxBackoffSeconds``; after ``maxAttempts`` restarts the
operator gives up and says so. A job that stopped because records it had not read are gone from Kafka is not
restarted (it would stop again): the pod stays, with reason ``SourceDataLost``. Restarts count within a window: a pod that ran at least ``windowSeconds`` before it
ended starts a fresh count (and backoff), so incidents months apart never add up to the limit. A spec change that
alters a pod resets the count. A running job that is stalled (its source has records waiting and it committed no
micro-batch for ``spec.slo.stallSeconds``) is replaced at once, a restart counted like a failed pod's, with reason
``Stalled``; restart policy Never leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sluice_operator.spec import RestartPolicy

CREATE, DELETE, WAIT, KEEP = "create", "delete", "wait", "keep"
#: A job's exit code when records it had not read are gone from Kafka (``spark_jobs.runner.DATA_LOST_EXIT``):
#: restarting cannot help, the user decides (``input.failOnDataLoss: false`` skips what is gone).
DATA_LOST_EXIT = 3


@dataclass(frozen=True)
class ComponentRecord:
    """A component's entry in the pipeline's status, carried from one pass to the next."""

    restarts: int = 0
    next_restart: datetime | None = None
    gave_up: bool = False
    generation: int = 0
    fingerprint: str | None = None
    config_hash: str | None = None


@dataclass(frozen=True)
class ObservedPod:
    """The component's pod as the API server reports it."""

    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    config_hash: str | None
    terminating: bool = False
    ran_seconds: float | None = None  # how long its container ran before it ended (None: unknown, or running)
    exit_code: int | None = None  # its container's, once it ended
    termination_message: str | None = None  # what the container left in its termination log
    running_since: datetime | None = None  # when its container started running (None: it is not running)


@dataclass(frozen=True)
class Decision:
    """The action for one component, the record to store, and what to tell the user."""

    action: str
    record: ComponentRecord
    phase: str  # what status.components.<name>.phase says
    reason: str
    message: str


def backoff_seconds(policy: RestartPolicy, restarts: int) -> int:
    """Delay before restart number ``restarts + 1``: doubling from ``backoffSeconds``, capped."""
    return min(policy.backoff_seconds * 2**restarts, policy.max_backoff_seconds)


def next_generation(record: ComponentRecord, fingerprint: str) -> tuple[ComponentRecord, bool]:
    """The record with the checkpoint generation to use for a job whose state fingerprint is ``fingerprint``,
    and whether it moved to a fresh generation (the old checkpoint directory stays on the volume)."""
    if record.fingerprint is None:
        return replace(record, fingerprint=fingerprint), False
    if record.fingerprint == fingerprint:
        return record, False
    return replace(record, fingerprint=fingerprint, generation=record.generation + 1), True


def decide(
    *,
    component: str,
    wanted: bool,
    suspended: bool,
    desired_hash: str,
    pod: ObservedPod | None,
    record: ComponentRecord,
    policy: RestartPolicy,
    now: datetime,
    stalled: str | None = None,
) -> Decision:
    """Decide what to do with one component's pod (see the module docstring for the rules); ``stalled`` says why a
    running job is stalled (:func:`sluice_operator.progress.judge`), None when it is not."""
    if not wanted or suspended:
        phase, reason = ("Suspended", "Suspended") if suspended else ("Disabled", "Disabled")
        if pod is not None and not pod.terminating:
            return Decision(
                DELETE, record, phase, reason, f"{component}: removing its pod ({reason.lower()})"
            )
        return Decision(
            KEEP, replace(record, next_restart=None), phase, reason, f"{component}: {reason.lower()}"
        )

    if pod is not None and pod.terminating:
        return Decision(WAIT, record, "Terminating", "Terminating", f"{component}: waiting for its pod to go")

    if pod is not None and pod.config_hash != desired_hash:
        fresh = replace(record, restarts=0, next_restart=None, gave_up=False, config_hash=desired_hash)
        return Decision(
            DELETE, fresh, "Updating", "SpecChanged", f"{component}: the spec changed; replacing its pod"
        )

    if pod is None:
        if record.next_restart is not None and now < record.next_restart:
            wait = (record.next_restart - now).total_seconds()
            return Decision(WAIT, record, "BackOff", "BackOff", f"{component}: restarting in {wait:.0f} s")
        created = replace(record, next_restart=None, config_hash=desired_hash)
        return Decision(CREATE, created, "Pending", "Created", f"{component}: creating its pod")

    if pod.phase == "Running" and stalled is not None and policy.type != "Never":
        return _stalled(component, pod=pod, record=record, policy=policy, now=now, why=stalled)

    ended = pod.phase == "Failed" or (pod.phase == "Succeeded" and policy.type == "Always")
    if not ended or policy.type == "Never" or (pod.phase == "Succeeded" and policy.type == "OnFailure"):
        if pod.phase == "Failed":
            return Decision(KEEP, record, "Failed", "Failed", f"{component}: failed (restartPolicy Never)")
        return Decision(KEEP, record, pod.phase, pod.phase, f"{component}: {pod.phase.lower()}")

    if pod.phase == "Failed" and pod.exit_code == DATA_LOST_EXIT:
        lost = (
            pod.termination_message or "SourceDataLost: records it had not read are gone from Kafka"
        ).strip()
        return Decision(
            KEEP,
            replace(record, gave_up=True, next_restart=None),
            "DataLost",
            "SourceDataLost",
            f"{component}: {lost.removeprefix('SourceDataLost: ')}. Not restarting: set "
            "input.failOnDataLoss: false to skip what is gone and go on",
        )
    fresh = ""
    ran = pod.ran_seconds
    if (
        record.next_restart is None
        and not record.gave_up
        and record.restarts
        and ran is not None
        and ran >= policy.window_seconds
    ):
        record = replace(record, restarts=0)
        fresh = f" (it ran {ran:.0f} s, at least restartPolicy.windowSeconds: a fresh count)"
    if record.gave_up or (policy.max_attempts and record.restarts >= policy.max_attempts):
        given = replace(record, gave_up=True, next_restart=None)
        return Decision(
            KEEP,
            given,
            "GaveUp",
            "RestartLimitReached",
            f"{component}: {pod.phase.lower()} after {record.restarts} restarts; not restarting again "
            f"(restartPolicy.maxAttempts is {policy.max_attempts})",
        )
    if record.next_restart is None:
        delay = backoff_seconds(policy, record.restarts)
        scheduled = replace(record, next_restart=now + timedelta(seconds=delay))
        return Decision(
            WAIT,
            scheduled,
            "BackOff",
            "BackOff",
            f"{component}: pod {pod.phase.lower()}; restart {record.restarts + 1} in {delay} s{fresh}",
        )
    if now < record.next_restart:
        wait = (record.next_restart - now).total_seconds()
        return Decision(WAIT, record, "BackOff", "BackOff", f"{component}: restarting in {wait:.0f} s")
    restarted = replace(record, restarts=record.restarts + 1)
    return Decision(
        DELETE,
        restarted,
        "Restarting",
        "Restarting",
        f"{component}: replacing its {pod.phase.lower()} pod (restart {restarted.restarts})",
    )


def _stalled(
    component: str,
    *,
    pod: ObservedPod,
    record: ComponentRecord,
    policy: RestartPolicy,
    now: datetime,
    why: str,
) -> Decision:
    """A running job that has stopped making progress: replaced at once (``stallSeconds`` was its wait), counted as
    a restart within the same window and limit as a failed pod's."""
    ran = None if pod.running_since is None else (now - pod.running_since).total_seconds()
    if not record.gave_up and record.restarts and ran is not None and ran >= policy.window_seconds:
        record = replace(record, restarts=0)
    if record.gave_up or (policy.max_attempts and record.restarts >= policy.max_attempts):
        return Decision(
            KEEP,
            replace(record, gave_up=True, next_restart=None),
            "GaveUp",
            "RestartLimitReached",
            f"{component}: stalled ({why}) after {record.restarts} restarts; not restarting again "
            f"(restartPolicy.maxAttempts is {policy.max_attempts})",
        )
    restarted = replace(record, restarts=record.restarts + 1, next_restart=None)
    return Decision(
        DELETE,
        restarted,
        "Restarting",
        "Stalled",
        f"{component}: stalled ({why}); replacing its pod (restart {restarted.restarts})",
    )
