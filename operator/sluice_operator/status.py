"""The pipeline's reported state: conditions with transition times, the phase, and ``jobsReady`` (pure)."""

from __future__ import annotations

from datetime import datetime

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
    if states and all(s in {"GaveUp", "Failed"} for s in states):
        return "Failed"
    if any(s in {"GaveUp", "Failed", "BackOff", "Restarting"} for s in states):
        return "Degraded"
    return "Pending"
