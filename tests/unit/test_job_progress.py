"""What a job reports of its position (pure parts): Spark's offsets as text, and a group commit that failed, tried
again when the query is idle."""

from __future__ import annotations

import pytest

from spark_jobs.progress import JobMetrics, ProgressReporter, source_offsets

pytestmark = pytest.mark.unit


def test_spark_offsets_are_read_per_partition_of_the_topic():
    text = '{"events":{"0":120,"2":7},"other":{"0":5}}'
    assert source_offsets(text, "events") == {0: 120, 2: 7}
    assert source_offsets(text, "missing") == {}


@pytest.mark.parametrize("absent", [None, "", "None", "null", " None "])
def test_an_offset_spark_does_not_have_is_no_offsets(absent):
    # PySpark writes a null JVM offset as str(None): a batch run again from the offset log has no latest offset.
    assert source_offsets(absent, "events") == {}


class FlakyCommitter:
    """A committer whose first ``failures`` commits raise (the broker away), recording what it committed."""

    group = "sluice.test.windowed"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.committed: list[tuple[dict, str]] = []

    def commit(self, offsets, metadata) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("no answer from Kafka within 10 s")
        self.committed.append((dict(offsets), metadata))

    def close(self) -> None:
        pass


def reporter(committer: FlakyCommitter) -> ProgressReporter:
    return ProgressReporter(
        "windowed",
        topic="events",
        committer=committer,
        metrics=JobMetrics("windowed"),
        batch_facts=lambda _: None,
    )


def test_a_position_that_failed_to_commit_is_committed_when_the_query_is_idle():
    committer = FlakyCommitter(failures=1)
    r = reporter(committer)
    r.resume(7, {0: 120, 1: 80}, committed_ms=1_796_644_800_000)  # fails: kept
    assert committer.committed == []
    assert (
        r.metrics.registry.get_sample_value("sluice_job_group_commit_errors_total", {"component": "windowed"})
        == 1
    )
    r.on_idle()
    assert committer.committed == [({0: 120, 1: 80}, '{"v":1,"batch":7,"at":1796644800000,"watermark":null}')]
    r.on_idle()  # nothing left to commit
    assert len(committer.committed) == 1
