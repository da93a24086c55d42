"""Runs a job's streaming queries until they end, fail, or the process is asked to stop (SIGTERM / Ctrl-C)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from spark_jobs.options import CommonOptions
from spark_jobs.session import build_session

_POLL_SECONDS = 0.5
_GRACE_SECONDS = 60.0


def stop_gracefully(queries: list[StreamingQuery], *, grace_seconds: float = _GRACE_SECONDS) -> None:
    """Stop each query between micro-batches: wait (bounded) for the batch in flight to commit, then stop.

    ``StreamingQuery.stop()`` interrupts a running batch; its output may then be written again after a restart.
    Waiting for the trigger to go idle first means a restart from the checkpoint resumes exactly after the last
    batch that was written.
    """
    deadline = time.monotonic() + grace_seconds
    for q in queries:
        while q.isActive and q.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.05)
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
        spark.stop()
    if failure:
        print(f"{app_name}: {failure}", file=sys.stderr, flush=True)
        return 1
    print(f"{app_name}: stopped", flush=True)
    return 0
