"""Reading a streaming query's checkpoint: which source offsets its last committed micro-batch covered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def _batch_ids(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def committed_offsets(checkpoint: Path) -> dict[str, dict[int, int]]:
    """``{topic: {partition: next offset}}`` of the last committed batch of the query at ``checkpoint``
    (empty if none has committed).

    Spark writes ``offsets/<batch>`` (a version line, a metadata line, then one JSON line per source) before a
    batch runs and ``commits/<batch>`` after its output is written; only committed batches count here.
    """
    committed = _batch_ids(checkpoint / "commits")
    if not committed:
        return {}
    lines = (checkpoint / "offsets" / str(committed[-1])).read_text().splitlines()
    result: dict[str, dict[int, int]] = {}
    for line in lines[2:]:
        if not line.strip().startswith("{"):
            continue
        for topic, partitions in json.loads(line).items():
            result.setdefault(topic, {}).update({int(p): int(o) for p, o in partitions.items()})
    return result


def queries_behind(checkpoints: Sequence[Path], topic: str, end_offsets: dict[int, int]) -> list[str]:
    """What still keeps the queries whose checkpoints are ``checkpoints`` from having committed every record of
    ``topic`` up to ``end_offsets``: the queries that lag (by directory name, the job's), or a note that some have
    not run a batch yet. An empty list means every query has caught up."""
    started = [c for c in checkpoints if (c / "offsets").is_dir()]
    behind = []
    if len(started) < len(checkpoints):
        behind.append(
            f"{len(checkpoints) - len(started)} of {len(checkpoints)} queries have not run a batch yet"
        )
    for checkpoint in started:
        done = committed_offsets(checkpoint).get(topic, {})
        if any(done.get(p, 0) < end for p, end in end_offsets.items() if end > 0):
            behind.append(checkpoint.name)
    return behind
