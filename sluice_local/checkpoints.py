"""Reading a streaming query's checkpoint: which source offsets its last committed micro-batch covered."""

from __future__ import annotations

import json
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


def query_checkpoints(root: Path) -> list[Path]:
    """Every job's query checkpoint under a checkpoint root laid out as ``<root>/<job>``."""
    return sorted(p.parent for p in root.glob("*/offsets") if p.is_dir())


def queries_behind(root: Path, topic: str, end_offsets: dict[int, int], *, expected: int) -> list[str]:
    """What still keeps the ``expected`` queries under ``root`` from having committed every record of ``topic``
    up to ``end_offsets``: the jobs whose query lags, or a note that some have no checkpoint yet.
    An empty list means every query has caught up."""
    checkpoints = query_checkpoints(root)
    behind = []
    if len(checkpoints) < expected:
        behind.append(f"{expected - len(checkpoints)} of {expected} queries have not run a batch yet")
    for checkpoint in checkpoints:
        done = committed_offsets(checkpoint).get(topic, {})
        if any(done.get(p, 0) < end for p, end in end_offsets.items() if end > 0):
            behind.append(checkpoint.name)
    return behind
