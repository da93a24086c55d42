"""What one reconcile pass does to a pipeline, decided from what the pass observed: pure, so every rule is
unit-tested.

The handlers *read* (the spec; the topics, whose reconciliation is itself an action with a result; the checkpoint
claim; the pods), :func:`decide` turns that into a :class:`Plan`, and the handlers *act* on it: the Events, the
actions (each followed by the Event that reports it), the status patch, and a retry when Kafka was unreachable.

A pass, in order:

1. The spec: an invalid one gives phase Invalid, the Invalid condition and an InvalidSpec Event, nothing else.
2. The topics: Kafka unreachable ends the pass (condition, Event, ``kafkaFailures`` + 1, a retry after a doubling
   delay), once the pods of a suspended pipeline or of a disabled component are removed (that needs no topic).
   A topic another pipeline owns (:mod:`sluice_operator.ownership`) ends it too: TopicsReady false with reason
   TopicOwnedByAnotherPipeline, an Event when it first appears, and the pipeline's pods removed. A topic created or changed gets an Event; a refusal that stands gets one when it first appears.
3. The checkpoint claim: created when absent (unless the spec names an existing claim); CheckpointsReady says
   whether it is bound.
4. Each component: a fresh checkpoint generation when its state fingerprint moved; a job's progress, from this
   pass's reading of its consumer group, judged against ``spec.slo`` (:mod:`sluice_operator.progress`); then what
   :func:`lifecycle.decide` says about its pod (a stalled job is replaced); what stops its pod from running
   (ImagePullBackOff, Unschedulable, OOMKilled...) is told once per pod.
5. The summary: phase, ``jobsReady``, ``lagRecords``, JobsRunning, Progressing, Stalled, Lagging and Ready
   (:func:`status.summarize`), and an Event for each of :data:`STATES` the pipeline has entered.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sluice_operator import checkpoints, commands, lifecycle, manifests, ownership, progress
from sluice_operator import components as registry
from sluice_operator import status as st
from sluice_operator.spec import PipelineSpec, SpecError, parse_spec, semantic_problems

NORMAL, WARNING = "Normal", "Warning"
CREATE_CLAIM, CREATE_POD, DELETE_POD = "create_claim", "create_pod", "delete_pod"
TOPIC_OWNED = "TopicOwnedByAnotherPipeline"

KAFKA_MAX_RETRY_DELAY = 300.0

#: The states of a pipeline an Event announces when it enters them: its Ready condition true, its phase Degraded,
#: its Lagging, Stalled or ExecutorsUnavailable condition true.
READY, DEGRADED, LAGGING, STALLED = "Ready", "Degraded", "Lagging", "Stalled"
EXECUTORS_UNAVAILABLE = st.EXECUTORS_UNAVAILABLE
STATES = (READY, DEGRADED, LAGGING, STALLED, EXECUTORS_UNAVAILABLE)
#: Why a pod cannot start, as its container's waiting state says: each is an Event (once per pod) and the reason in
#: the component's status.
WAITING_PROBLEMS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


def kafka_retry_delay(base: float, failures: int) -> float:
    """Seconds before the next try after ``failures`` consecutive passes found Kafka unreachable: doubling from
    ``base``, at most five minutes."""
    return min(base * 2 ** min(failures, 20), KAFKA_MAX_RETRY_DELAY)


class TopicResult(Protocol):
    """What reconciling one topic did or refused (the shape of ``kafka_admin.TopicResult``)."""

    @property
    def name(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def problem(self) -> bool: ...


@dataclass(frozen=True)
class Observed:
    """What the pass found. When Kafka was unreachable, only the pods were looked at."""

    kafka_unavailable: str | None = None  # why Kafka could not be reached
    topics: Sequence[TopicResult] = ()  # what reconciling the topics did or refused
    topic_error: str | None = None  # Kafka answered a request with an error
    topics_taken: Mapping[str, str] = field(default_factory=dict)  # topic -> the pipeline that owns it
    claim: Mapping | None = None  # the checkpoint claim as read; None: there is none
    pods: Mapping[str, Mapping] = field(default_factory=dict)  # the pipeline's pods by component
    executors: Mapping[str, Sequence[Mapping]] = field(default_factory=dict)  # kubernetes mode: by job
    readings: Mapping[str, progress.Reading] = field(
        default_factory=dict
    )  # each job's position in its source
    progress_error: str | None = None  # why the jobs' positions could not be read


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the pipeline; one with ``once`` is posted once for that key (see
    :attr:`Plan.reported`)."""

    type: str  # NORMAL or WARNING
    reason: str
    message: str
    once: str | None = None


@dataclass(frozen=True)
class Action:
    """A change to the cluster, and the Event that reports it once it is made."""

    kind: str  # CREATE_CLAIM, CREATE_POD or DELETE_POD
    name: str  # of the claim or the pod
    event: Event
    manifest: Mapping | None = None  # what to create (the handlers adopt it first)
    component: str | None = None  # whose pod it is
    #: What to apply before the pod is created (kubernetes mode: what its driver needs).
    needs: tuple[Mapping, ...] = ()


@dataclass(frozen=True)
class Retry:
    """The pass could not finish: try again after ``delay`` seconds."""

    message: str
    delay: float


@dataclass(frozen=True)
class Plan:
    """What a pass does: the actions in order, the other Events, the status patch, and what to remember.

    (*) A component's entry is to be remembered once its action is made (at once when it has none), so that a
    change that fails is decided again on the next pass, from the entry before it."""

    status: dict  # written as it is (a merge patch: None removes a key)
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    components: Mapping[str, st.ComponentStatus] = field(default_factory=dict)  # for the next pass (*)
    reported: frozenset[str] = frozenset()  # standing topic refusals and pod problems already told
    retry: Retry | None = None
    readings: Mapping[str, progress.Reading] = field(default_factory=dict)  # to compute the next pass's rates
    standing: frozenset[str] = (
        frozenset()
    )  # which of :data:`STATES` the pipeline is in, to tell a change once


def read_spec(data: Mapping | None, *, name: str | None = None) -> tuple[PipelineSpec | None, list[str]]:
    """The parsed spec and what is wrong with it (empty when it can run), the pipeline's ``name`` included; no
    spec when it does not parse."""
    try:
        spec = parse_spec(dict(data or {}))
    except SpecError as exc:
        return None, [str(exc)]
    return spec, semantic_problems(spec, name=name)


def decide(
    *,
    name: str,
    namespace: str,
    generation: int,
    spec: PipelineSpec | None,
    problems: Sequence[str],
    observed: Observed | None,
    status: Mapping,
    remembered: Mapping[str, st.ComponentStatus],
    reported: frozenset[str],
    now: datetime,
    kafka_retry_base: float,
    before: Mapping[str, progress.Reading] | None = None,
    standing: frozenset[str] | None = None,
) -> Plan:
    """The plan of one pass over pipeline ``namespace/name`` (see the module docstring for the steps).

    ``spec`` and ``problems`` come from :func:`read_spec`; ``observed`` is None when the spec is invalid (nothing
    is looked at then). ``status`` is the status in hand, which may be one patch behind: ``remembered`` (the
    components as the last pass left them) and ``reported`` take precedence over it. ``kafka_retry_base`` is the
    first retry delay when Kafka is unreachable; ``before`` the jobs' readings the last pass kept
    (:attr:`Plan.readings`), for their rates; ``standing`` the states the last pass left (:attr:`Plan.standing`;
    None after an operator restart: read from the status)."""
    previous_conditions = status.get("conditions")
    was = _standing(status.get("phase"), previous_conditions or []) if standing is None else standing
    if problems or spec is None:
        message = "; ".join(problems)
        conditions = [
            st.condition(st.INVALID, True, "InvalidSpec", message, generation=generation),
            st.condition(st.READY, False, "InvalidSpec", message, generation=generation),
        ]
        events, told = _once([Event(WARNING, "InvalidSpec", message, once=f"invalid:{message}")], reported)
        return Plan(
            status={
                "observedGeneration": generation,
                "phase": "Invalid",
                "conditions": st.merge_conditions(previous_conditions, conditions, now=now),
            },
            events=tuple(events),
            components=remembered,
            reported=told,
            standing=was - {READY, DEGRADED},
        )
    reported = frozenset(k for k in reported if not k.startswith("invalid:"))
    if observed is None:
        raise ValueError("a valid spec needs what the pass observed")

    valid = st.condition(st.INVALID, False, "Valid", "the spec is valid", generation=generation)
    enabled = [c.name for c in registry.enabled(spec)]
    blocked = dict(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        observed=observed,
        status=status,
        remembered=remembered,
        now=now,
        conditions=[valid],
        before=before or {},
        standing=was - {READY},
    )
    if observed.kafka_unavailable is not None:
        failures = int(status.get("kafkaFailures") or 0)
        delay = kafka_retry_delay(kafka_retry_base, failures)
        why = observed.kafka_unavailable
        return _blocked(
            **blocked,
            reason="KafkaUnavailable",
            why=why,
            waiting="waiting for Kafka",
            events=[Event(WARNING, "KafkaUnavailable", why)],
            reported=reported,
            retry=Retry(f"Kafka is unreachable; retrying in {delay:g} s", delay),
            more={"kafkaFailures": failures + 1},
        )
    if observed.topics_taken:
        why = ownership.refusal(observed.topics_taken)
        return _blocked(
            **blocked,
            reason=TOPIC_OWNED,
            why=why,
            waiting="its topics belong to another pipeline",
            events=[] if why in reported else [Event(WARNING, TOPIC_OWNED, why)],
            reported=reported | {why},
            stop_pods=True,
            more={"kafkaFailures": 0},
        )

    out: dict = {"observedGeneration": generation}
    if observed.topic_error is not None:
        events = [Event(WARNING, "TopicError", observed.topic_error)]
        topics = st.condition(
            st.TOPICS_READY, False, "TopicError", observed.topic_error, generation=generation
        )
    else:
        events, reported = _topic_events(observed.topics, reported)
        topics = _topics_condition(observed.topics, generation=generation)
        out["topics"] = {
            role: {"name": t.name, "partitions": t.partitions} for role, t in spec.kafka.topics.all()
        }
    out["kafkaFailures"] = 0

    claim_action, claim, claim_condition = _claim(
        name=name, namespace=namespace, spec=spec, found=observed.claim, generation=generation
    )
    out["checkpointClaim"] = claim
    actions = [claim_action] if claim_action else []

    components, pod_actions, notices = _pods(
        registry.COMPONENTS,
        wanted=enabled,
        name=name,
        namespace=namespace,
        spec=spec,
        observed=observed,
        status=status,
        remembered=remembered,
        now=now,
        before=before or {},
    )
    actions += pod_actions
    events += notices

    passed = [valid, topics, claim_condition]
    summary = st.summarize(
        suspended=spec.suspend,
        components=components,
        enabled=enabled,
        jobs=registry.names(registry.JOBS),
        conditions=passed,
        generation=generation,
        progress_unknown=observed.progress_error,
        executors_elsewhere=spec.spark.mode != "local",
    )
    judged = [*passed, *summary.conditions]
    now_standing = _standing(summary.phase, judged)
    events += _transitions(
        was,
        now_standing,
        conditions=judged,
        components=components,
        restarted_stalled=any(a.event.reason == STALLED for a in actions),
    )
    live = {(p.get("metadata") or {}).get("uid") for p in observed.pods.values()}
    reported = frozenset(k for k in reported if not k.startswith("pod:") or k.split(":")[1] in live)
    events, reported = _once(events, reported)
    out.update(
        phase=summary.phase,
        jobsReady=summary.jobs_ready,
        lagRecords=summary.lag_records,
        components={c: entry.to_status() for c, entry in components.items()},
        conditions=[
            c
            for c in st.merge_conditions(previous_conditions, judged, now=now)
            # back in local mode, the executors run in the drivers: the condition says nothing any more
            if spec.spark.mode != "local" or c["type"] != st.EXECUTORS_UNAVAILABLE
        ],
    )
    return Plan(
        status=out,
        actions=tuple(actions),
        events=tuple(events),
        components=components,
        reported=reported,
        standing=now_standing,
        readings={
            job: progress.rate_base((before or {}).get(job), reading)
            for job, reading in observed.readings.items()
        },
    )


def _blocked(
    *,
    name: str,
    namespace: str,
    generation: int,
    spec: PipelineSpec,
    observed: Observed,
    status: Mapping,
    remembered: Mapping[str, st.ComponentStatus],
    now: datetime,
    conditions: list[dict],
    reason: str,
    why: str,
    waiting: str,
    events: list[Event],
    reported: frozenset[str],
    retry: Retry | None = None,
    stop_pods: bool = False,
    more: Mapping | None = None,
    before: Mapping[str, progress.Reading],
    standing: frozenset[str],
) -> Plan:
    """A pass that cannot run the pipeline (the topics are not there to use): TopicsReady and Ready false with
    ``reason``, and only pods removed — those of a suspended pipeline or a disabled component, which needs no topic,
    or every pod with ``stop_pods`` (they would use topics that are not the pipeline's)."""
    enabled = [c.name for c in registry.enabled(spec)]
    old_components = status.get("components") or {}
    conditions = [
        *conditions,
        st.condition(st.TOPICS_READY, False, reason, why, generation=generation),
        st.condition(st.READY, False, reason, waiting, generation=generation),
    ]
    out = {
        "observedGeneration": generation,
        "phase": "Suspended" if spec.suspend else status.get("phase") or "Pending",
        "conditions": st.merge_conditions(status.get("conditions"), conditions, now=now),
        **(more or {}),
    }
    # Removing pods needs no topic: those of a suspended pipeline or a disabled component (or all, stop_pods).
    decided = [d for d in registry.COMPONENTS if stop_pods or spec.suspend or d.name not in enabled]
    entries, actions, notices = _pods(
        decided,
        wanted=() if stop_pods else enabled,
        name=name,
        namespace=namespace,
        spec=spec,
        observed=observed,
        status=status,
        remembered=remembered,
        now=now,
    )
    components = {**remembered, **entries}
    events, reported = _once([*events, *notices], reported)
    if components != remembered:
        out["components"] = {**old_components, **{c: e.to_status() for c, e in components.items()}}
    return Plan(
        status=out,
        actions=tuple(actions),
        events=tuple(events),
        components=components,
        reported=reported,
        retry=retry,
        readings=before,
        standing=standing,
    )


def _standing(phase: str | None, conditions: Sequence[Mapping]) -> frozenset[str]:
    """Which of :data:`STATES` a pipeline with this phase and these conditions is in."""
    true = {c.get("type") for c in conditions if c.get("status") == "True"}
    return frozenset(
        [s for s in (READY, LAGGING, STALLED, EXECUTORS_UNAVAILABLE) if s in true]
        + ([DEGRADED] if phase == DEGRADED else [])
    )


def _transitions(
    was: frozenset[str],
    now: frozenset[str],
    *,
    conditions: Sequence[Mapping],
    components: Mapping[str, st.ComponentStatus],
    restarted_stalled: bool,
) -> list[Event]:
    """An Event for each state the pipeline has entered this pass (a stalled job's restart is its own Event)."""
    message = {c["type"]: c["message"] for c in conditions}
    troubled = [
        e.message or ""
        for e in components.values()
        if e.phase in {"BackOff", "Restarting", "GaveUp", "Failed", "DataLost"}
    ]
    events = []
    for state in STATES:
        if state not in now or state in was:
            continue
        if state == READY:
            events.append(Event(NORMAL, READY, message[st.READY]))
        elif state == DEGRADED:
            events.append(Event(WARNING, DEGRADED, "; ".join(troubled) or message[st.JOBS_RUNNING]))
        elif state == LAGGING:
            events.append(Event(WARNING, LAGGING, message[st.LAGGING]))
        elif state == EXECUTORS_UNAVAILABLE:
            events.append(Event(WARNING, EXECUTORS_UNAVAILABLE, message[st.EXECUTORS_UNAVAILABLE]))
        elif not restarted_stalled:
            events.append(Event(WARNING, STALLED, message[st.STALLED]))
    return events


def _once(events: Sequence[Event], reported: frozenset[str]) -> tuple[list[Event], frozenset[str]]:
    """The Events to post: those with a ``once`` key not told before; and the keys told so far."""
    told = set(reported)
    posted = []
    for event in events:
        if event.once is not None:
            if event.once in told:
                continue
            told.add(event.once)
        posted.append(event)
    return posted, frozenset(told)


def _pods(
    declared: Sequence[registry.Component],
    *,
    wanted: Collection[str],
    name: str,
    namespace: str,
    spec: PipelineSpec,
    observed: Observed,
    status: Mapping,
    remembered: Mapping[str, st.ComponentStatus],
    now: datetime,
    before: Mapping[str, progress.Reading] | None = None,
) -> tuple[dict[str, st.ComponentStatus], list[Action], list[Event]]:
    """What :func:`_component` decides for each of ``declared`` (those in ``wanted`` are to run), from the entry
    the last pass left (else the status): the entries, the actions on their pods, the Events that are no action's.
    A job's progress is judged from this pass's reading of it (if any) and ``before``, the one kept for its rates."""
    old = status.get("components") or {}
    entries: dict[str, st.ComponentStatus] = {}
    actions: list[Action] = []
    events: list[Event] = []
    for component in declared:
        entry, action, notices = _component(
            component,
            name=name,
            namespace=namespace,
            spec=spec,
            wanted=component.name in wanted,
            pod=observed.pods.get(component.name),
            previous=remembered.get(component.name)
            or st.ComponentStatus.from_status(old.get(component.name)),
            now=now,
            reading=observed.readings.get(component.name),
            before=(before or {}).get(component.name),
            executors=observed.executors.get(component.name, ()),
        )
        entries[component.name] = entry
        actions += [action] if action else []
        events += notices
    return entries, actions, events


def _camel(action: str) -> str:
    return "".join(p.capitalize() for p in action.split("_"))


def _topic_events(
    results: Sequence[TopicResult], reported: frozenset[str]
) -> tuple[list[Event], frozenset[str]]:
    """An Event per topic created or changed, and one for a refusal unless it was told before; the refusals told
    so far. A refusal is remembered by the message of all of the pass's refusals."""
    message = "; ".join(f"topic {r.name}: {r.detail}" for r in results if r.problem)
    told = set(reported)
    events = []
    for r in results:
        if r.action == "unchanged" or (r.problem and message in told):
            continue
        if r.problem:
            told.add(message)
        events.append(
            Event(WARNING if r.problem else NORMAL, _camel(r.action), f"topic {r.name}: {r.detail}")
        )
    return events, frozenset(told)


def _topics_condition(results: Sequence[TopicResult], *, generation: int) -> dict:
    problems = [r for r in results if r.problem]
    if not problems:
        return st.condition(
            st.TOPICS_READY, True, "TopicsReady", "all topics exist as specified", generation=generation
        )
    reason = (
        "PartitionDecreaseRefused"
        if any(r.action == "partitions_decrease_refused" for r in problems)
        else "ReplicationMismatch"
    )
    message = "; ".join(f"topic {r.name}: {r.detail}" for r in problems)
    return st.condition(st.TOPICS_READY, False, reason, message, generation=generation)


def _claim(
    *, name: str, namespace: str, spec: PipelineSpec, found: Mapping | None, generation: int
) -> tuple[Action | None, str, dict]:
    """Whether to create the checkpoint claim, its name, and the CheckpointsReady condition."""
    claim = manifests.claim_name(pipeline=name, spec=spec)
    pvc = manifests.checkpoint_pvc(pipeline=name, namespace=namespace, spec=spec)
    action = None
    if found is None and pvc is not None:
        action = Action(
            CREATE_CLAIM,
            claim,
            Event(NORMAL, "CheckpointsCreated", f"created PersistentVolumeClaim {claim}"),
            pvc,
        )
        found = {"status": {"phase": "Pending"}}  # what the API server answers for a claim just created
    phase = ((found or {}).get("status") or {}).get("phase")
    if found is None:
        condition = st.condition(
            st.CHECKPOINTS_READY,
            False,
            "ClaimNotFound",
            f"PersistentVolumeClaim {claim} does not exist",
            generation=generation,
        )
    elif phase == "Bound":
        condition = st.condition(
            st.CHECKPOINTS_READY, True, "Bound", f"{claim} is bound", generation=generation
        )
    else:
        condition = st.condition(
            st.CHECKPOINTS_READY,
            False,
            "Pending",
            f"{claim} is {phase or 'not bound yet'}",
            generation=generation,
        )
    return action, claim, condition


def _observed_pod(pod: Mapping | None) -> lifecycle.ObservedPod | None:
    if pod is None:
        return None
    meta = pod["metadata"]
    return lifecycle.ObservedPod(
        phase=(pod.get("status") or {}).get("phase", "Pending"),
        config_hash=(meta.get("annotations") or {}).get(manifests.ANNOTATION_CONFIG_HASH),
        terminating=meta.get("deletionTimestamp") is not None,
        ran_seconds=_ran_seconds(pod),
        exit_code=_terminated(pod).get("exitCode"),
        termination_message=_terminated(pod).get("message"),
        running_since=st.parse_timestamp((_state(pod).get("running") or {}).get("startedAt")),
    )


def _state(pod: Mapping) -> Mapping:
    """The state of the pod's first container (empty before it has one)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def _pod_problem(
    pod: Mapping, component: registry.Component, *, executor: bool = False
) -> tuple[str, str] | None:
    """Why a pod cannot run, as the kubelet or the scheduler says (its reason and their words), or why its container
    was killed (OOMKilled); None when nothing is wrong that it can tell. ``executor``: the pod is one of the
    component's executors (kubernetes mode)."""
    waiting = _state(pod).get("waiting") or {}
    if waiting.get("reason") in WAITING_PROBLEMS:
        return waiting["reason"], waiting.get("message") or waiting["reason"]
    for c in (pod.get("status") or {}).get("conditions") or []:
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            return "Unschedulable", c.get("message") or "no node can take the pod"
    if _terminated(pod).get("reason") == "OOMKilled":
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("memory", "none")
        hint = (
            "; raise spec.spark.executor.memory or memoryOverhead"
            if executor
            else f"; raise spec.spark.driver.memory (the pod's limit is the heap plus {manifests.DRIVER_OVERHEAD_MIB} MiB)"
            if component.spark and component.resources is None
            else ""
        )
        return "OOMKilled", f"its container used more memory than its limit ({limit}) and was killed{hint}"
    return None


def _terminated(pod: Mapping) -> Mapping:
    """The terminated state of the pod's first container (empty while it has not ended)."""
    return _state(pod).get("terminated") or {}


def _ran_seconds(pod: Mapping) -> float | None:
    """How long the pod's first container ran before it ended, from its terminated state (None if it has not)."""
    ended = _terminated(pod)
    started, finished = (
        st.parse_timestamp(ended.get("startedAt")),
        st.parse_timestamp(ended.get("finishedAt")),
    )
    if started is None or finished is None:
        return None
    return (finished - started).total_seconds()


def _component(
    declared: registry.Component,
    *,
    name: str,
    namespace: str,
    spec: PipelineSpec,
    wanted: bool,
    pod: Mapping | None,
    previous: st.ComponentStatus,
    now: datetime,
    reading: progress.Reading | None = None,
    before: progress.Reading | None = None,
    executors: Sequence[Mapping] = (),
) -> tuple[st.ComponentStatus, Action | None, list[Event]]:
    """One component's entry after this pass, the action on its pod, and the Events that are not an action's.

    A job read this pass (``reading``; ``before``: the reading its rates are measured from) gets its progress and a
    verdict against ``spec.slo``; a running job that is stalled is restarted (:func:`lifecycle.decide`), unless it
    has had no executor for ``spark.executorWaitSeconds`` (a new driver would wait as well): that is said instead,
    with what its ``executors`` (kubernetes mode: its executor pods) show."""
    component = declared.name
    record = previous.record
    notices: list[Event] = []
    if declared.stateful:
        fingerprint = checkpoints.state_fingerprint(spec=spec, component=declared)
        earlier = record.fingerprint
        record, moved = lifecycle.next_generation(record, fingerprint)
        if moved:
            old = checkpoints.checkpoint_root(
                root=checkpoints.state_root(spec=spec, namespace=namespace, pipeline=name),
                job=component,
                generation=record.generation - 1,
            )
            message = checkpoints.reset_message(
                job=component, earlier_fingerprint=earlier, old_checkpoint=old
            )
            notices.append(Event(WARNING, "CheckpointReset", message))
    plan = manifests.pod_plan(
        pipeline=name, namespace=namespace, spec=spec, component=declared, generation=record.generation
    )
    observed_pod = _observed_pod(pod)
    found = progress.progress(reading, before, previous.progress) if reading is not None and wanted else None
    verdict = None
    if found is not None and not spec.suspend:  # a suspended pipeline's backlog is reported, not judged
        verdict = progress.judge(
            found,
            slo=progress.Slo(
                stall_seconds=spec.slo.stall_seconds,
                max_lag_records=spec.slo.max_lag_records,
                max_freshness_seconds=spec.slo.max_freshness_seconds,
            ),
            running_since=None if observed_pod is None else observed_pod.running_since,
            now=now,
        )
    starved = (
        _no_executors(spec, declared, pod, executors, now=now)
        if pod is not None and wanted and not spec.suspend
        else None
    )
    decision = lifecycle.decide(
        component=component,
        wanted=wanted,
        suspended=spec.suspend,
        desired_hash=plan.config_hash,
        pod=observed_pod,
        record=record,
        policy=spec.restart_policy,
        now=now,
        stalled=verdict.why if verdict is not None and verdict.stalled and starved is None else None,
    )
    pod_name = plan.manifest["metadata"]["name"]
    action = None
    last_start = previous.last_start
    problem = _pod_problem(pod, declared) if pod is not None and decision.action != lifecycle.DELETE else None
    if problem is not None:
        reason, detail = problem
        uid = (pod.get("metadata") or {}).get("uid", "")
        notices.append(
            Event(
                WARNING,
                reason,
                f"{component}: pod {pod['metadata']['name']}: {detail}",
                once=f"pod:{uid}:{reason}",
            )
        )
    if decision.action == lifecycle.CREATE:
        action = Action(
            CREATE_POD,
            pod_name,
            Event(NORMAL, "PodCreated", f"{component}: created pod {pod_name}"),
            plan.manifest,
            component,
            needs=plan.needs,
        )
        last_start = now
    elif decision.action == lifecycle.DELETE and pod is not None:
        action = Action(
            DELETE_POD,
            pod["metadata"]["name"],
            Event(WARNING if decision.reason == "Stalled" else NORMAL, decision.reason, decision.message),
            component=component,
        )
    elif decision.reason in {"RestartLimitReached", "SourceDataLost"} and not record.gave_up:
        notices.append(Event(WARNING, decision.reason, decision.message))
    elif decision.reason == "BackOff" and record.next_restart is None:
        notices.append(Event(WARNING, "BackOff", decision.message))
    reason, message = decision.reason, decision.message
    if problem is not None:
        reason, message = problem[0], f"{decision.message}; {problem[0]}: {problem[1]}"
    elif starved is not None:
        reason, message = "NoExecutors", f"{decision.message}; {starved}"
    entry = st.ComponentStatus(
        record=decision.record,
        pod=pod_name if pod is not None or decision.action == lifecycle.CREATE else None,
        phase=decision.phase,
        reason=reason,
        message=message,
        last_start=last_start,
        checkpoint_path=plan.checkpoint_path,
        progress=found,
        verdict=verdict,
        executors=_running(executors)
        if spec.spark.mode == "kubernetes" and declared.spark and wanted
        else None,
        no_executors=starved,
    )
    return entry, action, notices


def _running(pods: Sequence[Mapping]) -> int:
    return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")


def _waiting_for_executors(pod: Mapping, now: datetime) -> float | None:
    """Seconds a cluster-mode driver's pod has been Running but not Ready (its readiness probe finds no executor),
    or None when it is not in that state."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses or statuses[0].get("ready"):
        return None
    since = [st.parse_timestamp((_state(pod).get("running") or {}).get("startedAt"))]
    since += [
        st.parse_timestamp(c.get("lastTransitionTime"))
        for c in (pod.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "False"
    ]
    known = [moment for moment in since if moment is not None]
    return (now - max(known)).total_seconds() if known else None


def _no_executors(
    spec: PipelineSpec,
    declared: registry.Component,
    pod: Mapping,
    executors: Sequence[Mapping],
    *,
    now: datetime,
) -> str | None:
    """Why a cluster-mode job has had no executor for ``spark.executorWaitSeconds`` or longer (None: it has one,
    or has not waited that long): how long, and where to look."""
    if not declared.spark or spec.spark.mode == "local":
        return None
    waited = _waiting_for_executors(pod, now)
    if waited is None or waited < spec.spark.executor_wait_seconds:
        return None
    said = f"no executor for {waited:.0f} s"
    if spec.spark.mode == "standalone":
        e = spec.spark.executor
        return (
            f"{said}: the master {spec.spark.master} has no worker with {e.cores} free core(s) and {e.memory} "
            f"free memory for it (each job takes spark.executor.instances x cores = "
            f"{commands.executor_cores(spec)} core(s)); add workers, or lower spark.executor"
        )
    problems = [
        f"{p['metadata']['name']}: {problem[0]}: {problem[1]}"
        for p in executors
        if (problem := _pod_problem(p, declared, executor=True)) is not None
    ]
    if problems:
        return f"{said}; its executor pods: {'; '.join(problems)}"
    return f"{said}; {len(executors)} executor pod(s), {_running(executors)} running"
