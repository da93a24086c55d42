"""Runs a job's streaming queries until they end, fail, or the process is asked to stop (SIGTERM / Ctrl-C)."""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.executors import ExecutorWatch, executor_count
from spark_jobs.options import CommonOptions, parse_options
from spark_jobs.session import build_session
from spark_jobs.sources import earliest_offsets

_POLL_SECONDS = 0.5
_GRACE_SECONDS = 60.0
#: The exit code of a job that stopped because records it had not read are gone from Kafka (``--fail-on-data-loss``).
DATA_LOST_EXIT = 3
#: Where Kubernetes reads a container's termination message (the pod's ``terminationMessagePath``).
TERMINATION_LOG = "/dev/termination-log"
#: Kubernetes keeps at most 4096 bytes of it.
_TERMINATION_MESSAGE_BYTES = 4000


def data_lost(failure: str) -> bool:
    """Whether a query failed because Kafka no longer holds records it had to read (Spark's KAFKA_DATA_LOSS)."""
    return "KAFKA_DATA_LOSS" in failure or "data may have been lost" in failure.lower()


#: The parts of Spark's data-loss errors that say what is gone: partitions and offsets.
_LOSS_DETAILS = (
    re.compile(r"Could not read records in offset \[\d+, \d+\) for topic partition \S+"),
    re.compile(r"Partition \S+'s offset was changed from \d+ to \d+"),
    re.compile(r"Cannot fetch offset \d+ \(GroupId: [^)]*, TopicPartition: [^)]*\)"),
)


def data_loss_message(failure: str, earliest: dict[int, int] | None = None) -> str:
    """``SourceDataLost:`` what Spark's error says is gone (partitions, offsets) and, when known, the offsets Kafka
    holds records from now (``earliest``: partition -> offset)."""
    found = [m.group(0).strip() for pattern in _LOSS_DETAILS for m in pattern.finditer(failure)]
    details = list(dict.fromkeys(found)) or [failure.strip().splitlines()[0]]
    message = "SourceDataLost: " + "; ".join(details)
    if earliest:
        now = ", ".join(f"partition {p} from offset {o}" for p, o in sorted(earliest.items()))
        message += f"; Kafka now holds {now}"
    return message[:_TERMINATION_MESSAGE_BYTES]


def write_termination_message(message: str, path: str = TERMINATION_LOG) -> None:
    """Leave ``message`` where Kubernetes shows it as the container's termination message (outside a pod, where
    the file cannot be written, nothing happens)."""
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(message)
    except OSError:
        pass


def _last_batch_id(q: StreamingQuery) -> int:
    progress = q.lastProgress
    return int(progress["batchId"]) if progress else -1


def stop_gracefully(queries: list[StreamingQuery], *, grace_seconds: float = _GRACE_SECONDS) -> None:
    """Stop each query at a micro-batch boundary: as soon as it is idle, or the moment the batch in flight has
    committed (a new progress report appears), whichever comes first; after ``grace_seconds``, regardless.

    ``StreamingQuery.stop()`` interrupts a running batch, whose Kafka output may then be written again after a
    restart. Stopping between batches, or right after one committed (the next has then barely started and
    written nothing), means a restart resumes exactly after the last batch written. Under a constant backlog the
    query is never idle, hence the second condition.
    """
    deadline = time.monotonic() + grace_seconds
    for q in queries:
        started_with = _last_batch_id(q)
        while (
            q.isActive
            and q.status.get("isTriggerActive")
            and _last_batch_id(q) == started_with
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        q.stop()


def await_queries(
    queries: list[StreamingQuery], *, should_stop: Callable[[], bool] = lambda: False
) -> str | None:
    """Wait until every query has ended; return the first failure's message, or None.

    A failed query stops its siblings: a job runs whole or not at all, so a supervisor can restart it.
    """
    while True:
        for q in queries:
            if not q.isActive and q.exception() is not None:
                for other in queries:
                    other.stop()
                return f"query {q.name} failed: {q.exception()}"
        if should_stop():
            stop_gracefully(queries)
            return None
        if not any(q.isActive for q in queries):
            return None
        time.sleep(_POLL_SECONDS)


def run(app_name: str, opts: CommonOptions, start: Callable[[SparkSession], list[StreamingQuery]]) -> int:
    """Build the session, start the job's queries and supervise them; the process exit code."""
    stopping: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        stopping.append(signum)

    spark = build_session(app_name, opts)
    watch = (
        ExecutorWatch(lambda: executor_count(spark), opts.executors_missing_file).start()
        if opts.executors_missing_file
        else None
    )
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        queries = start(spark)
        print(
            f"{app_name}: started {len(queries)} queries ({', '.join(q.name for q in queries)}), "
            f"trigger {opts.trigger}, reading {opts.source_topic} at {opts.bootstrap_servers}",
            flush=True,
        )
        failure = await_queries(queries, should_stop=lambda: bool(stopping))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if watch is not None:
            watch.stop()
        spark.stop()
    if failure:
        print(f"{app_name}: {failure}", file=sys.stderr, flush=True)
        if data_lost(failure):
            message = data_loss_message(failure, earliest_offsets(opts.bootstrap_servers, opts.source_topic))
            print(f"{app_name}: {message}", file=sys.stderr, flush=True)
            write_termination_message(message)
            return DATA_LOST_EXIT
        return 1
    print(f"{app_name}: stopped", flush=True)
    return 0


def run_job(job: str, options: type, start: Callable, argv: list[str] | None) -> int:
    """A job's ``main``: parse ``argv`` into its ``options`` class (bad flags exit 2), then :func:`run` its query.

    The parser is generated from the class (:func:`spark_jobs.options.build_parser`): ``spark_jobs.<job> --help``
    opens with the first paragraph of the job module's docstring and lists the job's flags under "<job> job".
    """
    summary = (sys.modules[options.__module__].__doc__ or "").split("\n\n")[0]
    opts = parse_options(options, argv, prog=f"spark_jobs.{job}", description=summary, group=f"{job} job")
    return run(f"sluice-{job}", opts.common, lambda spark: [start(spark, opts)])
