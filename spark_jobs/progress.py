"""What a running job reports of itself, after each micro-batch Spark has committed (:class:`ProgressReporter`,
handed each batch's progress by the session's one :class:`~pyspark.sql.streaming.StreamingQueryListener`):

* the offsets it has processed, committed to the job's consumer group (``--consumer-group``), so that Kafka's own
  lag tools (``kafka-consumer-groups.sh --describe``, Burrow, kminion) and the operator see how far it trails its
  source topic. A reporting copy: Spark's checkpoint stays the source of truth, and a commit that fails is logged
  and made good by the next batch's. Each partition's commit carries :func:`commit_metadata` (the batch, the time
  it was committed and the job's watermark), which the operator reads for the job's last progress and freshness;
* Prometheus metrics (``--metrics-port``), :class:`JobMetrics`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pyspark.sql.streaming import StreamingQueryListener

#: The version of :func:`commit_metadata`'s format (the operator's ``sluice_operator.progress`` reads it).
METADATA_VERSION = 1


def commit_metadata(*, batch_id: int, committed_at_ms: int, watermark_ms: int | None) -> str:
    """``{"v":1,"batch":…,"at":…,"watermark":…}``: times in milliseconds since the epoch, UTC."""
    return json.dumps(
        {"v": METADATA_VERSION, "batch": batch_id, "at": committed_at_ms, "watermark": watermark_ms},
        separators=(",", ":"),
    )


def default_group(job: str) -> str:
    """The consumer group of a job run without ``--consumer-group`` (the operator names one per pipeline)."""
    return f"sluice.{job}"


def source_offsets(offsets_json: str | None, topic: str) -> dict[int, int]:
    """A Kafka source's offsets as Spark reports them (``{"topic": {"0": 120}}``), per partition of ``topic``;
    empty when Spark has none: PySpark writes the JVM's null as the text ``None`` (a micro-batch run again from the
    offset log after a restart has no latest offset, the first one no start offset)."""
    if not offsets_json or offsets_json.strip() in {"None", "null"}:
        return {}
    parsed = json.loads(offsets_json)
    per_partition = parsed.get(topic) if isinstance(parsed, dict) else None
    return {int(p): int(o) for p, o in (per_partition or {}).items()}


class GroupCommitter:
    """Commits offsets to a consumer group the job never joins, with a Kafka consumer that never subscribes (its
    commits go to the group's coordinator as a member's would): each commit waits at most ``timeout`` seconds, also
    while the broker is away.

    Not the AdminClient's ``alter_consumer_group_offsets``: librdkafka's requests to a group coordinator through the
    admin API abort the whole process when the broker drops the connection mid-request
    (confluentinc/librdkafka#4605, #3663; the broker-restart chaos test caught a job dying so)."""

    def __init__(self, bootstrap_servers: str, group: str, topic: str, *, timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer

        self.group, self.topic = group, topic
        self._timeout = timeout
        self._issued = self._done = 0
        self._outcome: tuple[object, list] = (None, [])
        self._lock = threading.Lock()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "on_commit": self._committed,
            }
        )

    def _committed(self, error, partitions) -> None:
        # Served by poll(), in the order the commits were made.
        self._done += 1
        self._outcome = (error, partitions)

    def commit(self, offsets: Mapping[int, int], metadata: str) -> None:
        """Commit ``offsets`` (partition -> next offset to read) with ``metadata``; raises when Kafka refuses or does
        not answer within the timeout (an answer that comes later is not taken for a later commit's)."""
        from confluent_kafka import KafkaException, TopicPartition

        if not offsets:
            return
        partitions = [TopicPartition(self.topic, p, o, metadata) for p, o in sorted(offsets.items())]
        with self._lock:  # close() may come from another thread
            self._commit(partitions)
        error, answered = self._outcome
        if error is not None:
            raise KafkaException(error)
        refused = [f"partition {tp.partition}: {tp.error}" for tp in answered if tp.error is not None]
        if refused:
            raise RuntimeError("Kafka refused the commit of " + "; ".join(refused))

    def _commit(self, partitions: list) -> None:
        if self._consumer is None:
            raise RuntimeError("the committer is closed")
        self._consumer.commit(offsets=partitions, asynchronous=True)
        self._issued += 1
        deadline = time.monotonic() + self._timeout
        while self._done < self._issued:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from Kafka within {self._timeout:g} s")
            # It never subscribed: poll() only serves the commit's callback.
            self._consumer.poll(min(left, 0.25))

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


_BATCH_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class JobMetrics:
    """A job's Prometheus metrics, labelled ``component`` (``job`` is Prometheus's own label for the scrape)."""

    def __init__(self, component: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, ["component"]
        self.component = component
        self.batches = Counter("sluice_job_batches", "Micro-batches completed.", labels, registry=r)
        self.input_rows = Counter("sluice_job_input_rows", "Kafka records read.", labels, registry=r)
        self.dead_letters = Counter(
            "sluice_job_dead_letters",
            "Dead letters written (records that are not valid events).",
            labels,
            registry=r,
        )
        self.input_rate = Gauge(
            "sluice_job_input_rows_per_second",
            "Records read per second, last micro-batch.",
            labels,
            registry=r,
        )
        self.processed_rate = Gauge(
            "sluice_job_processed_rows_per_second",
            "Records processed per second of work, last micro-batch.",
            labels,
            registry=r,
        )
        self.batch_duration = Histogram(
            "sluice_job_batch_duration_seconds",
            "Duration of micro-batches.",
            labels,
            buckets=_BATCH_SECONDS,
            registry=r,
        )
        self.last_batch = Gauge(
            "sluice_job_last_batch_timestamp_seconds",
            "When the latest micro-batch completed.",
            labels,
            registry=r,
        )
        self.watermark = Gauge(
            "sluice_job_watermark_timestamp_seconds",
            "The job's watermark: every window ending at or before it has been written (append mode).",
            labels,
            registry=r,
        )
        self.state_windows = Gauge(
            "sluice_job_state_windows", "Open windows kept after the latest micro-batch.", labels, registry=r
        )
        self.state_bytes = Gauge(
            "sluice_job_state_bytes", "Bytes of the open windows' latest snapshot.", labels, registry=r
        )
        partition = ["component", "partition"]
        self.latest_offset = Gauge(
            "sluice_job_source_latest_offset",
            "The source topic's latest offset, per partition, when the micro-batch ended.",
            partition,
            registry=r,
        )
        self.processed_offset = Gauge(
            "sluice_job_source_processed_offset",
            "The next offset the job reads, per partition (what it has processed).",
            partition,
            registry=r,
        )
        self.records_behind = Gauge(
            "sluice_job_records_behind",
            "Records of the source topic not yet processed, when the micro-batch ended.",
            labels,
            registry=r,
        )
        self.commit_errors = Counter(
            "sluice_job_group_commit_errors",
            "Failed commits of offsets to the job's consumer group.",
            labels,
            registry=r,
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (0: not at all)."""
        if port:
            start_http_server(port, registry=self.registry)


class ProgressReporter:
    """After each micro-batch of one query (Spark reports it once the batch has committed): commit its end offsets
    to the job's group and update the metrics. ``batch_facts(batch_id)`` gives what the job's handler knows of the
    batch: ``{"watermark_ms", "dead_letters", "state_windows", "state_bytes"}`` (or None).

    Nothing here may stop the job: a failure is counted and logged, and a commit that failed is tried again with the
    next batch or when the query is idle."""

    def __init__(
        self,
        name: str,
        *,
        topic: str,
        committer: GroupCommitter | None,
        metrics: JobMetrics,
        batch_facts: Callable[[int], Mapping | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.topic = name, topic
        self._committer, self._facts, self._clock = committer, batch_facts, clock
        self.metrics = metrics
        #: The commit that failed last, tried again when the query is idle (no next batch may come for long).
        self._pending: tuple[int, Mapping[int, int], str] | None = None
        self._lock = threading.Lock()

    def resume(self, batch_id: int, offsets: Mapping[int, int], committed_ms: int) -> None:
        """Report where the checkpoint stands before the query's first micro-batch (its last committed ``batch_id``,
        read up to ``offsets``, committed at ``committed_ms``): a job restarted, or given a new group, shows its
        position at once, though no input may come for long."""
        metadata = commit_metadata(batch_id=batch_id, committed_at_ms=committed_ms, watermark_ms=None)
        self._commit(batch_id, offsets, metadata)

    def on_idle(self) -> None:
        """The query found no new data: commit again what failed to commit (the broker was away, say)."""
        pending = self._pending
        if pending is not None:
            self._commit(*pending)

    def on_progress(self, progress) -> None:
        try:
            self.report(progress)
        except Exception as exc:  # a report must never stop the job
            print(
                f"{self.name}: progress report of batch {progress.batchId} failed: {exc}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None

    def report(self, progress) -> None:
        source = progress.sources[0] if progress.sources else None
        processed = source_offsets(source.endOffset if source else None, self.topic)
        latest = source_offsets(source.latestOffset if source else None, self.topic)
        facts = self._facts(progress.batchId) or {}
        now = self._clock()
        self._update_metrics(progress, processed, latest, facts, now)
        if self._committer is not None and processed:
            metadata = commit_metadata(
                batch_id=progress.batchId,
                committed_at_ms=int(now * 1000),
                watermark_ms=facts.get("watermark_ms"),
            )
            self._commit(progress.batchId, processed, metadata)

    def _commit(self, batch_id: int, offsets: Mapping[int, int], metadata: str) -> None:
        """Commit a batch's offsets to the group; a failure is counted, logged and kept to be tried again."""
        committer = self._committer
        if committer is None or not offsets:
            return
        with self._lock:  # the listener's thread and the query's start
            if self._pending is not None and self._pending[0] > batch_id:
                return  # a later batch's offsets wait already
            try:
                committer.commit(offsets, metadata)
            except Exception as exc:
                self._pending = (batch_id, dict(offsets), metadata)
                self.metrics.commit_errors.labels(self.metrics.component).inc()
                print(
                    f"{self.name}: committing batch {batch_id}'s offsets to group {committer.group} failed (tried "
                    f"again with the next batch, or when the query is idle): {exc}",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                self._pending = None

    def _update_metrics(self, progress, processed, latest, facts, now) -> None:
        m = self.metrics
        c = m.component
        m.batches.labels(c).inc()
        m.input_rows.labels(c).inc(progress.numInputRows)
        m.input_rate.labels(c).set(progress.inputRowsPerSecond or 0.0)
        m.processed_rate.labels(c).set(progress.processedRowsPerSecond or 0.0)
        m.batch_duration.labels(c).observe(progress.batchDuration / 1000)
        m.last_batch.labels(c).set(now)
        if facts.get("dead_letters"):
            m.dead_letters.labels(c).inc(facts["dead_letters"])
        if facts.get("watermark_ms") is not None:
            m.watermark.labels(c).set(facts["watermark_ms"] / 1000)
        for name in ("state_windows", "state_bytes"):
            if facts.get(name) is not None:
                getattr(m, name).labels(c).set(facts[name])
        for p, offset in processed.items():
            m.processed_offset.labels(c, str(p)).set(offset)
        for p, offset in latest.items():
            m.latest_offset.labels(c, str(p)).set(offset)
        if latest:
            m.records_behind.labels(c).set(sum(max(0, o - processed.get(p, 0)) for p, o in latest.items()))


class _Dispatcher(StreamingQueryListener):
    """The session's one listener: hands each query's progress to its reporter, and forgets the reporter when the
    query ends (one listener per session, however many queries it runs one after another)."""

    def __init__(self) -> None:
        self.reporters: dict[str, ProgressReporter] = {}

    def onQueryStarted(self, event) -> None:  # noqa: N802  # Spark's names
        pass

    def onQueryProgress(self, event) -> None:  # noqa: N802  # Spark's names
        reporter = self.reporters.get(str(event.progress.id))
        if reporter is not None:
            reporter.on_progress(event.progress)

    def onQueryIdle(self, event) -> None:  # noqa: N802  # Spark's names
        reporter = self.reporters.get(str(event.id))
        if reporter is not None:
            reporter.on_idle()

    def onQueryTerminated(self, event) -> None:  # noqa: N802  # Spark's names
        reporter = self.reporters.pop(str(event.id), None)
        if reporter is not None:
            reporter.close()


def attach(spark, query_id: str, reporter: ProgressReporter) -> None:
    """Report the progress of the query ``query_id`` of ``spark`` with ``reporter`` from its next micro-batch on
    (a batch that completes before this call is not reported; the next one's offsets include it)."""
    dispatcher = getattr(spark, "_sluice_progress", None)
    if dispatcher is None:
        dispatcher = _Dispatcher()
        spark.streams.addListener(dispatcher)
        spark._sluice_progress = dispatcher
    dispatcher.reporters[str(query_id)] = reporter
