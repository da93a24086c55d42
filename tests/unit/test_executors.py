"""A cluster-mode job's file that says it has no executor (its pod's readiness probe fails while it is there)."""

from __future__ import annotations

import subprocess
import time

import pytest

from spark_jobs.executors import ExecutorWatch, executor_count

pytestmark = pytest.mark.unit


def test_the_file_is_kept_while_there_is_no_executor_and_removed_while_there_is_one(tmp_path):
    counts = iter([0, 2, 1, 0])
    path = tmp_path / "sluice" / "executors-missing"
    watch = ExecutorWatch(lambda: next(counts), str(path))
    assert (watch.check(), path.exists()) == (0, True)
    assert (watch.check(), path.exists()) == (2, False)
    assert (watch.check(), path.exists()) == (1, False)
    assert (watch.check(), path.exists()) == (0, True)


def test_the_readiness_probe_passes_before_the_watch_starts_and_fails_only_while_the_file_is_there(tmp_path):
    """The probe the operator gives the pod (``test ! -e FILE``), run as the kubelet runs it."""
    path = tmp_path / "executors-missing"
    probe = ["test", "!", "-e", str(path)]
    assert subprocess.run(probe, check=False).returncode == 0  # a new container, no session yet: Ready
    counts = iter([0, 1])
    watch = ExecutorWatch(lambda: next(counts), str(path))
    watch.check()
    assert subprocess.run(probe, check=False).returncode == 1  # a session with no executor: not Ready
    watch.check()
    assert subprocess.run(probe, check=False).returncode == 0


def test_a_file_left_by_an_earlier_run_goes_at_start_a_failed_count_is_retried_and_stop_removes_the_file(
    tmp_path,
):
    path = tmp_path / "executors-missing"
    path.write_text("no executor\n")  # an earlier container's
    answers: list[int] = []

    def count() -> int:
        answers.append(1)
        if len(answers) == 1:
            raise RuntimeError("the JVM is busy")  # a failed count is tried again, not fatal
        return 0 if len(answers) < 4 else 1

    watch = ExecutorWatch(count, str(path), interval=0.01)
    watch.start()
    watch.stop()  # stopped at once: whatever the thread did, no file is left
    assert not path.exists()
    answers.clear()
    watch = ExecutorWatch(count, str(path), interval=0.01).start()
    deadline = time.monotonic() + 10
    while not (watch.executors == 1 and not path.exists()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watch.executors == 1 and not path.exists()
    watch.stop()
    assert not path.exists()


def test_a_local_session_counts_no_executor_its_driver_is_not_one(spark):
    """Spark lists the driver among a session's executors; in local mode it is the only one. (Executors of a
    cluster: tests/e2e/test_scale_out.py, whose drivers turn Ready only once the count is above 0.)"""
    assert executor_count(spark) == 0
