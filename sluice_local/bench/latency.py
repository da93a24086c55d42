"""The latency scenario: the three jobs running as they run in a pod (``python -m spark_jobs.<job>``, default
triggers and watermarks, console off) while the generator sends a fixed rate of events stamped with the current
time; the measured time is cut into consecutive segments, each one of the figure's repeats (one disturbed
minute shifts one repeat, not the figure); then, from what is in Kafka:

* a window's latency runs from the moment it could close (when the event that moved the watermark past its end
  was produced: the first event, in produce order, with an event time at or after the end plus the watermark delay)
  to the record's arrival at the broker;
* an alert's latency runs from the produce time of the newest event of its window and device.

Produce times are the source records' timestamps (set by the generator's client); arrivals are the output records'
timestamps, their topics created with ``message.timestamp.type=LogAppendTime`` (set by the broker on append).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sluice_operator import components
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.checkpoints import queries_behind
from sluice_local.job_process import job_environment, local_command
from sluice_local.processes import kill_group
from sluice_local.topics import end_offsets, read_all

#: The jobs' defaults (spark_jobs.*Options and the operator's spec): trigger, and per output the window length and
#: the watermark delay, in seconds.
TRIGGER_S = 5.0
OUTPUTS = {
    "basic/device_windows": (10.0, 10.0),
    "windowed/tumbling": (10.0, 10.0),
    "windowed/sliding": (30.0, 10.0),
    "anomaly/alerts": (30.0, 30.0),
}
_STARTUP_TIMEOUT_S = 240


@dataclass(frozen=True)
class SourceEvent:
    event_ms: int
    produced_ms: int
    device: str


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def source_events(messages) -> list[SourceEvent]:
    events = []
    for m in messages:
        try:
            body = json.loads(m.value())
            events.append(SourceEvent(_ms(body["timestamp"]), m.timestamp()[1], body["device_id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return events


class CloseMoments:
    """When each window could close: the first produce time of an event at or after ``end + delay``."""

    def __init__(self, events: Sequence[SourceEvent]) -> None:
        ordered = sorted(events, key=lambda e: e.event_ms)
        self._times = [e.event_ms for e in ordered]
        self._earliest_from = [0] * len(ordered)
        earliest = math.inf
        for i in range(len(ordered) - 1, -1, -1):  # the earliest produce time among events from i on
            earliest = min(earliest, ordered[i].produced_ms)
            self._earliest_from[i] = earliest

    def of(self, end_ms: int, delay_ms: int) -> int | None:
        i = bisect.bisect_left(self._times, end_ms + delay_ms)
        return None if i == len(self._times) else self._earliest_from[i]


def percentiles(values: Sequence[float]) -> dict:
    """p50 / p95 / p99 / max (nearest rank) and the count, in seconds."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {"count": len(ordered), "p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def window_latencies(
    records,
    events: Sequence[SourceEvent],
    *,
    delay_s: float,
    aggregation: str | None,
    from_ms: int,
    until_ms: int | None = None,
) -> list:
    """The latency of every window record whose window could close at or after ``from_ms`` (and before
    ``until_ms``)."""
    closes = CloseMoments(events)
    latencies = []
    for record in records:
        body = json.loads(record.value())
        if aggregation is not None and body.get("aggregation") != aggregation:
            continue
        closed = closes.of(_ms(body["window_end"]), round(delay_s * 1000))
        if closed is not None and closed >= from_ms and (until_ms is None or closed < until_ms):
            latencies.append((record.timestamp()[1] - closed) / 1000)
    return latencies


def alert_latencies(
    records, events: Sequence[SourceEvent], *, from_ms: int, until_ms: int | None = None
) -> list:
    """The latency of every alert whose window's newest event was produced at or after ``from_ms`` (and before
    ``until_ms``)."""
    by_device: dict[str, list[SourceEvent]] = {}
    for e in events:
        by_device.setdefault(e.device, []).append(e)
    latencies = []
    for record in records:
        body = json.loads(record.value())
        start, end = _ms(body["window_start"]), _ms(body["window_end"])
        inside = [e.produced_ms for e in by_device.get(body["device_id"], []) if start <= e.event_ms < end]
        if inside and max(inside) >= from_ms and (until_ms is None or max(inside) < until_ms):
            latencies.append((record.timestamp()[1] - max(inside)) / 1000)
    return latencies


#: How long the jobs may take to catch up with the generator's last event before the run fails.
CATCH_UP_TIMEOUT_S = 600.0


def _await_caught_up(
    root: Path, jobs: list[str], bootstrap: str, source: str, children: list[subprocess.Popen], *, log
) -> None:
    """Wait until each job's query has committed every event of ``source`` (a job that exits fails the run)."""
    ends = end_offsets(bootstrap, source)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    started = time.monotonic()
    while behind := queries_behind([root / job for job in jobs], source, ends):
        if any(child.poll() is not None for child in children):
            raise RuntimeError(f"latency: a job exited while catching up ({', '.join(behind)} behind)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"latency: still behind after {CATCH_UP_TIMEOUT_S:g} s: {', '.join(behind)}")
        time.sleep(1)
    if time.monotonic() - started > 2:
        log(
            f"latency: the jobs caught up with the generator {time.monotonic() - started:.0f} s after its end"
        )


def run(
    *,
    bootstrap: str,
    work: Path,
    seconds: float,
    warmup: float,
    rate: float,
    log,
    segments: int = 1,
    job_args: Sequence[str] = (),
) -> dict:
    """Run the scenario: ``warmup`` seconds at ``rate`` events/s (the jobs' JVMs compile their code; not measured),
    then ``segments`` times ``seconds`` measured; the latencies by output and segment, with their bounds."""
    suffix = str(int(time.time()))
    source = f"bench-latency-src-{suffix}"
    outputs = {job.name: f"bench-latency-{job.name}-{suffix}" for job in components.JOBS}
    append_time = {"message.timestamp.type": "LogAppendTime"}
    ensure_topics(
        bootstrap,
        [DesiredTopic(source, partitions=3)]
        + [DesiredTopic(t, config=append_time) for t in outputs.values()]
        + [DesiredTopic(f"bench-latency-dlq-{suffix}")],
        timeout=30,
    )
    children = []
    try:
        for job, topic in outputs.items():
            component = components.get(job)
            (output,) = component.outputs
            args = [
                "--master", "local[2]",
                "--bootstrap-servers", bootstrap, "--source-topic", source, output.flag, topic,
                "--dead-letter-topic", f"bench-latency-dlq-{suffix}",
                "--checkpoint-root", str(work / "checkpoints"),
            ]  # fmt: skip
            if component.writes_files:
                args += ["--output-dir", str(work / "output")]
            args += list(job_args)
            logfile = (work / f"{job}.log").open("w")
            children.append(
                subprocess.Popen(
                    local_command(component, args),
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    env=job_environment(),
                    cwd=work,
                    start_new_session=True,
                )
            )
        _await_started(work, list(outputs), children)
        log(
            f"latency: the jobs are up; {warmup:g} s of warm-up, then {segments} x {seconds:g} s measured, "
            f"at {rate:g} events/s"
        )
        measured = segments * seconds
        command = [sys.executable, "-m", "spark_jobs.generator", "--bootstrap-servers", bootstrap]
        command += [
            "--topic",
            source,
            "--rate",
            str(rate),
            "--duration",
            str(warmup + measured),
            "--seed",
            "5",
        ]
        generator = subprocess.run(
            command, capture_output=True, text=True, timeout=warmup + measured + 120, check=True
        )
        summary = json.loads(generator.stdout.strip().splitlines()[-1])
        # On a busy machine the jobs can be far behind the generator: let each commit every event first, or the
        # windows the measured events close are never written.
        _await_caught_up(work / "checkpoints", list(outputs), bootstrap, source, children, log=log)
        # The last windows close one trigger (plus a micro-batch) after the last event that closes them.
        time.sleep(2 * TRIGGER_S + 5)
    finally:
        # As the kubelet does: SIGTERM to the program (the driver stops its query between micro-batches), then
        # nothing of its process group outlives it.
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(90)
            kill_group(child)
            child.wait()
    events = source_events(read_all(bootstrap, source, timeout=120))
    first_ms = min(e.produced_ms for e in events) + round(warmup * 1000)
    # Segment i runs from cuts[i] to cuts[i + 1]; the last one to the end of the run.
    cuts: list[int | None] = [first_ms + round(i * seconds * 1000) for i in range(segments)]
    cuts.append(None)
    results: dict = {
        "rate": rate,
        "seconds": seconds,
        "segments": segments,
        "warmup_seconds": warmup,
        "produced": summary["produced"],
    }
    results["outputs"] = {}
    for name, (window_s, delay_s) in OUTPUTS.items():
        job, aggregation = name.split("/")
        records = read_all(bootstrap, outputs[job], timeout=60)
        bound = None if job == "anomaly" else window_s + delay_s + 2 * TRIGGER_S
        parts = []
        for from_ms, until_ms in itertools.pairwise(cuts):
            if job == "anomaly":
                values = alert_latencies(records, events, from_ms=from_ms, until_ms=until_ms)
            else:
                values = window_latencies(
                    records,
                    events,
                    delay_s=delay_s,
                    aggregation=aggregation if job == "windowed" else None,
                    from_ms=from_ms,
                    until_ms=until_ms,
                )
            parts.append(percentiles(values))
        results["outputs"][name] = {"segments": parts, "bound_seconds": bound}
    return results


def _await_started(work: Path, jobs: list[str], children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while True:
        for job, child in zip(jobs, children, strict=True):
            if child.poll() is not None:
                raise RuntimeError(f"latency: job {job} exited with {child.returncode}: see {work / job}.log")
        logs = [(work / f"{job}.log").read_text(errors="replace") for job in jobs]
        if all(": started " in text for text in logs):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"latency: the jobs did not start within {_STARTUP_TIMEOUT_S} s; logs in {work}"
            )
        time.sleep(1)
