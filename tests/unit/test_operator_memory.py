"""The operator's per-pipeline memory lives in kopf's per-object memo and is made once, whoever asks first."""

from __future__ import annotations

import threading

import kopf
import pytest
from sluice_operator.handlers import PipelineMemory, pipeline_memory

pytestmark = pytest.mark.unit


def test_handlers_of_one_pipeline_share_one_memory_even_when_they_start_together():
    memo = kopf.Memo()
    start = threading.Barrier(16)
    found: list[PipelineMemory] = []

    def handler() -> None:
        start.wait()
        found.append(pipeline_memory(memo))

    threads = [threading.Thread(target=handler) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 16 and all(m is found[0] for m in found)
    assert (found[0].reported, dict(found[0].components)) == (frozenset(), {})
    assert (
        pipeline_memory(kopf.Memo()) is not found[0]
    )  # another pipeline (or the same name recreated): a new memo
