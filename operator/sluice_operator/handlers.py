"""kopf handlers for StreamingPipeline: thin glue between the spec, the pure builders and the API calls.

One level-based :func:`reconcile` serves creation, updates, resumption and a periodic timer: it parses the spec,
ensures the topics, the checkpoint volume and one pod per enabled component (restarting failed pods with backoff),
and writes the status. Deletion releases what the deletion policies say to keep and removes what they say to
remove, with bounded retries.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import kopf

from sluice_operator import checkpoints, cluster, kafka_admin, lifecycle, manifests, metrics
from sluice_operator import components as registry
from sluice_operator import status as st
from sluice_operator.settings import Settings, from_env
from sluice_operator.spec import (
    GROUP,
    PLURAL,
    VERSION,
    PipelineSpec,
    SpecError,
    parse_spec,
    semantic_problems,
)

SETTINGS: Settings = from_env()
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
# Standing topic refusals already posted as Events, per pipeline (read and written under the pipeline's lock: the
# status a handler receives may predate the previous pass's patch, so it cannot tell).
_reported: dict[tuple[str, str], set[str]] = {}
# The component records of the last pass, per pipeline, for the same reason: the status in hand may be one patch
# behind, and a restart count or a backoff deadline must not go back. The status seeds them after a restart.
_records: dict[tuple[str, str], dict[str, lifecycle.ComponentRecord]] = {}


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


KAFKA_MAX_RETRY_DELAY = 300.0


def kafka_retry_delay(base: float, failures: int) -> float:
    """Seconds before the next try after ``failures`` consecutive passes found Kafka unreachable: doubling from
    ``base``, at most five minutes."""
    return min(base * 2 ** min(failures, 20), KAFKA_MAX_RETRY_DELAY)


def _now() -> datetime:
    return datetime.now(UTC)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    """Keep kopf's bookkeeping in annotations (the status is ours), post Events, serve metrics."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    settings.watching.server_timeout = 300
    metrics.serve(SETTINGS.metrics_port)


# --- reconcile ---------------------------------------------------------------------------------------------------


def _observed(pod: dict | None) -> lifecycle.ObservedPod | None:
    if pod is None:
        return None
    meta = pod["metadata"]
    return lifecycle.ObservedPod(
        phase=(pod.get("status") or {}).get("phase", "Pending"),
        config_hash=(meta.get("annotations") or {}).get(manifests.ANNOTATION_CONFIG_HASH),
        terminating=meta.get("deletionTimestamp") is not None,
    )


def _record_to_status(record: lifecycle.ComponentRecord) -> dict:
    return {
        "restarts": record.restarts,
        "nextRestart": record.next_restart.isoformat() if record.next_restart else None,
        "gaveUp": record.gave_up,
        "checkpointGeneration": record.generation,
        "stateFingerprint": record.fingerprint,
        "configHash": record.config_hash,
    }


def _ensure_topics(
    *, body, spec: PipelineSpec, conditions: list, generation: int, status_out: dict, reported: set[str]
) -> bool:
    """Create or update the topics; False (and a condition saying why) when Kafka cannot be reached.

    A refusal that stands (a partition decrease, a replication mismatch) is reported by an Event once, when it
    first appears, not on every pass: ``reported`` (the pipeline's memo, shared by its handlers) remembers it."""
    try:
        results = kafka_admin.ensure_topics(
            spec.kafka.bootstrap_servers,
            kafka_admin.desired_topics(spec.kafka.topics),
            timeout=SETTINGS.kafka_timeout,
        )
    except kafka_admin.KafkaUnavailable as exc:
        conditions.append(
            st.condition(st.TOPICS_READY, False, "KafkaUnavailable", str(exc), generation=generation)
        )
        kopf.warn(body, reason="KafkaUnavailable", message=str(exc))
        return False
    except kafka_admin.KafkaAdminError as exc:
        conditions.append(st.condition(st.TOPICS_READY, False, "TopicError", str(exc), generation=generation))
        kopf.warn(body, reason="TopicError", message=str(exc))
        return True
    problems = [r for r in results if r.problem]
    message = "; ".join(f"topic {r.name}: {r.detail}" for r in problems)
    for r in results:
        if r.action == "unchanged" or (r.problem and message in reported):
            continue
        if r.problem:
            reported.add(message)
        (kopf.warn if r.problem else kopf.info)(
            body, reason=_camel(r.action), message=f"topic {r.name}: {r.detail}"
        )
    status_out["topics"] = {
        role: {"name": t.name, "partitions": t.partitions} for role, t in spec.kafka.topics.all()
    }
    if problems:
        reason = (
            "PartitionDecreaseRefused"
            if any(r.action == "partitions_decrease_refused" for r in problems)
            else "ReplicationMismatch"
        )
        conditions.append(st.condition(st.TOPICS_READY, False, reason, message, generation=generation))
    else:
        conditions.append(
            st.condition(
                st.TOPICS_READY, True, "TopicsReady", "all topics exist as specified", generation=generation
            )
        )
    return True


def _camel(action: str) -> str:
    return "".join(p.capitalize() for p in action.split("_"))


def _ensure_checkpoints(
    *, body, name: str, namespace: str, spec: PipelineSpec, conditions: list, generation: int
) -> str:
    claim = manifests.claim_name(pipeline=name, spec=spec)
    pvc = manifests.checkpoint_pvc(pipeline=name, namespace=namespace, spec=spec)
    existing = cluster.read_pvc(namespace, claim)
    if existing is None and pvc is not None:
        kopf.append_owner_reference(pvc, owner=body)
        cluster.create_pvc(pvc)
        kopf.info(body, reason="CheckpointsCreated", message=f"created PersistentVolumeClaim {claim}")
        existing = cluster.read_pvc(namespace, claim)
    phase = ((existing or {}).get("status") or {}).get("phase")
    if existing is None:
        conditions.append(
            st.condition(
                st.CHECKPOINTS_READY,
                False,
                "ClaimNotFound",
                f"PersistentVolumeClaim {claim} does not exist",
                generation=generation,
            )
        )
    elif phase == "Bound":
        conditions.append(
            st.condition(st.CHECKPOINTS_READY, True, "Bound", f"{claim} is bound", generation=generation)
        )
    else:
        conditions.append(
            st.condition(
                st.CHECKPOINTS_READY,
                False,
                "Pending",
                f"{claim} is {phase or 'not bound yet'}",
                generation=generation,
            )
        )
    return claim


def reconcile(
    *, body, name: str, namespace: str, spec_data: dict, status: dict, patch, generation: int
) -> None:
    """Bring the pipeline's children to what its spec says (the timer brings the next pass).

    Callers hold the pipeline's lock (see :func:`_run`)."""
    reported = _reported.setdefault((namespace, name), set())
    records = _records.setdefault((namespace, name), {})
    now = _now()
    previous_conditions = (status or {}).get("conditions")
    conditions: list[dict] = []
    out: dict = {"observedGeneration": generation}
    try:
        spec = parse_spec(spec_data)
        problems = semantic_problems(spec)
    except SpecError as exc:
        spec, problems = None, [str(exc)]
    if problems:
        message = "; ".join(problems)
        conditions.append(st.condition(st.INVALID, True, "InvalidSpec", message, generation=generation))
        conditions.append(st.condition(st.READY, False, "InvalidSpec", message, generation=generation))
        out.update(phase="Invalid", conditions=st.merge_conditions(previous_conditions, conditions, now=now))
        patch.status.update(out)
        kopf.warn(body, reason="InvalidSpec", message=message)
        metrics.observe_phase(namespace, name, "Invalid")
        return
    conditions.append(st.condition(st.INVALID, False, "Valid", "the spec is valid", generation=generation))

    if not _ensure_topics(
        body=body,
        spec=spec,
        conditions=conditions,
        generation=generation,
        status_out=out,
        reported=reported,
    ):
        conditions.append(
            st.condition(st.READY, False, "KafkaUnavailable", "waiting for Kafka", generation=generation)
        )
        out.update(
            phase=status.get("phase") or "Pending",
            conditions=st.merge_conditions(previous_conditions, conditions, now=now),
        )
        patch.status.update(out)
        failures = int(status.get("kafkaFailures") or 0)
        out["kafkaFailures"] = failures + 1
        patch.status.update(out)
        delay = kafka_retry_delay(SETTINGS.kafka_retry_delay, failures)
        raise kopf.TemporaryError(f"Kafka is unreachable; retrying in {delay:g} s", delay=delay)

    out["kafkaFailures"] = 0
    out["checkpointClaim"] = _ensure_checkpoints(
        body=body, name=name, namespace=namespace, spec=spec, conditions=conditions, generation=generation
    )

    pods = cluster.pipeline_pods(namespace, name)
    enabled = [c.name for c in registry.enabled(spec)]
    old_components = (status or {}).get("components") or {}
    components: dict[str, dict] = {}
    phases: dict[str, str] = {}
    for declared in registry.COMPONENTS:
        component = declared.name
        record = records.get(component) or lifecycle.ComponentRecord.from_status(
            old_components.get(component)
        )
        extra: dict = {}
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
                kopf.warn(body, reason="CheckpointReset", message=message)
        plan = manifests.pod_plan(
            pipeline=name, namespace=namespace, spec=spec, component=declared, generation=record.generation
        )
        pod = pods.get(component)
        decision = lifecycle.decide(
            component=component,
            wanted=component in enabled,
            suspended=spec.suspend,
            desired_hash=plan.config_hash,
            pod=_observed(pod),
            record=record,
            policy=spec.restart_policy,
            now=now,
        )
        if decision.action == lifecycle.CREATE:
            manifest = plan.manifest
            kopf.append_owner_reference(manifest, owner=body)
            cluster.create_pod(manifest)
            kopf.info(
                body, reason="PodCreated", message=f"{component}: created pod {manifest['metadata']['name']}"
            )
            extra["lastStart"] = now.isoformat()
        elif decision.action == lifecycle.DELETE and pod is not None:
            cluster.delete_pod(namespace, pod["metadata"]["name"])
            kopf.info(body, reason=decision.reason, message=decision.message)
        elif decision.reason in {"RestartLimitReached"} and not record.gave_up:
            kopf.warn(body, reason=decision.reason, message=decision.message)
        elif decision.reason == "BackOff" and record.next_restart is None:
            kopf.warn(body, reason="BackOff", message=decision.message)
        previous = old_components.get(component) or {}
        components[component] = {
            **_record_to_status(decision.record),
            "pod": plan.manifest["metadata"]["name"]
            if (pod is not None or decision.action == lifecycle.CREATE)
            else None,
            "phase": decision.phase,
            "message": decision.message,
            "lastStart": extra.get("lastStart", previous.get("lastStart")),
            "checkpointPath": plan.checkpoint_path,
        }
        phases[component] = decision.phase
        records[component] = decision.record

    gave_up = [c for c in enabled if phases.get(c) == "GaveUp"]
    running = st.jobs_ready(phases, enabled)
    if spec.suspend:
        conditions.append(
            st.condition(
                st.JOBS_RUNNING, False, "Suspended", "the pipeline is suspended", generation=generation
            )
        )
    elif gave_up:
        conditions.append(
            st.condition(
                st.JOBS_RUNNING,
                False,
                "RestartLimitReached",
                "; ".join(components[c]["message"] for c in gave_up),
                generation=generation,
            )
        )
    else:
        all_running = all(phases.get(c) == "Running" for c in enabled)
        conditions.append(
            st.condition(
                st.JOBS_RUNNING,
                all_running,
                "Running" if all_running else "Starting",
                f"{running} components running",
                generation=generation,
            )
        )
    ready = all(
        c["status"] == "True"
        for c in conditions
        if c["type"] in {st.TOPICS_READY, st.CHECKPOINTS_READY, st.JOBS_RUNNING}
    )
    conditions.append(
        st.condition(
            st.READY,
            ready,
            "Ready" if ready else "NotReady",
            "the pipeline is running" if ready else "see the other conditions",
            generation=generation,
        )
    )
    phase = st.pipeline_phase(suspended=spec.suspend, phases=phases, enabled=enabled)
    out.update(
        phase=phase,
        jobsReady=running,
        components=components,
        conditions=st.merge_conditions(previous_conditions, conditions, now=now),
    )
    patch.status.update(out)
    metrics.observe_phase(namespace, name, phase)


def _run(*, body, name, namespace, spec, status, patch, meta) -> None:
    with _lock(namespace, name), metrics.reconciling():
        reconcile(
            body=body,
            name=name,
            namespace=namespace,
            spec_data=dict(spec or {}),
            status=dict(status or {}),
            patch=patch,
            generation=meta.get("generation", 0),
        )


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
def on_change(*, body, name, namespace, spec, status, patch, meta, **_) -> None:
    """A pipeline appeared, changed, or the operator restarted: reconcile now."""
    _run(body=body, name=name, namespace=namespace, spec=spec, status=status, patch=patch, meta=meta)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=SETTINGS.reconcile_interval,
    sharp=False,
    backoff=SETTINGS.kafka_retry_delay,
)
def on_timer(*, body, name, namespace, spec, status, patch, meta, **_) -> None:
    """Periodically: follow pod phases, restart failed pods when their backoff is over."""
    _run(body=body, name=name, namespace=namespace, spec=spec, status=status, patch=patch, meta=meta)


# --- delete --------------------------------------------------------------------------------------------------------


@kopf.on.delete(GROUP, VERSION, PLURAL, retries=SETTINGS.delete_attempts, backoff=SETTINGS.delete_retry_delay)
def on_delete(*, body, name, namespace, spec, retry, **_) -> None:
    """Keep or remove topics and the checkpoint volume as the deletion policies say; pods go by ownership."""
    _reported.pop((namespace, name), None)
    _records.pop((namespace, name), None)
    metrics.forget(namespace, name)
    try:
        parsed = parse_spec(dict(spec or {}))
    except SpecError:
        return  # an invalid pipeline created nothing
    claim = manifests.claim_name(pipeline=name, spec=parsed)
    if not parsed.checkpoints.existing_claim and parsed.checkpoints.deletion_policy == "Retain":
        cluster.set_pvc_owners(namespace, claim, [])  # orphaned: garbage collection keeps it
        kopf.info(body, reason="CheckpointsRetained", message=f"kept PersistentVolumeClaim {claim}")
    if parsed.kafka.deletion_policy != "Delete":
        return
    names = [t.name for _, t in parsed.kafka.topics.all()]
    try:
        deleted = kafka_admin.delete_topics(
            parsed.kafka.bootstrap_servers, names, timeout=SETTINGS.kafka_timeout
        )
    except (kafka_admin.KafkaUnavailable, kafka_admin.KafkaAdminError) as exc:
        if retry + 1 < SETTINGS.delete_attempts:
            raise kopf.TemporaryError(f"deleting topics: {exc}", delay=SETTINGS.delete_retry_delay) from exc
        kopf.warn(
            body,
            reason="TopicsNotDeleted",
            message=f"gave up deleting topics {', '.join(names)} after {retry + 1} attempts: {exc}; "
            "the pipeline is released, delete them by hand",
        )
        return
    kopf.info(
        body, reason="TopicsDeleted", message=f"deleted topics {', '.join(deleted) or '(none existed)'}"
    )
