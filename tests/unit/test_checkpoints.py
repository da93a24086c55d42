"""Reading Spark checkpoints to tell whether every query has committed every record (used by the demo's drain)."""

from __future__ import annotations

import json

import pytest

from sluice_local.checkpoints import committed_offsets, queries_behind

pytestmark = pytest.mark.unit


def write_batch(query_dir, batch: int, offsets: dict, *, committed: bool) -> None:
    (query_dir / "offsets").mkdir(parents=True, exist_ok=True)
    (query_dir / "commits").mkdir(parents=True, exist_ok=True)
    # The layout Spark writes: a version line, a metadata line, then one JSON line per source.
    (query_dir / "offsets" / str(batch)).write_text(
        'v1\n{"batchWatermarkMs":0,"batchTimestampMs":1}\n' + json.dumps(offsets) + "\n"
    )
    if committed:
        (query_dir / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}\n')


def test_only_committed_batches_count(tmp_path):
    q = tmp_path / "basic"
    write_batch(q, 0, {"src": {"0": 10, "1": 4}}, committed=True)
    write_batch(q, 1, {"src": {"0": 25, "1": 9}}, committed=False)  # planned, not yet written
    assert committed_offsets(q) == {"src": {0: 10, 1: 4}}
    assert committed_offsets(tmp_path / "nothing") == {}


def test_queries_behind_until_all_have_committed_the_end(tmp_path):
    ends = {0: 25, 1: 9, 2: 0}  # partition 2 is empty: nothing to wait for
    a, b = tmp_path / "basic", tmp_path / "windowed"
    write_batch(a, 0, {"src": {"0": 25, "1": 9}}, committed=True)
    assert queries_behind([a, b], "src", ends) == ["1 of 2 queries have not run a batch yet"]
    write_batch(b, 0, {"src": {"0": 25, "1": 3}}, committed=True)
    assert queries_behind([a, b], "src", ends) == ["windowed"]
    write_batch(b, 1, {"src": {"0": 25, "1": 9}}, committed=True)
    assert queries_behind([a, b], "src", ends) == []
