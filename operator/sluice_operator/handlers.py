"""kopf handlers for StreamingPipeline: thin glue between the spec, the pure decisions and the API calls.

One level-based :func:`reconcile` serves creation, updates, resumption and a periodic timer. It *reads* (parses
the spec, reconciles the topics, reads the checkpoint claim and the pods), lets :func:`planner.decide` make the
plan, and *acts* on it (creates and deletes, posts the Events, patches the status). Deletion releases what the
deletion policies say to keep and removes what they say to remove, with bounded retries.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import kopf

from sluice_operator import cluster, kafka_admin, manifests, metrics, ownership, planner, progress
from sluice_operator import components as registry
from sluice_operator.settings import Settings, from_env
from sluice_operator.spec import GROUP, PLURAL, VERSION, PipelineSpec, SpecError, parse_spec
from sluice_operator.status import ComponentStatus

SETTINGS: Settings = from_env()


@dataclass
class PipelineMemory:
    """What the operator keeps of one pipeline between passes, in kopf's per-object memo.

    The status a handler receives may be one patch behind the previous pass's, so it cannot tell which standing
    topic refusals were already reported, and a restart count or a backoff deadline read from it could go back.
    ``reported`` and ``components`` are read and written under ``lock``: the timer and the change handlers of one
    pipeline run in threads, possibly at once. After an operator restart the memo is empty and the status seeds
    the components (and the jobs' rates start again from the next reading)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    reported: frozenset[str] = frozenset()
    components: Mapping[str, ComponentStatus] = field(default_factory=dict)
    #: Each job's reading its next rates are measured from (:attr:`planner.Plan.readings`).
    readings: Mapping[str, progress.Reading] = field(default_factory=dict)
    #: The states an Event has announced (:attr:`planner.Plan.standing`); None until the first pass.
    standing: frozenset[str] | None = None


def pipeline_memory(memo: kopf.Memo) -> PipelineMemory:
    # dict.setdefault is atomic: two handlers of the pipeline starting at once get the same memory.
    return memo.setdefault("pipeline", PipelineMemory())


def _now() -> datetime:
    return datetime.now(UTC)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    """Keep kopf's bookkeeping in annotations (the status is ours), post Events, serve metrics."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    settings.watching.server_timeout = 300
    try:
        metrics.serve(SETTINGS.metrics_port)
    except OSError as exc:
        # kopf would retry a failed startup handler after 60 s, with no liveness endpoint meanwhile: stop instead.
        raise kopf.PermanentError(
            f"cannot serve metrics on port {SETTINGS.metrics_port} (SLUICE_METRICS_PORT): {exc}; "
            "set SLUICE_METRICS_PORT to a free port, or 0 for no metrics"
        ) from exc


# --- reconcile ---------------------------------------------------------------------------------------------------


_REGISTRY_ATTEMPTS = 5


def _update_registry(change: Callable[[dict[str, str]], dict[str, str]]) -> None:
    """Apply ``change`` to the registry of topic owners, again from a fresh read when another pass wrote it
    meanwhile (the API server's optimistic concurrency)."""
    for _ in range(_REGISTRY_ATTEMPTS):
        data, version = cluster.read_config_map(SETTINGS.namespace, ownership.REGISTRY)
        updated = change(data)
        if updated == data:
            return
        try:
            cluster.write_config_map(SETTINGS.namespace, ownership.REGISTRY, updated, version)
            return
        except cluster.Conflict:
            continue
    raise kopf.TemporaryError("the registry of topic owners kept changing under this pass", delay=1)


def _claim_topics(spec: PipelineSpec, owner: ownership.Owner) -> dict[str, ownership.Owner]:
    """Claim the pipeline's topics in the registry; the ones another pipeline owns, with their owner."""
    cluster_id = kafka_admin.cluster_id(spec.kafka.bootstrap_servers, timeout=SETTINGS.kafka_timeout)
    names = [t.name for _, t in spec.kafka.topics.all()]
    taken: dict[str, ownership.Owner] = {}

    def claim(data: dict[str, str]) -> dict[str, str]:
        updated, found = ownership.claim(data, cluster_id=cluster_id, topics=names, me=owner)
        taken.clear()
        taken.update(found)
        return updated

    _update_registry(claim)
    return taken


def _observe(spec: PipelineSpec, *, name: str, namespace: str, owner: ownership.Owner) -> planner.Observed:
    """Claim and reconcile the topics (not those another pipeline owns), then read the claim and the pods; with
    Kafka unreachable, only the pods."""
    topic_error = None
    taken: dict[str, ownership.Owner] = {}
    try:
        taken = _claim_topics(spec, owner)
        topics = kafka_admin.ensure_topics(
            spec.kafka.bootstrap_servers,
            [t for t in kafka_admin.desired_topics(spec.kafka.topics) if t.name not in taken],
            timeout=SETTINGS.kafka_timeout,
        )
    except kafka_admin.KafkaUnavailable as exc:  # the pods still, so that suspend is applied
        pods, executors = cluster.pipeline_pods(namespace, name)
        return planner.Observed(kafka_unavailable=str(exc), pods=pods, executors=executors)
    except kafka_admin.KafkaAdminError as exc:
        topics, topic_error = [], str(exc)
    readings, progress_error = {}, None
    if topic_error is None and not taken:
        readings, progress_error = _read_progress(spec, name=name, namespace=namespace)
    pods, executors = cluster.pipeline_pods(namespace, name)
    return planner.Observed(
        topics=topics,
        topic_error=topic_error,
        topics_taken={topic: o.pipeline for topic, o in taken.items()},
        claim=cluster.read_pvc(namespace, manifests.claim_name(pipeline=name, spec=spec)),
        pods=pods,
        executors=executors,
        readings=readings,
        progress_error=progress_error,
    )


def _read_progress(
    spec: PipelineSpec, *, name: str, namespace: str
) -> tuple[dict[str, progress.Reading], str | None]:
    """Where each enabled job stands in the source topic (its consumer group), or why that could not be read."""
    groups = {
        progress.consumer_group(namespace=namespace, pipeline=name, job=job.name): job.name
        for job in registry.enabled(spec)
        if job in registry.JOBS
    }
    if not groups:
        return {}, None
    try:
        read = kafka_admin.read_progress(
            spec.kafka.bootstrap_servers,
            spec.kafka.topics.source.name,
            list(groups),
            now=_now(),
            timeout=SETTINGS.kafka_timeout,
        )
    except (kafka_admin.KafkaUnavailable, kafka_admin.KafkaAdminError) as exc:
        return {}, str(exc)
    return {groups[group]: reading for group, reading in read.items()}, None


def _post(body, event: planner.Event) -> None:
    post = kopf.warn if event.type == planner.WARNING else kopf.info
    post(body, reason=event.reason, message=event.message)


def _adopted(manifest, owner) -> dict:
    adopted = copy.deepcopy(dict(manifest))
    kopf.append_owner_reference(adopted, owner=owner)
    return adopted


def _act(plan: planner.Plan, *, body, name: str, namespace: str, patch, memory: PipelineMemory) -> None:
    """Post the Events, make the changes (each followed by its Event), remember the components (each once its
    change is made), write the status; raise for a retry."""
    for event in plan.events:
        _post(body, event)
    memory.reported = plan.reported
    memory.readings = plan.readings
    memory.standing = plan.standing
    waiting = {a.component for a in plan.actions}
    remembered = {**memory.components, **{c: e for c, e in plan.components.items() if c not in waiting}}
    memory.components = remembered
    for action in plan.actions:
        if action.kind == planner.CREATE_CLAIM:
            cluster.create_pvc(_adopted(action.manifest, body))
        elif action.kind == planner.CREATE_POD:
            for needed in action.needs:
                cluster.apply(_adopted(needed, body))
            cluster.create_pod(_adopted(action.manifest, body))
        else:
            cluster.delete_pod(namespace, action.name)
        _post(body, action.event)
        if action.component is not None:
            remembered[action.component] = plan.components[action.component]
    patch.status.update(plan.status)
    metrics.observe(namespace, name, plan.status, uid=body["metadata"].get("uid", ""))
    if plan.retry is not None:
        raise kopf.TemporaryError(plan.retry.message, delay=plan.retry.delay)


def reconcile(
    *,
    body,
    name: str,
    namespace: str,
    spec_data: dict,
    status: dict,
    patch,
    generation: int,
    memory: PipelineMemory,
) -> None:
    """Bring the pipeline's children to what its spec says (the timer brings the next pass).

    Callers hold ``memory.lock`` (see :func:`_run`)."""
    spec, problems = planner.read_spec(spec_data, name=name)
    owner = ownership.Owner(namespace, name, body["metadata"].get("uid", ""))
    observed = (
        None if problems or spec is None else _observe(spec, name=name, namespace=namespace, owner=owner)
    )
    plan = planner.decide(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        problems=problems,
        observed=observed,
        status=status,
        remembered=memory.components,
        reported=memory.reported,
        now=_now(),
        kafka_retry_base=SETTINGS.kafka_retry_delay,
        before=memory.readings,
        standing=memory.standing,
    )
    _act(plan, body=body, name=name, namespace=namespace, patch=patch, memory=memory)


def _run(*, body, name, namespace, spec, status, patch, meta, memo) -> None:
    memory = pipeline_memory(memo)
    with memory.lock, metrics.reconciling():
        reconcile(
            body=body,
            name=name,
            namespace=namespace,
            spec_data=dict(spec or {}),
            status=dict(status or {}),
            patch=patch,
            generation=meta.get("generation", 0),
            memory=memory,
        )


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=SETTINGS.kafka_retry_delay)
def on_change(*, body, name, namespace, spec, status, patch, meta, memo, **_) -> None:
    """A pipeline appeared, changed, or the operator restarted: reconcile now."""
    _run(
        body=body, name=name, namespace=namespace, spec=spec, status=status, patch=patch, meta=meta, memo=memo
    )


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=SETTINGS.reconcile_interval,
    sharp=False,
    backoff=SETTINGS.kafka_retry_delay,
)
def on_timer(*, body, name, namespace, spec, status, patch, meta, memo, **_) -> None:
    """Periodically: follow pod phases, restart failed pods when their backoff is over."""
    _run(
        body=body, name=name, namespace=namespace, spec=spec, status=status, patch=patch, meta=meta, memo=memo
    )


# --- delete --------------------------------------------------------------------------------------------------------


@kopf.on.delete(GROUP, VERSION, PLURAL, retries=SETTINGS.delete_attempts, backoff=SETTINGS.delete_retry_delay)
def on_delete(*, body, name, namespace, spec, retry, **_) -> None:
    """Keep or remove topics and the checkpoint volume as the deletion policies say; pods go by ownership. Only the
    topics no other pipeline owns are deleted, and the pipeline's claims on topics are released.

    The pipeline's memo goes with it."""
    metrics.forget(namespace, name, uid=body["metadata"].get("uid", ""))
    try:
        parsed = parse_spec(dict(spec or {}))
    except SpecError:
        return  # an invalid pipeline created nothing
    owner = ownership.Owner(namespace, name, body["metadata"].get("uid", ""))
    claim = manifests.claim_name(pipeline=name, spec=parsed)
    if not parsed.checkpoints.existing_claim and parsed.checkpoints.deletion_policy == "Retain":
        cluster.set_pvc_owners(namespace, claim, [])  # orphaned: garbage collection keeps it
        kopf.info(body, reason="CheckpointsRetained", message=f"kept PersistentVolumeClaim {claim}")
    if parsed.kafka.deletion_policy == "Delete":
        _delete_topics(body, parsed, owner, retry)
    _update_registry(lambda data: ownership.release(data, me=owner))


def _delete_topics(body, parsed: PipelineSpec, owner: ownership.Owner, retry: int) -> None:
    names = [t.name for _, t in parsed.kafka.topics.all()]
    bootstrap = parsed.kafka.bootstrap_servers
    try:
        cluster_id = kafka_admin.cluster_id(bootstrap, timeout=SETTINGS.kafka_timeout)
        registry, _ = cluster.read_config_map(SETTINGS.namespace, ownership.REGISTRY)
        _, taken = ownership.claim(registry, cluster_id=cluster_id, topics=names, me=owner)
        deleted = kafka_admin.delete_topics(
            bootstrap, [n for n in names if n not in taken], timeout=SETTINGS.kafka_timeout
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
    kept = "".join(f"; kept {t}, owned by pipeline {o.pipeline}" for t, o in sorted(taken.items()))
    kopf.info(
        body,
        reason="TopicsDeleted",
        message=f"deleted topics {', '.join(deleted) or '(none existed)'}{kept}",
    )
