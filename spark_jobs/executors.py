"""Whether a job on a cluster (standalone or kubernetes mode) has an executor to run on.

A driver whose executors never come (a standalone cluster whose cores other jobs hold, executor pods no node can
take) starts its queries and waits, Running, saying nothing. :class:`ExecutorWatch` keeps a file while the session
has no executor; the operator gives the job's pod a readiness probe that fails while the file is there, so such a
job is Running but not Ready, and the pipeline says ``ExecutorsUnavailable``.

The file marks the missing executors rather than the present ones because the pod must be Ready before its
SparkContext exists: in kubernetes mode Spark waits for the driver's pod to be Ready before it asks for executors
(``spark.kubernetes.allocation.driver.readinessTimeout``, 1 s), and logs an ERROR with a stack trace when it is
not, which a probe that waited for executors made happen at every start.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from pyspark.sql import SparkSession

#: How often the executors are counted.
INTERVAL_SECONDS = 2.0


def executor_count(spark: SparkSession) -> int:
    """Executors registered with the session's driver now (the driver's own entry is not one)."""
    infos = spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()  # not in PySpark's API
    return max(0, len(infos) - 1)


class ExecutorWatch:
    """Keeps ``path`` while ``count()`` is 0, checked every ``interval`` seconds in a daemon thread."""

    def __init__(self, count: Callable[[], int], path: str, *, interval: float = INTERVAL_SECONDS) -> None:
        self.count = count
        self.path = path
        self.interval = interval
        self.executors: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="executor-watch", daemon=True)

    def check(self) -> int:
        """Count the executors once and keep or remove the file accordingly; the count."""
        self.executors = self.count()
        if self.executors == 0:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as out:
                out.write("no executor\n")
        else:
            self._remove()
        return self.executors

    def start(self) -> ExecutorWatch:
        self._remove()  # a file left by an earlier run of the container says nothing about this one
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 5)
        self._remove()

    def _run(self) -> None:
        while not self._stop.is_set():
            # The session is stopping, or the JVM did not answer: the next round counts again.
            with contextlib.suppress(Exception):
                self.check()
            self._stop.wait(self.interval)

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
