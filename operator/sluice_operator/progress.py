"""Whether a job keeps up, from what Kafka holds (pure): how far the job trails its source topic, how fast the topic
and the job move, when the job last committed a micro-batch, and how far its outputs trail the present.

After each micro-batch Spark has committed, a job commits the offsets it has processed to a consumer group of its
own (a reporting copy: Spark's checkpoint stays the source of truth), with metadata (:data:`METADATA_VERSION`): the
batch, the time it committed it and its watermark. Each pass, the operator reads the source topic's offsets and the
group's with its own Kafka clients, so it needs no network path to the pods; this module turns two
successive :class:`Reading` s into a job's :class:`Progress`, and a job's progress and its pod into the verdict of
:func:`judge` against the pipeline's SLO.

* **lag**: the records of the source topic the job has not processed: per partition, the end offset minus the
  committed one (a partition the group has no offset for counts from the earliest offset the topic holds);
* **rates**: records per second written to the source topic and processed by the job, between two readings;
* **last progress**: the time of the job's latest commit (from its metadata), so it survives an operator restart;
* **freshness**: how far the job's watermark trails the present. In append mode every window ending at or before
  the watermark has been written, so this is how old the newest complete output is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


def consumer_group(*, namespace: str, pipeline: str, job: str) -> str:
    """The consumer group a job of a pipeline commits its processed offsets to: ``sluice.<namespace>.<pipeline>.<job>``.
    One per job of each pipeline: a namespace (a DNS label) and a job name hold no dot, so whatever lies between them
    is the pipeline's name, even one with dots."""
    return f"sluice.{namespace}.{pipeline}.{job}"


#: The version of the commit metadata the operator reads: ``{"v": 1, "batch": <id>, "at": <epoch ms>, "watermark":
#: <epoch ms or null>}``, as the jobs write it (``spark_jobs.progress``; a unit test holds the two together).
METADATA_VERSION = 1


@dataclass(frozen=True)
class Commit:
    """What a job's latest commit says of itself."""

    batch_id: int
    at: datetime
    watermark: datetime | None


def read_metadata(text: str | None) -> Commit | None:
    """The :class:`Commit` of a committed offset's metadata; None for metadata of another writer or version (a
    group a user committed to by hand still has a lag, only no commit time or watermark)."""
    try:
        data = json.loads(text or "")
        if not isinstance(data, dict) or data.get("v") != METADATA_VERSION:
            return None
        watermark = data.get("watermark")
        return Commit(
            batch_id=int(data["batch"]),
            at=_from_ms(int(data["at"])),
            watermark=None if watermark is None else _from_ms(int(watermark)),
        )
    except (ValueError, TypeError, KeyError, OverflowError):
        return None


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Reading:
    """One pass's view of a job's position: the source topic's offsets and the job group's, per partition."""

    at: datetime
    #: The source topic's next offset to be written, per partition.
    end: Mapping[int, int]
    #: The earliest offset the source topic still holds, per partition.
    start: Mapping[int, int]
    #: The job group's committed offsets (the next offset it will read), per partition; missing: none yet.
    committed: Mapping[int, int]
    #: The latest commit's metadata, if the job wrote it.
    commit: Commit | None = None

    @property
    def lag(self) -> int:
        return sum(max(0, end - self._position(p)) for p, end in self.end.items())

    def _position(self, partition: int) -> int:
        # An offset committed below the earliest one held (records gone since) is read from the earliest.
        start = self.start.get(partition, 0)
        return max(self.committed.get(partition, start), start)

    @property
    def written(self) -> int:
        return sum(self.end.values())

    @property
    def processed(self) -> int:
        return sum(self.committed.values())


@dataclass(frozen=True)
class Progress:
    """``status.components.<job>.progress``."""

    lag_records: int
    input_rate: float | None = None
    processed_rate: float | None = None
    last_progress: datetime | None = None
    freshness_seconds: float | None = None
    #: Since when records have been waiting without a break, as far as the passes saw (None: nothing waits). Kept
    #: by the operator between passes, not written: a job idle for an hour is not stalled the moment input comes.
    waiting_since: datetime | None = None

    def to_status(self) -> dict:
        return {
            "lagRecords": self.lag_records,
            "inputRate": _rounded(self.input_rate),
            "processedRate": _rounded(self.processed_rate),
            "lastProgressTime": None if self.last_progress is None else self.last_progress.isoformat(),
            "freshnessSeconds": _rounded(self.freshness_seconds),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rate(now: int, before: int, seconds: float) -> float | None:
    # Offsets that went back (the topic or the group made anew) give no rate for this interval.
    return (now - before) / seconds if now >= before else None


#: The shortest interval a rate is measured over: passes can follow each other within milliseconds (a change and the
#: timer), and a rate over so short a time says little.
RATE_INTERVAL_SECONDS = 5.0


def rate_base(before: Reading | None, now: Reading) -> Reading:
    """The reading the next pass measures rates from: ``before`` until it is :data:`RATE_INTERVAL_SECONDS` old, then
    ``now``."""
    if before is not None and 0 <= (now.at - before.at).total_seconds() < RATE_INTERVAL_SECONDS:
        return before
    return now


def progress(now: Reading, before: Reading | None = None, earlier: Progress | None = None) -> Progress:
    """The job's progress at ``now``; the rates need an earlier reading ``before``, at least
    :data:`RATE_INTERVAL_SECONDS` older (:func:`rate_base`); ``earlier`` is the previous pass's progress, whose
    ``waiting_since`` goes on while records wait (a pass that finds nothing waiting ends it)."""
    seconds = None if before is None else (now.at - before.at).total_seconds()
    timed = before is not None and seconds is not None and seconds >= RATE_INTERVAL_SECONDS
    commit = now.commit
    waiting = now.lag > 0
    if not waiting:
        since = None
    elif earlier is not None and earlier.lag_records > 0 and earlier.waiting_since is not None:
        since = earlier.waiting_since
    else:
        since = now.at
    return Progress(
        waiting_since=since,
        lag_records=now.lag,
        input_rate=_rate(now.written, before.written, seconds) if timed else None,
        processed_rate=_rate(now.processed, before.processed, seconds) if timed else None,
        last_progress=None if commit is None else commit.at,
        freshness_seconds=(
            None
            if commit is None or commit.watermark is None
            else max(0.0, (now.at - commit.watermark).total_seconds())
        ),
    )


@dataclass(frozen=True)
class Slo:
    """What the pipeline promises (``spec.slo``): None leaves a bound out."""

    stall_seconds: int
    max_lag_records: int | None = None
    max_freshness_seconds: int | None = None


@dataclass(frozen=True)
class Verdict:
    """One job's standing: ``progressing`` (nothing waits, or it commits within ``stallSeconds``), ``stalled`` (its
    pod runs, input waits, and it has committed nothing for ``stallSeconds``: restart it), ``lagging`` (beyond the
    SLO's bounds); ``why`` says how it progresses and ``over`` which bounds it is beyond."""

    progressing: bool
    stalled: bool
    lagging: bool
    why: str
    over: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        return "; ".join([self.why, *self.over])


def judge(progress_: Progress, *, slo: Slo, running_since: datetime | None, now: datetime) -> Verdict:
    """``running_since``: when the job's pod started running (None: it is not running). The stall clock starts at
    the latest of the job's last commit, its pod's start and the moment records began to wait: a job is given
    ``stallSeconds`` from each."""
    waiting = progress_.lag_records > 0
    moved = [t for t in (progress_.last_progress, running_since, progress_.waiting_since) if t is not None]
    idle = (now - max(moved)).total_seconds() if moved else None
    stalled = waiting and running_since is not None and idle is not None and idle >= slo.stall_seconds
    if not waiting:
        progressing, why = True, "caught up"
    elif running_since is None:
        progressing, why = False, f"{progress_.lag_records} records waiting and the job is not running"
    elif stalled:
        progressing, why = (
            False,
            (
                f"{progress_.lag_records} records waiting and no micro-batch committed in the last {idle:.0f} s "
                f"(stallSeconds: {slo.stall_seconds})"
            ),
        )
    else:
        progressing, why = True, f"{progress_.lag_records} records behind"
    over = []
    if slo.max_lag_records is not None and progress_.lag_records > slo.max_lag_records:
        over.append(f"more than maxLagRecords ({slo.max_lag_records})")
    fresh = progress_.freshness_seconds
    if slo.max_freshness_seconds is not None and fresh is not None and fresh > slo.max_freshness_seconds:
        over.append(f"outputs {fresh:.0f} s old, more than maxFreshnessSeconds ({slo.max_freshness_seconds})")
    return Verdict(progressing=progressing, stalled=stalled, lagging=bool(over), why=why, over=tuple(over))
