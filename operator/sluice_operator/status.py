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
from sluice_operator.progress import Progress, Verdict

TOPICS_READY = "TopicsReady"
CHECKPOINTS_READY = "CheckpointsReady"
JOBS_RUNNING = "JobsRunning"
EXECUTORS_UNAVAILABLE = "ExecutorsUnavailable"
PROGRESSING = "Progressing"
STALLED = "Stalled"
LAGGING = "Lagging"
READY = "Ready"
INVALID = "Invalid"
#: The conditions' order in the status, and the order Ready looks for the first that is not as it should be.
ORDER = (
    TOPICS_READY,
    CHECKPOINTS_READY,
    JOBS_RUNNING,
    EXECUTORS_UNAVAILABLE,
    PROGRESSING,
    STALLED,
    LAGGING,
    READY,
    INVALID,
)
#: The conditions that are good when True (the others of Ready's are good when not True).
_WANTED_TRUE = (TOPICS_READY, CHECKPOINTS_READY, JOBS_RUNNING)
_WANTED_NOT_TRUE = (EXECUTORS_UNAVAILABLE, STALLED, LAGGING)


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
    return sorted(merged.values(), key=lambda c: ORDER.index(c["type"]) if c["type"] in ORDER else len(ORDER))


def jobs_ready(phases: dict[str, str], enabled: list[str]) -> str:
    """``running/enabled``, e.g. ``3/4``."""
    return f"{sum(1 for c in enabled if phases.get(c) == 'Running')}/{len(enabled)}"


def pipeline_phase(*, suspended: bool, phases: dict[str, str], enabled: list[str]) -> str:
    """Suspended, Running (every enabled component running), Failed (every one given up or failed for good),
    Degraded (some failed, backing off, restarting or given up) or Pending (some starting, or being replaced for a
    spec change: phase Updating)."""
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
    #: One word for why the component is in its phase: the lifecycle's (Created, BackOff, Stalled...) or what
    #: stops its pod (ImagePullBackOff, Unschedulable, OOMKilled...).
    reason: str | None = None
    message: str | None = None
    last_start: datetime | None = None
    checkpoint_path: str | None = None
    #: A job's progress as this pass read it from Kafka (None: not read, or not a job).
    progress: Progress | None = None
    #: What that progress means against the SLO (not written: it makes the conditions).
    verdict: Verdict | None = None
    #: Executor pods of a kubernetes-mode job that are running (None: not in kubernetes mode, or no pod).
    executors: int | None = None
    #: Why a job in a cluster mode has had no executor for longer than spark.executorWaitSeconds (None: it has
    #: one, or has not waited that long).
    no_executors: str | None = None

    def to_status(self) -> dict:
        """The entry as written; every key is present, and ``None`` (null in the merge patch) removes the old value."""
        r = self.record
        return {
            "progress": None if self.progress is None else self.progress.to_status(),
            "executors": self.executors,
            "restarts": r.restarts,
            "nextRestart": _timestamp(r.next_restart),
            "gaveUp": r.gave_up,
            "checkpointGeneration": r.generation,
            "stateFingerprint": r.fingerprint,
            "configHash": r.config_hash,
            "pod": self.pod,
            "phase": self.phase,
            "reason": self.reason,
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
            reason=data.get("reason"),
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
    """The pipeline as a whole: its phase, ``jobsReady``, the total lag, and the JobsRunning, ExecutorsUnavailable,
    Progressing, Stalled, Lagging and Ready conditions."""

    phase: str
    jobs_ready: str
    conditions: tuple[dict, ...]
    lag_records: int | None = None


def summarize(
    *,
    suspended: bool,
    components: Mapping[str, ComponentStatus],
    enabled: Sequence[str],
    jobs: Sequence[str] = (),
    conditions: Sequence[dict],
    generation: int,
    progress_unknown: str | None = None,
    executors_elsewhere: bool = False,
) -> Summary:
    """Sum up a pass: ``components`` as decided, ``enabled`` the components to run and ``jobs`` those of them that
    report progress, ``conditions`` the pass's TopicsReady and CheckpointsReady; ``progress_unknown`` says why the
    jobs' progress could not be read this pass; ``executors_elsewhere``: the jobs' executors run outside their
    drivers' pods (standalone and kubernetes modes; only then is there an ExecutorsUnavailable condition).

    JobsRunning says Suspended, SourceDataLost or RestartLimitReached (with the messages of the components stopped
    for good), Running or Starting; ExecutorsUnavailable names the jobs that have waited too long for an executor;
    Progressing, Stalled and Lagging come from the jobs' verdicts (:func:`progress_conditions`). Ready is true when
    TopicsReady, CheckpointsReady and JobsRunning are and none of ExecutorsUnavailable, Stalled and Lagging is; when
    it is not, its reason and message are the first condition's that stands in the way."""
    phases = {c: s.phase for c, s in components.items() if s.phase}
    running = jobs_ready(phases, list(enabled))
    # Components stopped for good, the most telling reason first: (reason, the components in that phase).
    stopped = [
        (reason, [c for c in enabled if phases.get(c) == phase])
        for reason, phase in (("SourceDataLost", "DataLost"), ("RestartLimitReached", "GaveUp"))
    ]
    stopped = [(reason, names) for reason, names in stopped if names]
    if suspended:
        jobs_running = condition(
            JOBS_RUNNING, False, "Suspended", "the pipeline is suspended", generation=generation
        )
    elif stopped:
        reason, names = stopped[0]
        message = "; ".join(components[c].message or "" for c in names)
        jobs_running = condition(JOBS_RUNNING, False, reason, message, generation=generation)
    else:
        all_running = all(phases.get(c) == "Running" for c in enabled)
        jobs_running = condition(
            JOBS_RUNNING,
            all_running,
            "Running" if all_running else "Starting",
            f"{running} components running",
            generation=generation,
        )
    starved = [c for c in enabled if c in components and components[c].no_executors]
    executors: tuple[dict, ...] = ()
    if executors_elsewhere:
        executors = (
            condition(
                EXECUTORS_UNAVAILABLE,
                True,
                "NoExecutors",
                "; ".join(f"{c}: {components[c].no_executors}" for c in starved),
                generation=generation,
            )
            if starved and not suspended
            else condition(
                EXECUTORS_UNAVAILABLE,
                False,
                "Available",
                "no job is waiting for an executor",
                generation=generation,
            ),
        )
    followed = [j for j in jobs if j in enabled]
    judged = progress_conditions(
        {j: components[j].verdict for j in followed if j in components},
        jobs=followed,
        suspended=suspended,
        unknown=progress_unknown,
        generation=generation,
    )
    lags = [p.lag_records for j in followed if (p := components[j].progress if j in components else None)]
    return Summary(
        phase=pipeline_phase(suspended=suspended, phases=phases, enabled=list(enabled)),
        jobs_ready=running,
        conditions=(
            jobs_running,
            *executors,
            *judged,
            ready(*conditions, jobs_running, *executors, *judged, generation=generation),
        ),
        lag_records=sum(lags) if lags else None,
    )


def ready(*conditions: dict, generation: int) -> dict:
    """The Ready condition over the pass's others: true when TopicsReady, CheckpointsReady and JobsRunning are true
    and ExecutorsUnavailable, Stalled and Lagging are not; otherwise the reason and message of the first that
    stands in the way."""
    by_type = {c["type"]: c for c in conditions}
    against = [
        by_type[t]
        for t in ORDER
        if t in by_type
        and (
            (t in _WANTED_TRUE and by_type[t]["status"] != "True")
            or (t in _WANTED_NOT_TRUE and by_type[t]["status"] == "True")
        )
    ]
    if not against:
        return condition(READY, True, "Ready", "the pipeline is running and keeps up", generation=generation)
    first = against[0]
    return condition(
        READY, False, first["reason"], f"{first['type']}: {first['message']}", generation=generation
    )


def progress_conditions(
    verdicts: Mapping[str, Verdict | None],
    *,
    jobs: Sequence[str],
    suspended: bool,
    unknown: str | None,
    generation: int,
) -> tuple[dict, ...]:
    """Progressing, Stalled and Lagging from each job's verdict (a job without one: its progress is unknown).

    Progressing is true when every job is caught up or commits micro-batches, Stalled when one has records
    waiting and has committed nothing for ``stallSeconds``, Lagging when one is beyond ``maxLagRecords`` or
    ``maxFreshnessSeconds``; each message names the jobs it is about."""

    def make(kind: str, ok: bool | None, reason: str, message: str) -> dict:
        return condition(kind, ok, reason, message, generation=generation)

    if suspended:
        return (
            make(PROGRESSING, False, "Suspended", "the pipeline is suspended"),
            make(STALLED, False, "Suspended", "the pipeline is suspended"),
            make(LAGGING, None, "Suspended", "the pipeline is suspended"),
        )
    if not jobs:
        return (
            make(PROGRESSING, True, "NoJobs", "no job is enabled"),
            make(STALLED, False, "NoJobs", "no job is enabled"),
            make(LAGGING, False, "NoJobs", "no job is enabled"),
        )
    missing = [j for j in jobs if verdicts.get(j) is None]
    if missing:
        why = unknown or "not read yet"
        message = f"the progress of {', '.join(missing)} is unknown: {why}"
        return (
            make(PROGRESSING, None, "ProgressUnknown", message),
            make(STALLED, None, "ProgressUnknown", message),
            make(LAGGING, None, "ProgressUnknown", message),
        )
    known = {j: v for j in jobs if (v := verdicts[j]) is not None}

    def about(names: list[str]) -> str:
        return "; ".join(f"{j}: {known[j].message}" for j in names)

    everyone = about(list(known))
    stuck = [j for j, v in known.items() if not v.progressing]
    stalled = [j for j, v in known.items() if v.stalled]
    lagging = [j for j, v in known.items() if v.lagging]
    return (
        make(PROGRESSING, True, "Progressing", everyone)
        if not stuck
        else make(PROGRESSING, False, "Stalled" if stalled else "NotRunning", about(stuck)),
        make(STALLED, True, "Stalled", about(stalled))
        if stalled
        else make(STALLED, False, "NotStalled", "no job is stalled"),
        make(LAGGING, True, "Lagging", about(lagging))
        if lagging
        else make(LAGGING, False, "WithinSlo", "every job is within spec.slo"),
    )
