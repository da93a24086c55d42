"""A pipeline's Kafka topics, reconciled through the Kafka AdminClient: create, grow, configure, delete.

Planning is pure and separate from I/O: :func:`plan_topic` compares one :class:`DesiredTopic` with what exists
(a :class:`CurrentTopic`, or ``None``) and returns the :class:`TopicChange` steps to take. :func:`ensure_topics`
reads the cluster, plans, and carries the steps out; calling it twice gives ``"unchanged"`` the second time.

What Kafka cannot do is reported, never done silently and never attempted: partitions are only ever raised (a
decrease gives ``"partitions_decrease_refused"`` and the topic keeps its partitions) and the replication factor is
not changed (``"replication_mismatch"``). Config keys the spec does not name are left as they are.

Two exceptions, so the operator can tell them apart:

- :class:`KafkaUnavailable`: the broker could not be reached or did not answer in time. Every call fails with it
  within about ``timeout`` seconds; the caller retries with backoff and sets a condition saying so.
- :class:`KafkaAdminError`: Kafka answered with an error (e.g. a replication factor above the number of brokers,
  an unknown config name). The message names the topic and Kafka's error; ``retriable`` says whether the same
  request may succeed later.

This module talks to Kafka only; it knows nothing of Kubernetes. The local runtime uses it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from sluice_operator import progress
from sluice_operator.spec import Topics

CREATED = "created"
UNCHANGED = "unchanged"
PARTITIONS_RAISED = "partitions_raised"
CONFIG_UPDATED = "config_updated"
PARTITIONS_DECREASE_REFUSED = "partitions_decrease_refused"
REPLICATION_MISMATCH = "replication_mismatch"

#: Every action a :class:`TopicResult` can report.
ACTIONS = (
    CREATED,
    UNCHANGED,
    PARTITIONS_RAISED,
    CONFIG_UPDATED,
    PARTITIONS_DECREASE_REFUSED,
    REPLICATION_MISMATCH,
)
#: Actions that mean the topic differs from the spec and stays so: the user has to act.
PROBLEM_ACTIONS = frozenset({PARTITIONS_DECREASE_REFUSED, REPLICATION_MISMATCH})

# Client-side failures that mean "no broker answered": worth a retry, not a user's mistake.
_UNREACHABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._RESOLVE,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.BROKER_NOT_AVAILABLE,
    }
)
# Each request gets at least this long, even when the call's deadline is (nearly) used up.
_MIN_WAIT_S = 1.0
_POLL_INTERVAL_S = 0.1

_log = logging.getLogger(__name__)
# librdkafka's own lines (e.g. one per refused connection); a child logger so they can be quietened alone.
_client_log = logging.getLogger(f"{__name__}.librdkafka")


class KafkaUnavailable(Exception):  # noqa: N818 -- the name other modules import; it reads as a state
    """Kafka could not be reached or did not answer in time; the message names the bootstrap and the cause."""


class KafkaAdminError(Exception):
    """Kafka answered with an error; the message names the topic and Kafka's error.

    ``retriable`` is true when Kafka says the same request may succeed later (e.g. a topic still being deleted).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class DesiredTopic:
    """A topic as the spec wants it; ``config`` holds topic-level configs, e.g. ``{"retention.ms": "86400000"}``."""

    name: str
    partitions: int = 1
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a topic name must not be empty")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be at least 1, got {self.partitions}")
        if self.replication < 1:
            raise ValueError(
                f"topic {self.name!r}: the replication factor must be at least 1, got {self.replication}"
            )
        for key, value in self.config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"topic {self.name!r}: config {key!r}: {value!r} must map a string to a string "
                    f"(quote numbers, e.g. retention.ms: '86400000')"
                )


def desired_topics(topics: Topics) -> list[DesiredTopic]:
    """A pipeline's topics (``spec.kafka.topics``) as the reconciler takes them, in the spec's order."""
    return [
        DesiredTopic(
            name=t.name, partitions=t.partitions, replication=t.replication_factor, config=dict(t.config)
        )
        for _, t in topics.all()
    ]


@dataclass(frozen=True)
class CurrentTopic:
    """A topic as it exists in Kafka.

    ``replication`` is the smallest replica count over the topic's partitions. ``config`` holds only the values set
    on the topic itself (source ``DYNAMIC_TOPIC_CONFIG``), not broker or built-in defaults: a spec value is thus
    pinned on the topic even when it equals today's default.
    """

    name: str
    partitions: int = 1
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicResult:
    """What :func:`ensure_topics` did (or refused to do) to one topic; ``detail`` is a sentence for a human."""

    name: str
    action: str
    detail: str

    @property
    def problem(self) -> bool:
        """True when the topic differs from the spec and will stay so (the user has to act)."""
        return self.action in PROBLEM_ACTIONS


@dataclass(frozen=True)
class TopicChange:
    """One planned step for one topic.

    ``partitions`` is the count to reach (``created``, ``partitions_raised``); ``replication`` is set for
    ``created``; ``config`` is the whole config for ``created`` and the keys to set for ``config_updated``.
    The other actions only report.
    """

    name: str
    action: str
    detail: str
    partitions: int | None = None
    replication: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)

    def result(self) -> TopicResult:
        """The step as reported once done."""
        return TopicResult(self.name, self.action, self.detail)


def _n_partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def _format_config(config: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={config[key]}" for key in sorted(config)) if config else "no config"


def plan_topic(desired: DesiredTopic, current: CurrentTopic | None) -> list[TopicChange]:
    """The steps that bring one topic from ``current`` (``None``: missing) to ``desired``; pure, no I/O.

    A missing topic gives one ``created`` step. An existing one gives, in this order: a partition step (raise, or
    a refused decrease), a replication report, a config step setting the keys whose values differ; or a single
    ``unchanged`` step when nothing differs.
    """
    if current is None:
        return [
            TopicChange(
                desired.name,
                CREATED,
                f"created with {_n_partitions(desired.partitions)}, replication factor {desired.replication}, "
                f"{_format_config(desired.config)}",
                partitions=desired.partitions,
                replication=desired.replication,
                config=dict(desired.config),
            )
        ]
    if current.name != desired.name:
        raise ValueError(f"cannot plan topic {desired.name!r} from the state of topic {current.name!r}")

    changes: list[TopicChange] = []
    if desired.partitions > current.partitions:
        changes.append(
            TopicChange(
                desired.name,
                PARTITIONS_RAISED,
                f"partitions {current.partitions} -> {desired.partitions}",
                partitions=desired.partitions,
            )
        )
    elif desired.partitions < current.partitions:
        changes.append(
            TopicChange(
                desired.name,
                PARTITIONS_DECREASE_REFUSED,
                f"has {current.partitions} partitions, the spec asks {desired.partitions}: "
                f"Kafka cannot decrease partitions; keeping {current.partitions}",
            )
        )
    if desired.replication != current.replication:
        changes.append(
            TopicChange(
                desired.name,
                REPLICATION_MISMATCH,
                f"replication factor is {current.replication}, the spec asks {desired.replication}: not changed",
            )
        )
    differing = sorted(key for key, value in desired.config.items() if current.config.get(key) != value)
    if differing:
        changes.append(
            TopicChange(
                desired.name,
                CONFIG_UPDATED,
                ", ".join(
                    f"{key} {current.config.get(key, '(not set)')} -> {desired.config[key]}"
                    for key in differing
                ),
                config={key: desired.config[key] for key in differing},
            )
        )
    if not changes:
        changes.append(
            TopicChange(
                desired.name,
                UNCHANGED,
                f"{_n_partitions(current.partitions)}, replication factor {current.replication}, "
                f"{len(desired.config)} config value(s) as in the spec",
            )
        )
    return changes


def plan_topics(desired: Sequence[DesiredTopic], current: Mapping[str, CurrentTopic]) -> list[TopicChange]:
    """:func:`plan_topic` for each topic, in the given order; ``current`` lacks the topics that do not exist.

    A name listed twice with the same settings is planned once; with different settings it is a ValueError.
    """
    return [change for topic in _unique(desired) for change in plan_topic(topic, current.get(topic.name))]


def _unique(topics: Iterable[DesiredTopic]) -> list[DesiredTopic]:
    seen: dict[str, DesiredTopic] = {}
    for topic in topics:
        other = seen.setdefault(topic.name, topic)
        if other != topic:
            raise ValueError(
                f"topic {topic.name!r} is listed twice with different settings: {other} and {topic}"
            )
    return list(seen.values())


# --- I/O -------------------------------------------------------------------------------------------------------


def _unavailable(bootstrap: str, what: str, timeout: float, cause: object) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"Kafka at {bootstrap} is unreachable or did not answer within {timeout:g} s while {what}: {cause}"
    )


def _failure(exc: KafkaException, bootstrap: str, what: str, timeout: float) -> Exception:
    """KafkaUnavailable for transport failures and timeouts, KafkaAdminError for anything Kafka said."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return KafkaAdminError(f"{what} on {bootstrap} failed: {exc}")
    if error.code() in _UNREACHABLE:
        return _unavailable(bootstrap, what, timeout, f"{error.name()}: {error.str()}")
    message = f"{what} on {bootstrap} failed: {error.name()}: {error.str()}"
    if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
        # Created by someone else since the metadata was read, or still being deleted: the next pass sees it.
        return KafkaAdminError(f"{message} (it appeared after the metadata was read; retry)", retriable=True)
    return KafkaAdminError(message, retriable=error.retriable())


class _Kafka:
    """One AdminClient for one call, with the call's time budget: every request and its errors go through here.

    Each request gets what is left of the budget (at least _MIN_WAIT_S), so a call takes about ``timeout``.
    """

    def __init__(self, bootstrap: str, timeout: float, client_config: Mapping[str, str] | None) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._end = time.monotonic() + timeout
        timeout_ms = max(int(timeout * 1000), int(_MIN_WAIT_S * 1000))
        config: dict[str, object] = {
            # librdkafka's defaults (60 s, 30 s) would outlast the caller's budget against a dead broker.
            "socket.timeout.ms": timeout_ms,
            "socket.connection.setup.timeout.ms": timeout_ms,
            # To Python logging instead of raw lines on stderr; delivered by poll() on leaving the ``with``.
            "logger": _client_log,
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
        }
        self.config = config
        try:
            self.admin = AdminClient(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise KafkaAdminError(f"cannot create a Kafka admin client for {bootstrap}: {exc}") from exc

    def __enter__(self) -> _Kafka:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.admin.poll(0)

    def left(self) -> float:
        return max(self._end - time.monotonic(), _MIN_WAIT_S)

    def passed(self) -> bool:
        return time.monotonic() >= self._end

    def unavailable(self, what: str, cause: object) -> KafkaUnavailable:
        return _unavailable(self.bootstrap, what, self.timeout, cause)

    def failure(self, exc: KafkaException, what: str) -> Exception:
        return _failure(exc, self.bootstrap, what, self.timeout)

    def committed(self, group: str, topic: str, partitions: Sequence[int]) -> list[TopicPartition]:
        """The offsets ``group`` committed on ``topic``'s ``partitions``, with their metadata (offset < 0: none).

        Read by a consumer that never joins the group, not by the AdminClient: librdkafka's admin requests to a
        group coordinator abort the process when the broker drops the connection mid-request
        (confluentinc/librdkafka#4605, #3663)."""
        what = f"reading the offsets of consumer group {group}"
        try:
            consumer = Consumer({**self.config, "group.id": group, "enable.auto.commit": False})
        except (KafkaException, ValueError, TypeError) as exc:
            raise KafkaAdminError(f"cannot create a Kafka consumer for {self.bootstrap}: {exc}") from exc
        try:
            return consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=self.left())
        except KafkaException as exc:
            raise self.failure(exc, what) from exc
        finally:
            consumer.close()

    def metadata(self) -> ClusterMetadata:
        try:
            return self.admin.list_topics(timeout=self.left())
        except KafkaException as exc:
            raise self.failure(exc, "reading cluster metadata") from exc

    def request(
        self,
        method: Callable[..., Mapping[Any, Future]],
        what: str,
        *args: object,
        operation: bool = True,
        **kwargs: object,
    ) -> dict[str, Future]:
        """Send one batched admin request; its futures keyed by topic name (ConfigResource keys are unwrapped)."""
        timeouts = {"request_timeout": self.left()} | (
            {"operation_timeout": self.left()} if operation else {}
        )
        try:
            futures = method(*args, **kwargs, **timeouts)
        except KafkaException as exc:
            raise self.failure(exc, what) from exc
        return {getattr(key, "name", key): future for key, future in futures.items()}

    def gather(
        self,
        futures: Mapping[str, Future],
        what: Callable[[str], str],
        tolerate: frozenset[int] = frozenset(),
    ) -> set[str]:
        """Wait for every future; the topics that succeeded, skipping errors whose code is in ``tolerate``.

        All are awaited before raising, so one failing topic does not hide the others: KafkaUnavailable if any
        failed for lack of a broker, else one KafkaAdminError naming each failed topic and its error.
        """
        done: set[str] = set()
        failures: list[Exception] = []
        for name, future in futures.items():
            try:
                future.result(timeout=self.left())
                done.add(name)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, KafkaError) and error.code() in tolerate):
                    failures.append(self.failure(exc, what(name)))
            except TimeoutError:
                failures.append(self.unavailable(what(name), "no answer"))
        unavailable = [f for f in failures if isinstance(f, KafkaUnavailable)]
        if unavailable:
            raise unavailable[0]
        if failures:
            raise KafkaAdminError(
                "; ".join(str(f) for f in failures),
                retriable=all(isinstance(f, KafkaAdminError) and f.retriable for f in failures),
            )
        return done

    def poll_metadata(self, settled: Callable[[ClusterMetadata], bool]) -> bool:
        """Read the metadata until ``settled`` holds (True) or the budget is spent (False)."""
        while True:
            try:
                if settled(self.admin.list_topics(timeout=self.left())):
                    return True
            except KafkaException:
                pass  # retried until the deadline
            if self.passed():
                return False
            time.sleep(_POLL_INTERVAL_S)


def _shapes(metadata: ClusterMetadata, names: Iterable[str], bootstrap: str) -> dict[str, tuple[int, int]]:
    """``name -> (partitions, replication)`` for the topics of ``names`` that exist."""
    shapes = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None:
            continue
        if topic.partitions:
            # A partition without a leader right now (LEADER_NOT_AVAILABLE) still counts: the topic exists.
            replication = min(len(p.replicas) for p in topic.partitions.values())
            shapes[name] = (len(topic.partitions), replication)
        elif topic.error is not None and topic.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaAdminError(
                f"reading topic {name!r} on {bootstrap} failed: {topic.error.name()}: {topic.error.str()}",
                retriable=topic.error.retriable(),
            )
    return shapes


def _describe(kafka: _Kafka, names: Sequence[str]) -> tuple[dict[str, CurrentTopic], int]:
    """The existing topics among ``names``, and the number of brokers in the cluster."""
    metadata = kafka.metadata()
    shapes = _shapes(metadata, names, kafka.bootstrap)
    configs: dict[str, dict[str, str]] = {}
    if shapes:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in shapes]
        futures = kafka.request(
            kafka.admin.describe_configs, f"describing topics {sorted(shapes)}", resources, operation=False
        )
        # A topic listed in the metadata but unknown to describe_configs is being deleted: it counts as absent.
        described = kafka.gather(
            futures,
            lambda name: f"describing the config of topic {name!r}",
            tolerate=frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART}),
        )
        shapes = {name: shape for name, shape in shapes.items() if name in described}
        for name in described:
            future = futures[name]
            configs[name] = {
                key: entry.value
                for key, entry in future.result().items()
                # Only what is set on the topic itself, not inherited broker or built-in defaults.
                if ConfigSource(entry.source) is ConfigSource.DYNAMIC_TOPIC_CONFIG and entry.value is not None
            }
    current = {
        name: CurrentTopic(name, partitions, replication, configs.get(name, {}))
        for name, (partitions, replication) in shapes.items()
    }
    return current, len(metadata.brokers)


def _ready(metadata: ClusterMetadata, name: str, partitions: int) -> bool:
    topic = metadata.topics.get(name)
    if topic is None or len(topic.partitions) < partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


def _apply(kafka: _Kafka, changes: Sequence[TopicChange], brokers: int) -> None:
    """Carry out the planned creations, partition raises and config updates, then await the new partitions."""
    by_action: dict[str, dict[str, TopicChange]] = {}
    for change in changes:
        by_action.setdefault(change.action, {})[change.name] = change

    if created := by_action.get(CREATED, {}):
        requests = [
            NewTopic(
                c.name, num_partitions=c.partitions, replication_factor=c.replication, config=dict(c.config)
            )
            for c in created.values()
        ]
        futures = kafka.request(kafka.admin.create_topics, f"creating topics {sorted(created)}", requests)

        def creating(name: str) -> str:
            c = created[name]
            return (
                f"creating topic {name!r} ({_n_partitions(c.partitions or 0)}, replication factor "
                f"{c.replication}, {_format_config(c.config)}; the cluster has {brokers} broker(s))"
            )

        kafka.gather(futures, creating)
    if raised := by_action.get(PARTITIONS_RAISED, {}):
        requests = [NewPartitions(c.name, c.partitions) for c in raised.values()]
        futures = kafka.request(
            kafka.admin.create_partitions, f"adding partitions to {sorted(raised)}", requests
        )
        kafka.gather(futures, lambda name: f"raising topic {name!r} {raised[name].detail}")
    if updated := by_action.get(CONFIG_UPDATED, {}):
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                c.name,
                incremental_configs=[
                    ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                    for key, value in sorted(c.config.items())
                ],
            )
            for c in updated.values()
        ]
        what = f"updating the config of {sorted(updated)}"
        futures = kafka.request(kafka.admin.incremental_alter_configs, what, resources, operation=False)
        kafka.gather(futures, lambda name: f"updating topic {name!r} config ({updated[name].detail})")

    # The next reader (often the next reconcile) must see the new partitions, or it would plan them again.
    grown = {c.name: c.partitions for c in changes if c.action in (CREATED, PARTITIONS_RAISED)}
    if grown and not kafka.poll_metadata(lambda md: all(_ready(md, name, n) for name, n in grown.items())):
        raise kafka.unavailable(
            "waiting for new partitions", f"topics {sorted(grown)} lack a leader for some partition"
        )


def ensure_topics(
    bootstrap: str,
    topics: Sequence[DesiredTopic],
    *,
    timeout: float = 15.0,
    client_config: Mapping[str, str] | None = None,
) -> list[TopicResult]:
    """Make ``topics`` exist as specified, idempotently; one or more results per topic, in the given order.

    Missing topics are created with their partitions, replication factor and config, and awaited until every
    partition has a leader; partitions are raised when the spec raises them (and awaited likewise); config keys
    whose values differ are set (keys not in the spec are kept). A partition decrease or a replication difference
    is reported as a problem result and not attempted.

    ``client_config`` adds librdkafka settings (e.g. security) to the AdminClient. The call takes about
    ``timeout`` seconds at most. Raises KafkaUnavailable when Kafka cannot be reached or does not answer in time,
    KafkaAdminError when Kafka refuses a request (the message names the topic and Kafka's error), ValueError
    when a name is listed twice with different settings.
    """
    desired = _unique(topics)
    if not desired:
        return []
    with _Kafka(bootstrap, timeout, client_config) as kafka:
        current, brokers = _describe(kafka, [t.name for t in desired])
        changes = plan_topics(desired, current)
        _apply(kafka, changes, brokers)

    results = [c.result() for c in changes]
    for result in results:
        if result.action != UNCHANGED:
            log = _log.warning if result.problem else _log.info
            log("topic %s on %s: %s: %s", result.name, bootstrap, result.action, result.detail)
    return results


def delete_topics(
    bootstrap: str,
    names: Sequence[str],
    *,
    timeout: float = 15.0,
    client_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Delete the topics ``names``; return those actually deleted, in the given order. Missing ones are fine.

    Waits (within ``timeout``) until the deleted topics are gone from the metadata, so a following read does not
    see them. Raises KafkaUnavailable when Kafka cannot be reached or does not answer in time, KafkaAdminError
    when Kafka refuses (e.g. topic deletion disabled on the broker).
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return []
    with _Kafka(bootstrap, timeout, client_config) as kafka:
        futures = kafka.request(kafka.admin.delete_topics, f"deleting topics {unique}", unique)
        done = kafka.gather(
            futures,
            lambda name: f"deleting topic {name!r}",
            tolerate=frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART}),
        )
        deleted = [name for name in unique if name in done]
        # Only a courtesy to the next reader: the deletion itself has succeeded, so no error after the budget.
        if deleted:
            kafka.poll_metadata(lambda md: not set(deleted) & set(md.topics))
    for name in deleted:
        _log.info("topic %s on %s: deleted", name, bootstrap)
    return deleted


def describe_topics(
    bootstrap: str,
    names: Sequence[str],
    *,
    timeout: float = 15.0,
    client_config: Mapping[str, str] | None = None,
) -> dict[str, CurrentTopic]:
    """The topics among ``names`` that exist, as :class:`CurrentTopic` (config: values set on the topic itself).

    Raises KafkaUnavailable when Kafka cannot be reached or does not answer in time.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    with _Kafka(bootstrap, timeout, client_config) as kafka:
        current, _brokers = _describe(kafka, unique)
    return {name: current[name] for name in unique if name in current}


def cluster_id(
    bootstrap: str, *, timeout: float = 15.0, client_config: Mapping[str, str] | None = None
) -> str:
    """The Kafka cluster's id: the same whichever bootstrap address reaches it (a topic's identity is its
    cluster and its name). Raises KafkaUnavailable when Kafka cannot be reached or does not answer in time."""
    with _Kafka(bootstrap, timeout, client_config) as kafka:
        try:
            future = kafka.admin.describe_cluster(request_timeout=kafka.left())
            return future.result(timeout=kafka.left()).cluster_id
        except KafkaException as exc:
            raise kafka.failure(exc, "describing the cluster") from exc
        except TimeoutError as exc:
            raise kafka.unavailable("describing the cluster", "no answer") from exc


def read_progress(
    bootstrap: str,
    topic: str,
    groups: Sequence[str],
    *,
    now: datetime,
    timeout: float = 15.0,
    client_config: Mapping[str, str] | None = None,
) -> dict[str, progress.Reading]:
    """Where each consumer group of ``groups`` stands in ``topic`` (a job's reporting group, see
    :mod:`sluice_operator.progress`): the topic's earliest and end offsets, the group's committed offsets and the
    metadata of its latest commit, as read at ``now``. A group that never committed has no offsets.

    Raises KafkaUnavailable when Kafka cannot be reached or does not answer in time, KafkaAdminError when the
    topic does not exist or Kafka refuses a request."""
    with _Kafka(bootstrap, timeout, client_config) as kafka:
        found = kafka.metadata().topics.get(topic)
        if found is None or found.error is not None:
            raise KafkaAdminError(
                f"reading the progress of {', '.join(groups)}: topic {topic} does not exist"
            )
        partitions = sorted(found.partitions)
        start = _offsets(kafka, topic, partitions, OffsetSpec.earliest(), "earliest")
        end = _offsets(kafka, topic, partitions, OffsetSpec.latest(), "latest")
        readings = {}
        for group in groups:
            listed = kafka.committed(group, topic, partitions)
            committed = {tp.partition: tp.offset for tp in listed if tp.offset >= 0}
            commits = [
                c for c in (progress.read_metadata(tp.metadata) for tp in listed if tp.offset >= 0) if c
            ]
            latest = max(commits, key=lambda c: (c.batch_id, c.at), default=None)
            readings[group] = progress.Reading(
                at=now, end=end, start=start, committed=committed, commit=latest
            )
        return readings


def _offsets(
    kafka: _Kafka, topic: str, partitions: Sequence[int], spec: OffsetSpec, which: str
) -> dict[int, int]:
    what = f"listing the {which} offsets of {topic}"
    try:
        futures = kafka.admin.list_offsets(
            {TopicPartition(topic, p): spec for p in partitions}, request_timeout=kafka.left()
        )
        return {tp.partition: future.result(timeout=kafka.left()).offset for tp, future in futures.items()}
    except KafkaException as exc:
        raise kafka.failure(exc, what) from exc
    except TimeoutError as exc:
        raise kafka.unavailable(what, "no answer") from exc
