"""One streaming query per job: the source is read and parsed once, and each micro-batch is handed to
:class:`MicroBatches`, which produces every output of the job from it.

A job describes itself as a :class:`JobPlan`: its windowed aggregations (:class:`~spark_jobs.windows.WindowSpec`),
its watermark delay, its Kafka :class:`Output` s (each a pure transform of the window values), and optionally the
event files and console-only views. Per micro-batch, in this order:

1. the window state the batch starts from is read (:class:`~spark_jobs.window_state.WindowStore`);
2. (basic) the valid events are appended to the event files, exactly once;
3. one pass over the batch's rows (:func:`~spark_jobs.windows.digest`) gives the windows' partials, the late
   contributions and the dead letters;
4. the partials are merged into the open windows; with the watermark after this batch, the windows it closes
   (append mode) or the windows it changed (update mode) become output rows;
5. the outputs and the dead letters go to Kafka in one write; the console shows them when it is on (the
   source is screened, :func:`~spark_jobs.events.screen_events`: only the invalid records, carried through as
   dead letters, are parsed again for their reasons, :func:`~spark_jobs.events.explain_invalid`);
6. the open windows and the new watermark are saved as this batch's snapshot.

Spark commits the batch after the handler returns. A crash before that runs the batch again with the same offsets:
its Kafka records are written again under the same keys (at-least-once, as documented), the files are not
(Spark's file sink skips a committed batch), and the window state is recomputed from the same snapshot.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.events import (
    CHECKED_AT,
    SOURCE_COLUMNS,
    InputLimits,
    dead_letter_columns,
    explain_invalid,
    screen_events,
)
from spark_jobs.options import CommonOptions, Duration
from spark_jobs.progress import (
    GroupCommitter,
    JobMetrics,
    ProgressReporter,
    attach,
    default_group,
    source_offsets,
)
from spark_jobs.records import record_columns
from spark_jobs.sinks import EventFiles, print_rows, write_to_kafka
from spark_jobs.sources import earliest_offsets, read_kafka
from spark_jobs.window_state import (
    Snapshot,
    StateError,
    WindowStore,
    checkpoint_entries,
    committed_offsets,
    last_commit,
)
from spark_jobs.windows import PASSTHROUGH, Windows, WindowSpec, closed

#: Where a job keeps its window snapshots, inside its checkpoint directory.
WINDOWS_DIR = "windows"
#: The latest micro-batches' reports a handler keeps (for the progress reports and tests; a pod runs for months).
REPORTS_KEPT = 1000


@dataclass(frozen=True)
class Output:
    """A Kafka output of a job: ``rows`` turns the window values the batch emits (:func:`window_values` of every
    spec) into this output's rows, written as JSON records keyed by the ``key`` columns to ``topic``."""

    name: str
    topic: str
    key: tuple[str, ...]
    rows: Callable[[DataFrame], DataFrame]


@dataclass(frozen=True)
class ConsoleView:
    """Console-only rows: ``rows`` of every window value of the job's state (open or not), each micro-batch."""

    name: str
    rows: Callable[[DataFrame], DataFrame]
    order_by: tuple[str, ...]


@dataclass(frozen=True)
class EventFileOutput:
    """The valid events as files under ``path``, partitioned by UTC date (``event_date``)."""

    path: str
    file_format: str


@dataclass(frozen=True)
class JobPlan:
    """Everything a job produces from its micro-batches."""

    job: str
    specs: tuple[WindowSpec, ...]
    watermark: Duration
    outputs: tuple[Output, ...]
    event_files: EventFileOutput | None = None
    console_views: tuple[ConsoleView, ...] = ()


@dataclass
class BatchReport:
    """What one micro-batch did (kept for the run's summary and for tests)."""

    batch_id: int
    watermark_ms: int = 0  # in force for the batch
    watermark_after_ms: int | None = None  # after it: every window ending at or before it is written (append)
    dead_letters: int = 0
    state_windows: int | None = None  # windows open after the batch
    state_bytes: int | None = None  # bytes of their snapshot
    late: dict[str, int] = field(default_factory=dict)
    #: Seconds of each step of the micro-batch (snapshot, files, digest, late, write, console, save).
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.monotonic() - started


#: What a micro-batch keeps of an invalid record: enough to explain it (:func:`explain_invalid`) and dead-letter it.
_DEAD_LETTER_COLUMNS = (CHECKED_AT, *SOURCE_COLUMNS)


class MicroBatches:
    """The ``foreachBatch`` handler of a job (see the module docstring).

    The column expressions of every step are built once, here: each costs the Python driver round trips to the
    JVM, and a micro-batch only applies them.
    """

    def __init__(
        self,
        spark: SparkSession,
        plan: JobPlan,
        opts: CommonOptions,
        *,
        write: Callable[[DataFrame, CommonOptions], None] = write_to_kafka,
    ) -> None:
        self.plan = plan
        self.opts = opts
        self._spark = spark
        self._write = write
        self.store = WindowStore(
            spark, f"{opts.checkpoint(plan.job)}/{WINDOWS_DIR}", plan.specs, plan.watermark
        )
        self.files = (
            EventFiles(
                spark,
                path=plan.event_files.path,
                file_format=plan.event_files.file_format,
                partition_by="event_date",
            )
            if plan.event_files
            else None
        )
        self.reports: deque[BatchReport] = deque(maxlen=REPORTS_KEPT)
        # The progress reports read them from Spark's listener thread while the next batch runs.
        self._reports_lock = threading.Lock()
        self.windows = Windows(plan.specs)
        self._digester = self.windows.digester(
            is_event=F.col("event_time").isNotNull(),
            passthrough_key=F.concat_ws(":", "source_topic", "source_partition", "source_offset"),
            passthrough=F.struct(*_DEAD_LETTER_COLUMNS),
        )
        self._kept = ["event_time", "device_id", "value", "status", *_DEAD_LETTER_COLUMNS]
        self._valid_files = [
            "event_time", "device_id", "value", "status", F.to_date("event_time").alias("event_date")
        ]  # fmt: skip
        self._is_event = F.col("event_time").isNotNull()
        self._is_passthrough = F.col("aggregation") == PASSTHROUGH
        self._summary = [
            F.max(F.unix_millis("max_event_time")).alias("max_event_ms"),
            F.count_if(self._is_passthrough).alias("dead_letters"),
        ]
        self._letters = [*[F.col(f"{PASSTHROUGH}.{c}").alias(c) for c in _DEAD_LETTER_COLUMNS]]
        self._limits = input_limits(opts)
        self._letter_columns = dead_letter_columns(plan.job, max_bytes=opts.dead_letter_max_bytes)
        self._record_columns: dict[str, list] = {}  # per output, built from its first micro-batch's columns
        self._topic_columns = {
            topic: [
                F.lit(topic).alias("topic"),
                F.col("key").cast("binary").alias("key"),
                F.col("value").cast("binary").alias("value"),
            ]
            for topic in {out.topic for out in plan.outputs} | {opts.dead_letter_topic}
        }
        self._no_headers = F.lit(None).cast("array<struct<key:string,value:binary>>").alias("headers")

    def facts(self, batch_id: int) -> dict | None:
        """What the handler knows of batch ``batch_id`` for its progress report (:mod:`spark_jobs.progress`)."""
        with self._reports_lock:
            kept = list(self.reports)
        report = next((r for r in reversed(kept) if r.batch_id == batch_id), None)
        if report is None:
            return None
        return {
            "watermark_ms": report.watermark_after_ms,
            "dead_letters": report.dead_letters,
            "state_windows": report.state_windows,
            "state_bytes": report.state_bytes,
        }

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        report = BatchReport(batch_id)
        with report.timed("total"):
            self._handle(batch, batch_id, report)
        with self._reports_lock:
            self.reports.append(report)

    def _handle(self, batch: DataFrame, batch_id: int, report: BatchReport) -> None:
        with report.timed("snapshot"):
            before = self.store.before(batch_id)
        report.watermark_ms = before.watermark_ms
        if before.batch_id < 0 and self.files is not None:
            self._check_files_are_ours(batch_id)
        cached: list[DataFrame] = []
        try:
            self._process(batch, batch_id, before, cached, report)
        finally:
            with report.timed("unpersist"):
                for frame in cached:
                    frame.unpersist()

    def _check_files_are_ours(self, batch_id: int) -> None:
        """A fresh checkpoint counts batches from 0: Spark's file sink would skip every batch its log already
        holds, written by another checkpoint, and lose those events from the files."""
        latest = self.files.latest_batch(self._spark)
        if latest is not None and latest > batch_id:
            raise StateError(
                f"{self.files.path} holds event files of batches up to {latest}, written with another checkpoint; "
                f"this job's checkpoint starts at batch {batch_id}, and the file sink would skip batches up to "
                f"{latest}. Use a new --output-dir, or the checkpoint root that wrote it."
            )

    def digest(self, rows: DataFrame) -> DataFrame:
        """Step 3: the partials of every window of the job's specs that ``rows`` (the screened source, as the
        query hands it over) fall in, and a pass-through row per invalid record. This is the stage every record
        runs through."""
        return self._digester.digest(rows)

    def _records(self, out: Output, rows: DataFrame) -> DataFrame:
        if out.name not in self._record_columns:
            self._record_columns[out.name] = record_columns(rows, key=list(out.key))
        return rows.select(*self._record_columns[out.name])

    def _for_kafka(self, records: DataFrame, topic: str, *, headers: bool = False) -> DataFrame:
        columns = self._topic_columns[topic]
        return records.select(*columns, F.col("headers") if headers else self._no_headers)

    def _process(
        self, batch: DataFrame, batch_id: int, before: Snapshot, cached: list, report: BatchReport
    ) -> None:
        plan, opts = self.plan, self.opts
        rows = batch
        if self.files is not None:
            # Two passes read the batch (the files, the digest): keep it rather than read Kafka twice.
            rows = batch.select(*self._kept).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(rows)
            with report.timed("files"):
                self.files.write(batch_id, rows.where(self._is_event).select(*self._valid_files))
        parts = self.digest(rows).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(parts)
        late = closed(before.watermark_ms)
        late_counts = [  # per spec, its contributions to windows the watermark in force had closed
            F.sum(F.when(late & (F.col("aggregation") == spec.name), F.col("n"))).alias(f"late_{i}")
            for i, spec in enumerate(plan.specs)
        ]
        with report.timed("digest"):
            summary = parts.select(*self._summary, *late_counts).first()
        report.dead_letters = summary.dead_letters
        report.late = {
            spec.name: summary[f"late_{i}"] for i, spec in enumerate(plan.specs) if summary[f"late_{i}"]
        }
        windows = parts.where(~self._is_passthrough)
        merged = self.windows.merge(self.store.open_windows(before), windows.where(~late))
        merged = merged.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(merged)
        after = before.after(batch_id, summary.max_event_ms)
        done = closed(after.watermark_ms)
        emitted = merged.where(done) if opts.output_mode == "append" else merged.where(F.col("updated"))
        values = self.windows.values(emitted).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(values)

        outputs = [(out, out.rows(values)) for out in plan.outputs]
        records = [self._for_kafka(self._records(out, rows_), out.topic) for out, rows_ in outputs]
        if summary.dead_letters:
            invalid = parts.where(self._is_passthrough).select(*self._letters)
            letters = explain_invalid(invalid, self._limits).select(*self._letter_columns)
            records.append(self._for_kafka(letters, opts.dead_letter_topic, headers=True))
        union = records[0]
        for more in records[1:]:
            union = union.unionByName(more)
        with report.timed("write"):
            self._write(union, opts)
        if opts.console:
            with report.timed("console"):
                for out, rows_ in outputs:
                    title = f"{plan.job} / {out.name} -> {out.topic}: batch {batch_id}"
                    print_rows(title, rows_, order_by=list(out.key), limit=opts.console_rows)
                everything = self.windows.values(merged)
                for view in plan.console_views:
                    title = f"{plan.job} / {view.name}: batch {batch_id}"
                    print_rows(
                        title, view.rows(everything), order_by=list(view.order_by), limit=opts.console_rows
                    )
        report.watermark_after_ms = after.watermark_ms
        with report.timed("save"):
            report.state_windows, report.state_bytes = self.store.save(after, merged.where(~done))


def input_limits(opts: CommonOptions) -> InputLimits:
    """What a valid event must respect besides its form, from the job's flags."""
    return InputLimits(
        max_ahead_ms=None if opts.max_event_ahead is None else opts.max_event_ahead.millis,
        max_behind_ms=None if opts.max_event_behind is None else opts.max_event_behind.millis,
        max_record_bytes=opts.max_record_bytes,
        max_field_length=opts.max_field_length,
    )


def starting_offsets(spark: SparkSession, opts: CommonOptions, job: str) -> str:
    """Where the job's query starts when its checkpoint is new: where ``--previous-checkpoint-root``'s query had got
    to (partitions it did not know start at their earliest offset), else ``--starting-offsets``. Spark uses this
    only for a checkpoint without offsets; a query resuming its own checkpoint goes on from there."""
    previous = opts.previous_checkpoint_root
    if previous is None or "offsets" in checkpoint_entries(spark, opts.checkpoint(job)):
        return opts.starting_offsets
    where = f"{previous.rstrip('/')}/{job}"
    offsets = committed_offsets(spark, where)
    if not offsets or set(offsets) != {opts.source_topic}:
        print(
            f"{job}: {where} holds no committed position in {opts.source_topic}; "
            f"starting at {opts.starting_offsets}",
            flush=True,
        )
        return opts.starting_offsets
    partitions = {str(p): -2 for p in earliest_offsets(opts.bootstrap_servers, opts.source_topic)}
    resumed = {opts.source_topic: {**partitions, **offsets[opts.source_topic]}}
    print(f"{job}: a fresh checkpoint, starting where {where} had got to: {json.dumps(resumed)}", flush=True)
    return json.dumps(resumed)


#: A query checkpoint of each output under ``<root>/<job>/``: the layout before one query per job (Sluice 0.1).
_OLD_LAYOUT_MARKER = "dead_letters"


def start(
    spark: SparkSession,
    plan: JobPlan,
    opts: CommonOptions,
    *,
    source: DataFrame | None = None,
    write: Callable[[DataFrame, CommonOptions], None] = write_to_kafka,
) -> StreamingQuery:
    """Start the job's one streaming query: the source (``opts.source_topic``, or a stream of records shaped like
    Kafka's), parsed once, handed batch by batch to :class:`MicroBatches`, whose records go to ``write``."""
    if _OLD_LAYOUT_MARKER in checkpoint_entries(spark, opts.checkpoint(plan.job)):
        raise StateError(
            f"{opts.checkpoint(plan.job)} holds checkpoints of the earlier layout (one query per output, "
            "Sluice 0.1), which this job cannot resume from. Start it on a new --checkpoint-root; the earlier "
            "one can be deleted once nothing needs it."
        )
    handler = MicroBatches(spark, plan, opts, write=write)
    kafka_source = source is None
    metrics = JobMetrics(plan.job)
    metrics.serve(opts.metrics_port)
    committer = (  # a stream shaped like Kafka's (tests) has no group to report to
        GroupCommitter(
            opts.bootstrap_servers, opts.consumer_group or default_group(plan.job), opts.source_topic
        )
        if kafka_source
        else None
    )
    name = f"{opts.query_prefix}{plan.job}"
    reporter = ProgressReporter(
        name, topic=opts.source_topic, committer=committer, metrics=metrics, batch_facts=handler.facts
    )
    resumed = last_commit(spark, opts.checkpoint(plan.job))
    if resumed is not None:  # before the query can commit a later batch
        offsets = source_offsets(json.dumps(resumed.offsets), opts.source_topic)
        reporter.resume(resumed.batch_id, offsets, resumed.committed_ms)
    if source is None:
        source = read_kafka(spark, opts, starting_offsets=starting_offsets(spark, opts, plan.job))
    query = (
        screen_events(source, input_limits(opts))
        .writeStream.queryName(name)
        .option("checkpointLocation", opts.checkpoint(plan.job))
        .trigger(**opts.trigger.spark_kwargs())
        .foreachBatch(handler)
        .start()
    )
    query.handler = handler  # type: ignore[attr-defined]  # its reports, for the runner's summary and tests
    attach(spark, query.id, reporter)
    query.reporter = reporter  # type: ignore[attr-defined]  # its metrics, for tests
    return query
