"""The StreamingPipeline spec as typed, frozen dataclasses: the pipeline's defaults and validation.

Every field carries its description, bounds and enum in its metadata; :mod:`sluice_operator.crd` derives the CRD's
openAPIV3Schema from these classes (so ``kubectl explain`` documents exactly what is parsed here), and
:func:`parse_spec` turns the resource's camelCase ``spec`` into a :class:`PipelineSpec` with the same defaults.
A field that a component's program takes as a flag names it in its metadata (``flag``), and a field a job's
checkpointed state depends on names its key in the state fingerprint (``fingerprint``): the command lines and the
fingerprints are built from these (:mod:`sluice_operator.commands`), for the components of
:mod:`sluice_operator.components`. The programs' own defaults equal the ones here (a unit test compares them).
Rules across fields are written once, in CEL, on the class they concern (``CEL_RULES``); the API server enforces
them at apply time. :func:`semantic_problems` adds the checks a schema cannot express; a spec failing them gets
the ``Invalid`` condition and no children.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from sluice_operator import components

GROUP = "streaming.sluice.dev"
VERSION = "v1alpha1"
KIND = "StreamingPipeline"
PLURAL = "streamingpipelines"
SINGULAR = "streamingpipeline"
SHORT_NAMES = ("spipe",)

#: A duration as the jobs and CEL's duration() both read it: a whole number and one unit.
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"
#: A duration, or ``none`` for no bound.
BOUND_PATTERN = r"^(none|[0-9]+(ms|s|m|h))$"
#: Kafka's legal topic names (CEL rejects "." and "..").
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]+$"
#: Spark memory sizes (spark.driver.memory and friends): a number and an optional k/m/g/t unit.
SPARK_MEMORY_PATTERN = r"^[0-9]+[kmgt]?$"
#: Kubernetes quantities for storage sizes, e.g. 1Gi, 500Mi, 10G.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


#: Where a field passed as a flag goes among a component's flags (see :mod:`sluice_operator.commands`).
FLAG_GROUPS = ("query", "source", "settings", "output")


class SpecError(ValueError):
    """The spec cannot be parsed; the message names the field path and what is accepted."""


def spec_field(
    default: Any = MISSING,
    *,
    description: str,
    default_factory: Any = MISSING,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    enum: tuple | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    min_items: int | None = None,
    item_enum: tuple | None = None,
    cel: tuple[tuple[str, str], ...] = (),
    flag: str | None = None,
    flag_group: str = "settings",
    fingerprint: str | None = None,
) -> Any:
    """A dataclass field with the schema facts the CRD needs (``cel``: ``(rule, message)`` pairs on ``self``).

    ``flag``: the component's flag this field is passed as (None: not passed); ``flag_group``: where among the
    component's flags it goes (:data:`FLAG_GROUPS`); ``fingerprint``: its key in the
    job's state fingerprint, for a setting the checkpointed state cannot survive a change of (None: not part of it).
    """
    if flag_group not in FLAG_GROUPS:
        raise ValueError(f"flag_group {flag_group!r} is not one of {', '.join(FLAG_GROUPS)}")
    meta = {
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "enum": enum,
        "pattern": pattern,
        "min_length": min_length,
        "max_length": max_length,
        "min_items": min_items,
        "item_enum": item_enum,
        "cel": cel,
        "flag": flag,
        "flag_group": flag_group,
        "fingerprint": fingerprint,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _duration(
    default: str, description: str, *, flag: str, flag_group: str = "settings", fingerprint: str | None = None
) -> Any:
    return spec_field(
        default,
        description=description + " Written like 10s, 500ms, 5m or 1h.",
        pattern=DURATION_PATTERN,
        flag=flag,
        flag_group=flag_group,
        fingerprint=fingerprint,
    )


_NOT_DOT = (("self != '.' && self != '..'", "a topic name cannot be '.' or '..'"),)

# --- Kafka ---------------------------------------------------------------------------------------------------------


def _topic_class(role: str, default_name: str, default_partitions: int, what: str) -> type:
    """A topic settings class whose name default is the role's lab topic name."""

    @dataclass(frozen=True)
    class Topic:
        name: str = spec_field(
            default_name,
            description=f"Name of the {what} topic.",
            pattern=TOPIC_PATTERN,
            min_length=1,
            max_length=249,
            cel=_NOT_DOT,
        )
        partitions: int = spec_field(
            default_partitions,
            description="Number of partitions. It can be raised later; Kafka cannot lower it (a decrease is refused).",
            minimum=1,
            maximum=10000,
        )
        replication_factor: int = spec_field(
            1,
            description="Copies of each partition; at most the number of brokers.",
            minimum=1,
            maximum=32767,
        )
        config: dict[str, str] = spec_field(
            default_factory=dict, description="Topic-level configuration, e.g. retention.ms: '86400000'."
        )

    Topic.__name__ = Topic.__qualname__ = f"{role}Topic"
    Topic.__doc__ = f"The {what} topic."
    return Topic


SourceTopic = _topic_class("Source", "stream_data_topic", 3, "sensor events (input)")
ProcessedTopic = _topic_class("Processed", "processed_data_topic", 1, "basic job's per-device windows")
WindowedTopic = _topic_class("Windowed", "windowed_results_topic", 1, "windowed job's aggregations")
AlertsTopic = _topic_class("Alerts", "anomaly_alerts_topic", 1, "anomaly alerts")
DeadLetterTopic = _topic_class("DeadLetter", "dead_letter_topic", 1, "dead-letter (unparsable records)")


@dataclass(frozen=True)
class Topics:
    """The pipeline's topics; created by the operator (auto-creation is off on the broker)."""

    source: SourceTopic = spec_field(default_factory=SourceTopic, description="Input topic of sensor events.")
    processed: ProcessedTopic = spec_field(default_factory=ProcessedTopic, description="Basic job output.")
    windowed: WindowedTopic = spec_field(default_factory=WindowedTopic, description="Windowed job output.")
    alerts: AlertsTopic = spec_field(default_factory=AlertsTopic, description="Anomaly job output.")
    dead_letter: DeadLetterTopic = spec_field(
        default_factory=DeadLetterTopic, description="Records no job could parse, with the reason in headers."
    )

    CEL_RULES: ClassVar = (
        (
            "[self.source.name, self.processed.name, self.windowed.name, self.alerts.name, self.deadLetter.name]"
            ".all(n, [self.source.name, self.processed.name, self.windowed.name, self.alerts.name,"
            " self.deadLetter.name].filter(m, m == n).size() == 1)",
            "topic names must be distinct",
        ),
    )

    def all(self) -> list[tuple[str, Any]]:
        """``(role, topic)`` for every topic, in a stable order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True)
class KafkaSpec:
    """Where Kafka is and which topics the pipeline uses."""

    bootstrap_servers: str = spec_field(
        "sluice-kafka:9092",
        description="Kafka bootstrap servers (host:port[,host:port...]) as seen from the pipeline's pods and the operator.",
        pattern=r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$",
    )
    topics: Topics = spec_field(default_factory=Topics, description="The pipeline's topics.")
    deletion_policy: str = spec_field(
        "Retain",
        description="What happens to the topics when the pipeline is deleted: Retain keeps them, Delete removes them.",
        enum=("Retain", "Delete"),
    )


# --- Spark ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """CPU and memory of a Spark driver or executor."""

    cores: int = spec_field(1, description="CPU cores.", minimum=1, maximum=64)
    memory: str = spec_field(
        "1g", description="JVM heap, as Spark writes it (512m, 1g, 4g).", pattern=SPARK_MEMORY_PATTERN
    )


def _cpu_request(who: str) -> Any:
    return spec_field(
        "",
        description=(
            f"CPU {who} requests from the scheduler (a Kubernetes quantity: 500m, 1.5); empty requests "
            "`cores`. Lower it to pack pipelines onto small nodes: Spark still runs `cores` threads."
        ),
        pattern=r"^([0-9]+(\.[0-9]+)?m?)?$",
    )


@dataclass(frozen=True)
class DriverResources(Resources):
    """CPU and memory of a job's driver pod (in local mode, its executors too)."""

    cpu_request: str = _cpu_request("the pod")


@dataclass(frozen=True)
class DynamicAllocation:
    """Executors added while tasks wait and removed when idle (Spark's dynamic allocation)."""

    enabled: bool = spec_field(
        False,
        description=(
            "Scale each job's executors between minExecutors and maxExecutors with its load "
            "(spark.dynamicAllocation.*); instances is then the number it starts with."
        ),
    )
    min_executors: int = spec_field(1, description="Fewest executors a job keeps.", minimum=0, maximum=1000)
    max_executors: int = spec_field(4, description="Most executors a job takes.", minimum=1, maximum=1000)
    shuffle_tracking: bool = spec_field(
        True,
        description=(
            "Keep an executor while it holds shuffle data a later stage may read "
            "(spark.dynamicAllocation.shuffleTracking.enabled). Neither mode runs an external shuffle service: "
            "with this off, Spark needs executor decommissioning (spark.decommission.enabled in spark.conf) "
            "to remove an executor without losing its shuffle files."
        ),
    )

    CEL_RULES: ClassVar = (
        ("self.minExecutors <= self.maxExecutors", "minExecutors must not be more than maxExecutors"),
    )


@dataclass(frozen=True)
class ExecutorSpec(Resources):
    """The executors of each job in standalone and kubernetes modes (local mode runs them in the driver)."""

    instances: int = spec_field(
        1,
        description=(
            "Executors per job. kubernetes: executor pods per job; standalone: the job takes instances x cores "
            "of the cluster's cores (spark.cores.max), so the jobs of a pipeline share it. Under dynamic "
            "allocation, the number a job starts with."
        ),
        minimum=1,
        maximum=1000,
    )
    memory_overhead: str = spec_field(
        "",
        description=(
            "kubernetes mode: memory an executor pod gets beyond its heap (spark.executor.memoryOverhead: 384m, "
            "1g); empty: Spark's default, a tenth of the heap and at least 384m."
        ),
        pattern=r"^([0-9]+[kmgt]?)?$",
    )
    cpu_request: str = _cpu_request("an executor pod (kubernetes mode)")
    dynamic_allocation: DynamicAllocation = spec_field(
        default_factory=DynamicAllocation, description="Executors that follow the load."
    )

    CEL_RULES: ClassVar = (
        (
            "!self.dynamicAllocation.enabled || (self.instances >= self.dynamicAllocation.minExecutors && "
            "self.instances <= self.dynamicAllocation.maxExecutors)",
            "with dynamicAllocation enabled, instances must lie between minExecutors and maxExecutors",
        ),
    )


@dataclass(frozen=True)
class SparkSpec:
    """How the jobs run on Spark."""

    mode: str = spec_field(
        "local",
        description=(
            "local: executors run inside the job's driver pod (Spark local mode) and write their state to the "
            "pipeline's checkpoint volume. standalone: executors run on a Spark standalone cluster (master), whose "
            "workers must mount the same checkpoint volume (checkpoints.existingClaim) at the same path. "
            "kubernetes: each job's driver pod asks the API server for executor pods in the pipeline's namespace "
            "(Spark on Kubernetes, client mode); they mount checkpoints.existingClaim, a ReadWriteMany claim."
        ),
        enum=("local", "standalone", "kubernetes"),
    )
    master: str = spec_field(
        "spark://sluice-spark-master:7077",
        description=(
            "Spark master URL in standalone mode (ignored in local mode; kubernetes mode uses the API server "
            "of the cluster the pipeline runs in)."
        ),
        pattern=r"^spark://[^\s]+$",
    )
    image: str = spec_field(
        "sluice/spark-jobs:0.1.0", description="Image of the generator and job pods.", min_length=1
    )
    image_pull_policy: str = spec_field(
        "IfNotPresent", description="Pull policy of that image.", enum=("Always", "IfNotPresent", "Never")
    )
    driver: DriverResources = spec_field(
        default_factory=lambda: DriverResources(cores=2, memory="1g"),
        description="Driver resources; in local mode the executors share them.",
    )
    executor: ExecutorSpec = spec_field(
        default_factory=ExecutorSpec,
        description="Executors of each job in standalone and kubernetes modes: how many, and their resources.",
    )
    executor_wait_seconds: int = spec_field(
        120,
        description=(
            "standalone and kubernetes modes: how long a job may run without an executor before the pipeline is "
            "ExecutorsUnavailable (and not Ready). The job keeps waiting: Spark keeps asking for executors."
        ),
        minimum=30,
        maximum=86400,
    )
    conf: dict[str, str] = spec_field(
        default_factory=dict,
        description=(
            "Extra Spark configuration passed as --conf key=value: keys start with spark. (settings the operator "
            "manages are refused)."
        ),
        cel=(
            (
                "self.all(k, k.startsWith('spark.'))",
                "every key of spark.conf must be a Spark setting (spark.*)",
            ),
        ),
    )


# --- checkpoints ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointSpec:
    """The volume the streaming queries keep their offsets and state on."""

    storage_class_name: str = spec_field(
        "", description="Storage class of the checkpoint volume; empty means the cluster's default."
    )
    size: str = spec_field("1Gi", description="Size of the checkpoint volume.", pattern=QUANTITY_PATTERN)
    access_modes: list[str] = spec_field(
        default_factory=lambda: ["ReadWriteOnce"],
        description="Access modes of the checkpoint volume.",
        min_items=1,
        item_enum=("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"),
    )
    existing_claim: str = spec_field(
        "",
        description=(
            "Use this existing PersistentVolumeClaim (e.g. the volume the Spark workers mount) instead of creating "
            "one; the pipeline then keeps its checkpoints under <namespace>/<name>/ on it."
        ),
        max_length=253,
    )
    deletion_policy: str = spec_field(
        "Retain",
        description="What happens to a volume the operator created when the pipeline is deleted: Retain or Delete.",
        enum=("Retain", "Delete"),
    )
    on_reset: str = spec_field(
        "Resume",
        description=(
            "Where a job starts when it moves to a fresh checkpoint (its windows or source changed, Event "
            "CheckpointReset): Resume starts where the old checkpoint had got to, so no record is read twice and no "
            "window or alert is written again; Replay reads the source topic again from its earliest offset."
        ),
        enum=("Resume", "Replay"),
    )


# --- generator and jobs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSpec:
    """The sensor-event generator (the lab's distribution)."""

    enabled: bool = spec_field(True, description="Run the generator.")
    devices: int = spec_field(
        10, description="Number of simulated devices.", minimum=1, maximum=100000, flag="--devices"
    )
    rate: float = spec_field(
        100.0,
        description="Events per second, all devices together.",
        minimum=0,
        exclusive_minimum=True,
        maximum=1000000,
        flag="--rate",
    )
    anomaly_probability: float = spec_field(
        0.1,
        description="Probability that an event is an anomaly (value in [200, 500]).",
        minimum=0,
        maximum=1,
        flag="--anomaly-probability",
    )
    malformed_fraction: float = spec_field(
        0.0,
        description="Share of malformed messages (they go to the dead-letter topic).",
        minimum=0,
        maximum=1,
        flag="--malformed-fraction",
    )
    late_fraction: float = spec_field(
        0.0, description="Share of late, out-of-order events.", minimum=0, maximum=1, flag="--late-fraction"
    )
    seed: int | None = spec_field(
        None, description="Random seed; fixes the sequence of events.", minimum=0, flag="--seed"
    )


_OUTPUT_MODE = {
    "description": "append writes each window once when final; update writes every change.",
    "enum": ("append", "update"),
    "flag": "--output-mode",
    "flag_group": "query",
}


def _max_offsets_per_trigger() -> Any:
    return spec_field(
        None,
        description=(
            "Most Kafka records one micro-batch reads, all source partitions together (Spark's "
            "maxOffsetsPerTrigger); unset reads everything there is. Bounds a micro-batch's time and memory when "
            "a backlog has built up (after a restart, a burst): the backlog drains over several micro-batches."
        ),
        minimum=1,
        flag="--max-offsets-per-trigger",
        flag_group="source",
    )


def _trigger() -> Any:
    return _duration(
        "5s",
        "Micro-batch interval; 0s starts the next micro-batch as soon as one ends.",
        flag="--trigger",
        flag_group="query",
    )


def _watermark(default: str) -> Any:
    return _duration(default, "How late an event may arrive.", flag="--watermark")


def _log_level() -> Any:
    return spec_field(
        None,
        description=(
            "Spark's log level in the job's pod: ERROR, WARN, INFO or DEBUG; unset keeps the job's own (WARN). "
            "INFO or DEBUG to look into a job; changing it restarts the pod, which resumes from its checkpoint."
        ),
        enum=("ERROR", "WARN", "INFO", "DEBUG"),
        flag="--log-level",
    )


def _slide_rule(window: str, slide: str) -> tuple[str, str]:
    return (f"duration(self.{slide}) <= duration(self.{window})", f"{slide} must not be longer than {window}")


def _positive_rule(name: str) -> tuple[str, str]:
    return (f"duration(self.{name}) > duration('0s')", f"{name} must be longer than 0")


@dataclass(frozen=True)
class BasicJob:
    """The basic job: status counts, per-device sliding windows, event files."""

    enabled: bool = spec_field(True, description="Run this job.")
    window: str = _duration("10s", "Length of the per-device windows.", flag="--window", fingerprint="window")
    slide: str = _duration("5s", "How often a window starts.", flag="--slide", fingerprint="slide")
    watermark: str = _watermark("10s")
    trigger: str = _trigger()
    max_offsets_per_trigger: int | None = _max_offsets_per_trigger()
    output_mode: str = spec_field("append", **_OUTPUT_MODE)
    file_format: str = spec_field(
        "parquet",
        description="Format of the event files.",
        enum=("parquet", "json"),
        flag="--file-format",
        flag_group="output",
    )
    log_level: str | None = _log_level()

    CEL_RULES: ClassVar = (_positive_rule("window"), _positive_rule("slide"), _slide_rule("window", "slide"))


@dataclass(frozen=True)
class WindowedJob:
    """The windowed job: tumbling, sliding and per-status windows."""

    enabled: bool = spec_field(True, description="Run this job.")
    tumbling_window: str = _duration(
        "10s", "Length of the tumbling windows.", flag="--tumbling-window", fingerprint="tumbling"
    )
    sliding_window: str = _duration(
        "30s", "Length of the sliding windows.", flag="--sliding-window", fingerprint="sliding"
    )
    sliding_slide: str = _duration(
        "10s", "How often a sliding window starts.", flag="--sliding-slide", fingerprint="slide"
    )
    status_window: str = _duration(
        "1h", "Length of the per-status windows.", flag="--status-window", fingerprint="status"
    )
    watermark: str = _watermark("10s")
    trigger: str = _trigger()
    max_offsets_per_trigger: int | None = _max_offsets_per_trigger()
    output_mode: str = spec_field("append", **_OUTPUT_MODE)
    log_level: str | None = _log_level()

    CEL_RULES: ClassVar = (
        _positive_rule("tumblingWindow"),
        _positive_rule("slidingWindow"),
        _positive_rule("slidingSlide"),
        _positive_rule("statusWindow"),
        _slide_rule("slidingWindow", "slidingSlide"),
    )


@dataclass(frozen=True)
class AnomalyJob:
    """The anomaly job: z-scores over sliding windows."""

    enabled: bool = spec_field(True, description="Run this job.")
    window: str = _duration(
        "30s", "Length of the windows the statistics are taken over.", flag="--window", fingerprint="window"
    )
    slide: str = _duration("10s", "How often a window starts.", flag="--slide", fingerprint="slide")
    watermark: str = _watermark("30s")
    threshold: float = spec_field(
        2.0,
        description="Alert when a window's max or min is more than this many σ from its mean.",
        minimum=0,
        exclusive_minimum=True,
        maximum=1000,
        flag="--threshold",
    )
    stddev_floor: float = spec_field(
        1.0,
        description="σ used when σ is null (one event) or 0.",
        minimum=0,
        exclusive_minimum=True,
        maximum=1000000,
        flag="--stddev-floor",
    )
    trigger: str = _trigger()
    max_offsets_per_trigger: int | None = _max_offsets_per_trigger()
    output_mode: str = spec_field("append", **_OUTPUT_MODE)
    log_level: str | None = _log_level()

    CEL_RULES: ClassVar = (_positive_rule("window"), _positive_rule("slide"), _slide_rule("window", "slide"))


@dataclass(frozen=True)
class Jobs:
    """The three streaming jobs."""

    basic: BasicJob = spec_field(default_factory=BasicJob, description="The basic job.")
    windowed: WindowedJob = spec_field(default_factory=WindowedJob, description="The windowed job.")
    anomaly: AnomalyJob = spec_field(default_factory=AnomalyJob, description="The anomaly job.")


@dataclass(frozen=True)
class InputSpec:
    """What the jobs accept as an event; any other record goes to the dead-letter topic with the reason in its
    headers, and never reaches a window."""

    max_event_ahead: str = spec_field(
        "1h",
        description=(
            "An event whose timestamp is further ahead of the time its micro-batch runs is a dead letter "
            "(TIMESTAMP_OUT_OF_RANGE): one far-future event would move the watermark past every real event. "
            "A duration such as 30m or 1h, or none for no bound."
        ),
        pattern=BOUND_PATTERN,
        flag="--max-event-ahead",
        flag_group="source",
    )
    max_event_behind: str = spec_field(
        "168h",
        description=(
            "An event whose timestamp is further behind its record's Kafka timestamp is a dead letter "
            "(TIMESTAMP_OUT_OF_RANGE). Measured from when the record was produced, so a backlog read late is not "
            "refused for that. A duration such as 24h or 168h (7 days), or none for no bound."
        ),
        pattern=BOUND_PATTERN,
        flag="--max-event-behind",
        flag_group="source",
    )
    max_record_bytes: int = spec_field(
        65536,
        description="A record whose key and value hold more bytes is a dead letter (RECORD_TOO_LARGE).",
        minimum=1,
        maximum=104857600,
        flag="--max-record-bytes",
        flag_group="source",
    )
    max_field_length: int = spec_field(
        256,
        description=(
            "An event whose device_id or status has more characters is a dead letter (FIELD_TOO_LONG); they become "
            "the keys of the jobs' outputs."
        ),
        minimum=1,
        maximum=1000000,
        flag="--max-field-length",
        flag_group="source",
    )
    fail_on_data_loss: bool = spec_field(
        True,
        description=(
            "When records a job has not read are gone from Kafka (expired by retention, deleted), the job stops "
            "and the pipeline says so (reason SourceDataLost, an Event naming the offsets) instead of skipping them "
            "silently. Set false to skip what is gone and go on."
        ),
        flag="--fail-on-data-loss",
        flag_group="source",
    )


@dataclass(frozen=True)
class RestartPolicy:
    """What the operator does when a pod of the pipeline fails."""

    type: str = spec_field(
        "OnFailure",
        description="Never: leave failed pods. OnFailure: recreate failed pods. Always: also recreate pods that succeeded.",
        enum=("Never", "OnFailure", "Always"),
    )
    backoff_seconds: int = spec_field(
        10, description="Delay before the first restart; doubles after each.", minimum=1, maximum=3600
    )
    max_backoff_seconds: int = spec_field(
        300, description="Longest delay between restarts.", minimum=1, maximum=86400
    )
    max_attempts: int = spec_field(
        5,
        description=(
            "Restarts of one component within windowSeconds before the operator stops trying (0: no limit)."
        ),
        minimum=0,
        maximum=1000,
    )
    window_seconds: int = spec_field(
        3600,
        description=(
            "A pod that ran at least this long before it failed starts a fresh count of restarts (and of backoff): "
            "incidents far apart never add up to maxAttempts."
        ),
        minimum=60,
        maximum=2592000,
    )

    CEL_RULES: ClassVar = (
        (
            "self.maxBackoffSeconds >= self.backoffSeconds",
            "maxBackoffSeconds must be at least backoffSeconds",
        ),
    )


@dataclass(frozen=True)
class SloSpec:
    """What the pipeline promises, per job: the operator's Progressing, Lagging and Stalled conditions, and Ready, are
    judged against it (lag is read from the job's consumer group, see ``status.components.<job>.progress``)."""

    stall_seconds: int = spec_field(
        300,
        description=(
            "A job whose source has records waiting and that has committed no micro-batch for this long (counted "
            "from the latest of its last commit, its pod's start and when records began to wait) is Stalled, and "
            "the operator restarts it (a counted restart, Event reason Stalled). Make it longer than a job takes "
            "to start and run its longest micro-batch."
        ),
        minimum=60,
        maximum=86400,
    )
    max_lag_records: int | None = spec_field(
        None,
        description=(
            "A job with more records of its source topic waiting than this is Lagging, and the pipeline not Ready. "
            "Unset: no bound."
        ),
        minimum=0,
    )
    max_freshness_seconds: int | None = spec_field(
        None,
        description=(
            "A job whose watermark trails the present by more than this (its newest complete window is older) is "
            "Lagging, and the pipeline not Ready. Unset: no bound."
        ),
        minimum=1,
    )


@dataclass(frozen=True)
class MonitoringSpec:
    """How the jobs expose their metrics."""

    metrics_port: int = spec_field(
        9400,
        description=(
            "Port each job pod serves Prometheus metrics on (/metrics; container port named metrics); 0 serves none."
        ),
        minimum=0,
        maximum=65535,
        flag="--metrics-port",
    )


@dataclass(frozen=True)
class PipelineSpec:
    """A Kafka -> Spark Structured Streaming pipeline: topics, checkpoint storage, the generator and three jobs."""

    kafka: KafkaSpec = spec_field(default_factory=KafkaSpec, description="Kafka connection and topics.")
    spark: SparkSpec = spec_field(default_factory=SparkSpec, description="How the jobs run on Spark.")
    checkpoints: CheckpointSpec = spec_field(
        default_factory=CheckpointSpec, description="Checkpoint storage."
    )
    generator: GeneratorSpec = spec_field(default_factory=GeneratorSpec, description="The event generator.")
    jobs: Jobs = spec_field(default_factory=Jobs, description="The streaming jobs.")
    input: InputSpec = spec_field(
        default_factory=InputSpec,
        description="What every job accepts as an event; the other records become dead letters.",
    )
    restart_policy: RestartPolicy = spec_field(
        default_factory=RestartPolicy, description="Restart policy of the pods."
    )
    slo: SloSpec = spec_field(
        default_factory=SloSpec,
        description="When a job counts as stalled or lagging (conditions Stalled, Lagging; Ready needs neither).",
    )
    monitoring: MonitoringSpec = spec_field(
        default_factory=MonitoringSpec, description="The jobs' Prometheus metrics."
    )
    suspend: bool = spec_field(
        False,
        description="Remove the pods but keep topics and checkpoints; resume from them when false again.",
    )


# --- names, parsing ------------------------------------------------------------------------------------------------


def camel(name: str) -> str:
    """``bootstrap_servers`` -> ``bootstrapServers``."""
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def field_type(owner: type, f: dataclasses.Field) -> Any:
    """The resolved type annotation of a field (annotations are strings under ``from __future__``)."""
    return typing.get_type_hints(owner, globals())[f.name]


def _optional_inner(tp: Any) -> Any | None:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return None


def _convert(tp: Any, value: Any, path: str) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _convert(inner, value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise SpecError(f"{path}: must be a map of strings to strings, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"{path}: must be a list of strings, got {value!r}")
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{path}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{path}: must be a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{path}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{path}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported spec type {tp!r} at {path}")


def _check_facts(f: dataclasses.Field, value: Any, path: str) -> None:
    """The schema facts of a field (bounds, enum, pattern), for specs that did not come through the API server."""
    m = f.metadata
    if value is None:
        return
    if m["enum"] is not None and value not in m["enum"]:
        raise SpecError(f"{path}: {value!r} is not one of {', '.join(m['enum'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = m["minimum"], m["maximum"]
        if low is not None and (value <= low if m["exclusive_minimum"] else value < low):
            raise SpecError(
                f"{path}: {value} must be {'greater than' if m['exclusive_minimum'] else 'at least'} {low}"
            )
        if high is not None and value > high:
            raise SpecError(f"{path}: {value} must be at most {high}")
    if isinstance(value, str):
        if m["pattern"] is not None and not re.match(m["pattern"], value):
            raise SpecError(f"{path}: {value!r} does not match {m['pattern']}")
        if m["min_length"] is not None and len(value) < m["min_length"]:
            raise SpecError(f"{path}: must not be empty")
        if m["max_length"] is not None and len(value) > m["max_length"]:
            raise SpecError(f"{path}: longer than {m['max_length']} characters")
    if isinstance(value, list):
        if m["min_items"] is not None and len(value) < m["min_items"]:
            raise SpecError(f"{path}: needs at least {m['min_items']} item(s)")
        if m["item_enum"] is not None:
            for item in value:
                if item not in m["item_enum"]:
                    raise SpecError(f"{path}: {item!r} is not one of {', '.join(m['item_enum'])}")


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: must be an object, got {data!r}")
    known = {camel(f.name): f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {}
    for key, f in known.items():
        if key not in data:
            continue  # the dataclass default applies: the same value the CRD's schema defaults to
        sub = f"{path}.{key}" if path else key
        value = _convert(field_type(cls, f), data[key], sub)
        _check_facts(f, value, sub)
        values[f.name] = value
    return cls(**values)


def parse_spec(spec: dict | None) -> PipelineSpec:
    """Turn a StreamingPipeline's ``spec`` (camelCase, as stored) into a :class:`PipelineSpec`.

    Missing fields take the defaults the CRD declares; a wrong type or value raises :class:`SpecError` naming the
    field path (``spec.kafka.topics.source.partitions: 0 must be at least 1``).
    """
    return _build(PipelineSpec, spec, "spec")


# --- checks a schema cannot make -----------------------------------------------------------------------------------

_EXECUTOR = "spark.executor"
_OPERATOR = "the operator"
#: Spark settings the operator sets itself, and the spec field each comes from; a spec's spark.conf may not set them.
MANAGED_SPARK_CONF: dict[str, str] = {
    "spark.master": "spark.mode and spark.master",
    "spark.app.name": _OPERATOR,
    "spark.jars": _OPERATOR,
    "spark.submit.deployMode": _OPERATOR,
    "spark.sql.session.timeZone": _OPERATOR,
    "spark.sql.streaming.checkpointLocation": "checkpoints",
    "spark.driver.memory": "spark.driver",
    "spark.driver.cores": "spark.driver",
    "spark.driver.host": _OPERATOR,
    "spark.driver.port": _OPERATOR,
    "spark.driver.bindAddress": _OPERATOR,
    "spark.driver.blockManager.port": _OPERATOR,
    "spark.executor.memory": _EXECUTOR,
    "spark.executor.cores": _EXECUTOR,
    "spark.executor.instances": _EXECUTOR,
    "spark.executor.memoryOverhead": _EXECUTOR,
    "spark.cores.max": _EXECUTOR,
    "spark.kubernetes.executor.request.cores": _EXECUTOR,
    "spark.dynamicAllocation.enabled": "spark.executor.dynamicAllocation",
    "spark.dynamicAllocation.minExecutors": "spark.executor.dynamicAllocation",
    "spark.dynamicAllocation.maxExecutors": "spark.executor.dynamicAllocation",
    "spark.dynamicAllocation.initialExecutors": _EXECUTOR,
    "spark.dynamicAllocation.shuffleTracking.enabled": "spark.executor.dynamicAllocation",
    "spark.kubernetes.namespace": _OPERATOR,
    "spark.kubernetes.driver.pod.name": _OPERATOR,
    "spark.kubernetes.container.image": "spark.image",
    "spark.kubernetes.container.image.pullPolicy": "spark.imagePullPolicy",
    "spark.kubernetes.executor.podTemplateFile": _OPERATOR,
    "spark.kubernetes.executor.podTemplateContainerName": _OPERATOR,
    "spark.kubernetes.executor.podNamePrefix": _OPERATOR,
    "spark.kubernetes.executor.disableConfigMap": _OPERATOR,
    "spark.kubernetes.driver.ownPersistentVolumeClaim": _OPERATOR,
    "spark.kubernetes.driver.reusePersistentVolumeClaim": _OPERATOR,
}
#: The modes whose executors run outside the driver's pod, on a volume they share with it.
CLUSTER_MODES = ("standalone", "kubernetes")


#: Kubernetes names a Service with at most 63 characters (a DNS label).
_SERVICE_NAME_MAX = 63


def semantic_problems(spec: PipelineSpec, *, name: str | None = None) -> list[str]:
    """What is wrong with a spec that the schema accepted; empty when it can run. Each entry names the field.
    ``name``, the pipeline's, is checked against what the spec makes of it (the names of its drivers' Services)."""
    problems = []
    drivers = [c.name for c in components.enabled(spec) if c.spark]
    if name is not None and spec.spark.mode == "kubernetes" and drivers:
        longest = max(drivers, key=len)
        limit = _SERVICE_NAME_MAX - len(f"-{longest}-driver")
        if len(name) > limit:
            problems.append(
                f"metadata.name: in kubernetes mode each job's driver has a Service <name>-<job>-driver, at most "
                f"{_SERVICE_NAME_MAX} characters, so the pipeline's name may have at most {limit} (it has "
                f"{len(name)}); rename the pipeline, or use spark.mode local or standalone"
            )
    if spec.spark.mode in CLUSTER_MODES and not spec.checkpoints.existing_claim:
        where = "the Spark workers mount" if spec.spark.mode == "standalone" else "the executor pods mount"
        problems.append(
            f"spec.checkpoints.existingClaim: {spec.spark.mode} mode needs a shared (ReadWriteMany) volume {where} "
            "(their executors write the state stores); set it, or use spark.mode: local"
        )
    foreign = sorted(k for k in spec.spark.conf if not k.startswith("spark."))
    if foreign:
        problems.append(
            f"spec.spark.conf: {', '.join(foreign)} are not Spark settings; every key starts with spark. "
            "(the jobs refuse others)"
        )
    managed = sorted(set(spec.spark.conf) & set(MANAGED_SPARK_CONF))
    if managed:
        sources = "; ".join(f"{key} from {MANAGED_SPARK_CONF[key]}" for key in managed)
        problems.append(
            f"spec.spark.conf: {', '.join(managed)} are set by the operator ({sources}); remove them from "
            "spark.conf"
        )
    if not components.enabled(spec):
        problems.append("spec: the generator and every job are disabled; enable at least one component")
    return problems
