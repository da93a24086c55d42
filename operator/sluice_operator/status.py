"""The pipeline's reported state (pure): each component's entry, conditions with transition times, the phase and
``jobsReady``.

:class:`ComponentStatus` is ``status.components.<name>``, read and written by one pair of methods;
:func:`summarize` turns the components and the pass's other conditions into the phase, ``jobsReady`` and the
JobsRunning and Ready conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sluice_operator.lifecycle import ComponentRecord

TOPICS_READY = "TopicsReady"
CHECKPOINTS_READY = "CheckpointsReady"
JOBS_RUNNING = "JobsRunning"
READY = "Ready"
INVALID = "Invalid"


def condition(kind: str, ok: bool | None, reason: str, message: str, *, generation: int) -> dict:
    """A condition as stored (without its transition time, which :func:`merge_conditions` sets)."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(previous: list[dict] | None, new: list[dict], *, now: datetime) -> list[dict]:
    """The conditions to store: ``new`` ones replace those of the same type; ``lastTransitionTime`` moves only
    when a condition's status changes. Types not in ``new`` are kept as they were."""
    old = {c["type"]: c for c in previous or []}
    stamp = now.isoformat().replace("+00:00", "Z")
    merged = dict(old)
    for c in new:
        before = old.get(c["type"])
        changed = before is None or before.get("status") != c["status"]
        merged[c["type"]] = {
            **c,
            "lastTransitionTime": stamp if changed else before.get("lastTransitionTime", stamp),
        }
    order = [TOPICS_READY, CHECKPOINTS_READY, JOBS_RUNNING, READY, INVALID]
    return sorted(merged.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))


def jobs_ready(phases: dict[str, str], enabled: list[str]) -> str:
    """``running/enabled``, e.g. ``3/4``."""
    return f"{sum(1 for c in enabled if phases.get(c) == 'Running')}/{len(enabled)}"


def pipeline_phase(*, suspended: bool, phases: dict[str, str], enabled: list[str]) -> str:
    """Suspended, Running (every enabled component running), Failed (every one given up or failed for good),
    Degraded (some failed, backing off or given up) or Pending."""
    if suspended:
        return "Suspended"
    states = [phases.get(c, "Pending") for c in enabled]
    if states and all(s == "Running" for s in states):
        return "Running"
    if states and all(s in {"GaveUp", "Failed", "DataLost"} for s in states):
        return "Failed"
    if any(s in {"GaveUp", "Failed", "DataLost", "BackOff", "Restarting"} for s in states):
        return "Degraded"
    return "Pending"


@dataclass(frozen=True)
class ComponentStatus:
    """``status.components.<name>``: the component's record, carried from one pass to the next, and what the
    pass reports about its pod."""

    record: ComponentRecord = field(default_factory=ComponentRecord)
    pod: str | None = None
    phase: str | None = None
    message: str | None = None
    last_start: datetime | None = None
    checkpoint_path: str | None = None

    def to_status(self) -> dict:
        """The entry as written; every key is present, and ``None`` (null in the merge patch) removes the old value."""
        r = self.record
        return {
            "restarts": r.restarts,
            "nextRestart": _timestamp(r.next_restart),
            "gaveUp": r.gave_up,
            "checkpointGeneration": r.generation,
            "stateFingerprint": r.fingerprint,
            "configHash": r.config_hash,
            "pod": self.pod,
            "phase": self.phase,
            "message": self.message,
            "lastStart": _timestamp(self.last_start),
            "checkpointPath": self.checkpoint_path,
        }

    @classmethod
    def from_status(cls, data: Mapping | None) -> ComponentStatus:
        """Read the entry as stored (missing fields take their defaults)."""
        data = data or {}
        record = ComponentRecord(
            restarts=int(data.get("restarts", 0)),
            next_restart=parse_timestamp(data.get("nextRestart")),
            gave_up=bool(data.get("gaveUp", False)),
            generation=int(data.get("checkpointGeneration", 0)),
            fingerprint=data.get("stateFingerprint"),
            config_hash=data.get("configHash"),
        )
        return cls(
            record=record,
            pod=data.get("pod"),
            phase=data.get("phase"),
            message=data.get("message"),
            last_start=parse_timestamp(data.get("lastStart")),
            checkpoint_path=data.get("checkpointPath"),
        )


def _timestamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO-8601 time as the API server or this status writes it (None stays None)."""
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Summary:
    """The pipeline as a whole: its phase, ``jobsReady``, and the JobsRunning and Ready conditions."""

    phase: str
    jobs_ready: str
    conditions: tuple[dict, ...]


def summarize(
    *,
    suspended: bool,
    components: Mapping[str, ComponentStatus],
    enabled: Sequence[str],
    conditions: Sequence[dict],
    generation: int,
) -> Summary:
    """Sum up a pass: ``components`` as decided, ``conditions`` the pass's TopicsReady and CheckpointsReady.

    JobsRunning says Suspended, SourceDataLost or RestartLimitReached (with the messages of the components stopped
    for good), Running or Starting; Ready is true when TopicsReady, CheckpointsReady and JobsRunning all are."""
    phases = {c: s.phase for c, s in components.items() if s.phase}
    running = jobs_ready(phases, list(enabled))
    # Components stopped for good, the most telling reason first: (reason, the components in that phase).
    stopped = [
        (reason, [c for c in enabled if phases.get(c) == phase])
        for reason, phase in (("SourceDataLost", "DataLost"), ("RestartLimitReached", "GaveUp"))
    ]
    stopped = [(reason, names) for reason, names in stopped if names]
    if suspended:
        jobs = condition(JOBS_RUNNING, False, "Suspended", "the pipeline is suspended", generation=generation)
    elif stopped:
        reason, names = stopped[0]
        message = "; ".join(components[c].message or "" for c in names)
        jobs = condition(JOBS_RUNNING, False, reason, message, generation=generation)
    else:
        all_running = all(phases.get(c) == "Running" for c in enabled)
        jobs = condition(
            JOBS_RUNNING,
            all_running,
            "Running" if all_running else "Starting",
            f"{running} components running",
            generation=generation,
        )
    ready = all(
        c["status"] == "True"
        for c in [*conditions, jobs]
        if c["type"] in {TOPICS_READY, CHECKPOINTS_READY, JOBS_RUNNING}
    )
    overall = condition(
        READY,
        ready,
        "Ready" if ready else "NotReady",
        "the pipeline is running" if ready else "see the other conditions",
        generation=generation,
    )
    return Summary(
        phase=pipeline_phase(suspended=suspended, phases=phases, enabled=list(enabled)),
        jobs_ready=running,
        conditions=(jobs, overall),
    )
