"""Where a pipeline keeps its state on its volume, and what a job's state depends on (pure).

Layout on the volume (mounted at :data:`STATE_MOUNT`)::

    [<namespace>/<name>/]checkpoints/<job>/g<generation>/<job>/    the job's query: offsets, commits, windows/
    [<namespace>/<name>/]output/g<generation>/events/              the event files of a job that writes files

(the bracketed prefix on a shared claim, see :func:`state_root`).

A job whose state becomes incompatible with a spec change (its windows or its source: the settings whose spec
field names a ``fingerprint`` key) moves to the next generation; the old directory stays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import Any

from sluice_operator.components import Component
from sluice_operator.spec import PipelineSpec

STATE_MOUNT = "/var/lib/sluice"

#: The jobs' checkpoint layout. 2: one streaming query per job with its window snapshots (Sluice 0.2); the
#: layout before it (one query per output) had no number. Part of every state fingerprint.
CHECKPOINT_LAYOUT = 2


def short_hash(value: object) -> str:
    """12 hex digits of the SHA-256 of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint_settings(settings: Any) -> dict[str, Any]:
    """The settings of a component's spec part that enter its state fingerprint, by fingerprint key."""
    return {
        f.metadata["fingerprint"]: getattr(settings, f.name)
        for f in fields(settings)
        if f.metadata.get("fingerprint")
    }


def state_fingerprint(*, spec: PipelineSpec, component: Component) -> str:
    """``l<layout>-<hash>``: the jobs' checkpoint layout and a short hash of the settings a job's checkpointed state
    depends on, its source topic and its windows.

    When it changes, the state on the volume cannot be reused (the job refuses window state of other windows, or
    would resume offsets of another topic, or cannot read the layout), so the job starts on a fresh checkpoint
    generation. Thresholds, watermarks, triggers, output modes and resources do not enter it: the job resumes
    from its checkpoint.
    """
    shape = {"source": spec.kafka.topics.source.name, **fingerprint_settings(component.settings(spec))}
    return f"l{CHECKPOINT_LAYOUT}-{short_hash(shape)}"


def layout_changed(old_fingerprint: str) -> bool:
    """Whether a job's earlier fingerprint was taken under another checkpoint layout than today's."""
    return not old_fingerprint.startswith(f"l{CHECKPOINT_LAYOUT}-")


def reset_message(*, job: str, earlier_fingerprint: str | None, old_checkpoint: str) -> str:
    """What the operator tells the user when ``job`` moves to a fresh checkpoint generation, and why."""
    why = (
        "Sluice's checkpoint layout changed (one streaming query per job since Sluice 0.2)"
        if earlier_fingerprint and layout_changed(earlier_fingerprint)
        else "its windows or source changed"
    )
    return (
        f"{job}: {why}, so its state cannot be reused; it starts on a fresh checkpoint from the earliest offsets "
        f"(the old one stays at {old_checkpoint})"
    )


def state_root(*, spec: PipelineSpec, namespace: str, pipeline: str) -> str:
    """The pipeline's directory on its volume, inside the pod.

    A volume of its own is the pipeline's whole: the mount point. On a shared claim (standalone mode) the pipeline
    uses ``<namespace>/<name>/`` of it, in the path rather than as a mount sub-path, so that the Spark workers,
    which mount the whole claim at the same mount point, write the executors' state stores to the same files.
    """
    if spec.checkpoints.existing_claim:
        return f"{STATE_MOUNT}/{namespace}/{pipeline}"
    return STATE_MOUNT


def checkpoint_root(*, root: str, job: str, generation: int) -> str:
    """Where a job keeps its checkpoints (``root`` from :func:`state_root`, or a local directory)."""
    return f"{root}/checkpoints/{job}/g{generation}"


def output_dir(*, root: str, generation: int) -> str:
    """Where a job writes its files. Per generation: Spark's file sink log counts batches, and a fresh checkpoint
    counts from 0 again."""
    return f"{root}/output/g{generation}"
