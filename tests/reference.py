"""A pure-Python reference for the outputs of the Sluice streaming jobs, written from their specification (shared by
the integration and end-to-end tiers).

Nothing here looks at or imports the Spark code (no pyspark): the integration tests compare what the jobs wrote
to Kafka and to files with what this module computes from the same source records. Times are kept as whole
microseconds since the epoch (UTC), as Spark keeps them.

Event-time rules (the specification, plus what Spark's append mode does with a watermark):

* a window of length W sliding by S covers ``[k*S, k*S + W)`` for every k with ``k*S <= t < k*S + W``; tumbling
  windows are the case S = W;
* the watermark in force during a micro-batch is ``max(event time of every earlier batch) - delay`` (none before
  the first batch with events);
* an event's contribution to one window is dropped as late when that window's end ``<= `` the watermark in force
  during the batch that brings the event. Spark filters the (group, window) rows of a window aggregation by the
  window's end, not by the event's own time: an event older than the watermark still counts in those of its
  sliding windows that are still open (the restart test checks this with a "marginally late" event);
* in append mode a window is emitted once, when the watermark passes it: after the last batch the emitted windows
  are exactly those whose end ``<=`` ``max(event time) - delay``. At equality the window is emitted (the restart
  test pins this boundary).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: The payload fields every event must carry.
FIELDS = ("timestamp", "value", "device_id", "status")

SECOND_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

# ISO-8601 date and time with a 'T', seconds and fraction optional, optional offset (Z, +hh, +hhmm, +hh:mm).
_ISO_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?"
    r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?"
)


@dataclass(frozen=True)
class Event:
    """A valid sensor event: event time in microseconds since the epoch (UTC), device, value, status."""

    time_us: int
    device_id: str
    value: float
    status: str


@dataclass(frozen=True)
class Parsed:
    """The outcome of parsing one record: an event, or the error code that sends it to the dead letters."""

    event: Event | None = None
    error_code: str | None = None


def timestamp_us(text: str) -> int | None:
    """Microseconds since the epoch of an ISO-8601 date-time (UTC when no offset is given); None if invalid."""
    match = _ISO_DATE_TIME.fullmatch(text)
    if match is None:
        return None
    fraction = (match["frac"] or "")[:6].ljust(6, "0")  # below a microsecond is truncated
    try:
        year, month, day = (int(part) for part in match["date"].split("-"))
        moment = datetime(
            year,
            month,
            day,
            int(match["h"]),
            int(match["m"]),
            int(match["s"] or 0),
            int(fraction),
            tzinfo=UTC,
        )
    except ValueError:  # month 13, day 45, hour 25...
        return None
    offset = match["offset"]
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 18 or minutes > 59:
            return None
        sign = 1 if offset[0] == "+" else -1
        moment -= sign * timedelta(hours=hours, minutes=minutes)
    return (moment - _EPOCH) // _ONE_US


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_record(value: bytes | None) -> Parsed:
    """Parse a Kafka record value the way the specification says: an event or an error code."""
    body, error_code = _json_object(value)
    return Parsed(error_code=error_code) if body is None else _event(body)


def _json_object(value: bytes | None) -> tuple[dict | None, str | None]:
    """The JSON object in ``value``, or the error code of why there is none."""
    if not value:
        return None, "EMPTY_MESSAGE"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None, "INVALID_UTF8"
    try:
        body = json.loads(text, parse_constant=_reject_constant)  # NaN / Infinity are not JSON
    except ValueError:
        return None, "INVALID_JSON"
    return (body, None) if isinstance(body, dict) else (None, "NOT_AN_OBJECT")


def _finite(number: int | float) -> float | None:
    try:
        number = float(number)
    except OverflowError:  # an integer too large for a double
        return None
    return number if math.isfinite(number) else None


def _event(body: dict) -> Parsed:
    """The event of a JSON object with the four fields, or why the object is not one."""
    if any(body.get(name) is None for name in FIELDS):
        return Parsed(error_code="MISSING_FIELD")
    moment, number, device, status = (body[name] for name in FIELDS)
    number_ok = isinstance(number, int | float) and not isinstance(number, bool)
    if not (isinstance(moment, str) and number_ok and isinstance(device, str) and isinstance(status, str)):
        return Parsed(error_code="INVALID_TYPE")
    value = _finite(number)
    if value is None or not device or not status:
        return Parsed(error_code="INVALID_VALUE")
    time_us = timestamp_us(moment)
    if time_us is None:
        return Parsed(error_code="INVALID_TIMESTAMP")
    return Parsed(event=Event(time_us, device, value, status))


def format_time(time_us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` in UTC (below a millisecond truncated)."""
    moment = _EPOCH + timedelta(microseconds=time_us)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def seconds(value: float) -> int:
    """A duration in seconds as whole microseconds."""
    return round(value * SECOND_US)


@dataclass(frozen=True)
class Windowing:
    """Window length, slide and watermark delay, in microseconds (slide = length for tumbling windows)."""

    length_us: int
    slide_us: int
    delay_us: int

    def starts(self, time_us: int) -> list[int]:
        """Start of every window that covers ``time_us``: ``k*slide <= t < k*slide + length``."""
        start = time_us // self.slide_us * self.slide_us  # floor, also before the epoch
        found = []
        while start > time_us - self.length_us:
            found.append(start)
            start -= self.slide_us
        return sorted(found)


@dataclass
class WindowResult:
    """What an append-mode window aggregation has emitted after a sequence of micro-batches."""

    #: (group, window start) -> the events counted in it, for every emitted window.
    emitted: dict[tuple[str, int], list[Event]]
    #: The watermark in force during each batch (None before any event was seen).
    batch_watermarks: list[int | None]
    #: The watermark after the last batch.
    final_watermark: int | None
    #: (event, window start) contributions dropped as late.
    dropped: list[tuple[Event, int]] = field(default_factory=list)


def window_aggregate(
    batches: Sequence[Sequence[Event]], *, group: Callable[[Event], str], windowing: Windowing
) -> WindowResult:
    """Run the event-time rules of the module docstring over ``batches`` (each a micro-batch, in order)."""
    state: dict[tuple[str, int], list[Event]] = {}
    dropped: list[tuple[Event, int]] = []
    watermark: int | None = None
    batch_watermarks: list[int | None] = []
    for batch in batches:
        batch_watermarks.append(watermark)
        for event in batch:
            for start in windowing.starts(event.time_us):
                if watermark is not None and start + windowing.length_us <= watermark:
                    dropped.append((event, start))
                else:
                    state.setdefault((group(event), start), []).append(event)
        if batch:
            candidate = max(e.time_us for e in batch) - windowing.delay_us
            watermark = candidate if watermark is None else max(watermark, candidate)
    emitted = {
        key: events
        for key, events in state.items()
        if watermark is not None and key[1] + windowing.length_us <= watermark
    }
    return WindowResult(emitted, batch_watermarks, watermark, dropped)


def _stddev(values: Sequence[float]) -> float | None:
    """Sample standard deviation; None (JSON null) for a single value."""
    return statistics.stdev(values) if len(values) > 1 else None


def _bounds(start: int, windowing: Windowing) -> dict[str, str]:
    return {"window_start": format_time(start), "window_end": format_time(start + windowing.length_us)}


def basic_records(batches: Sequence[Sequence[Event]], windowing: Windowing) -> dict[str, dict]:
    """The basic job's processed-topic records, by key ``device_id|window_start``."""
    result = window_aggregate(batches, group=lambda e: e.device_id, windowing=windowing)
    records = {}
    for (device, start), events in result.emitted.items():
        values = [e.value for e in events]
        records[f"{device}|{format_time(start)}"] = {
            **_bounds(start, windowing),
            "device_id": device,
            "avg_value": statistics.fmean(values),
            "record_count": len(values),
        }
    return records


def tumbling_records(batches: Sequence[Sequence[Event]], windowing: Windowing) -> dict[str, dict]:
    """The windowed job's ``tumbling`` records, by key ``tumbling|device_id|window_start``."""
    assert windowing.slide_us == windowing.length_us, "tumbling windows slide by their length"
    result = window_aggregate(batches, group=lambda e: e.device_id, windowing=windowing)
    records = {}
    for (device, start), events in result.emitted.items():
        values = [e.value for e in events]
        records[f"tumbling|{device}|{format_time(start)}"] = {
            "aggregation": "tumbling",
            **_bounds(start, windowing),
            "device_id": device,
            "avg_value": statistics.fmean(values),
            "max_value": max(values),
            "min_value": min(values),
            "record_count": len(values),
        }
    return records


def sliding_records(batches: Sequence[Sequence[Event]], windowing: Windowing) -> dict[str, dict]:
    """The windowed job's ``sliding`` records, by key ``sliding|device_id|window_start``."""
    result = window_aggregate(batches, group=lambda e: e.device_id, windowing=windowing)
    records = {}
    for (device, start), events in result.emitted.items():
        values = [e.value for e in events]
        records[f"sliding|{device}|{format_time(start)}"] = {
            "aggregation": "sliding",
            **_bounds(start, windowing),
            "device_id": device,
            "avg_value": statistics.fmean(values),
            "stddev_value": _stddev(values),
            "record_count": len(values),
        }
    return records


def status_records(batches: Sequence[Sequence[Event]], windowing: Windowing) -> dict[str, dict]:
    """The windowed job's ``status`` records, by key ``status|status|window_start``."""
    result = window_aggregate(batches, group=lambda e: e.status, windowing=windowing)
    return {
        f"status|{status}|{format_time(start)}": {
            "aggregation": "status",
            **_bounds(start, windowing),
            "status": status,
            "record_count": len(events),
        }
        for (status, start), events in result.emitted.items()
    }


HIGH_VALUE = "HIGH_VALUE"
LOW_VALUE = "LOW_VALUE"


@dataclass(frozen=True)
class Scored:
    """One window's anomaly verdict: type (None when normal), score, and how close it was to a boundary."""

    anomaly_type: str | None
    score: float | None
    margin: float


def score_window(values: Sequence[float], *, threshold: float, stddev_floor: float) -> Scored:
    """The z-score rule: HIGH_VALUE if z_high > threshold, LOW_VALUE if -z_low > threshold, larger wins.

    ``margin`` is the smallest distance of a comparison from flipping (tests skip windows this close to a
    boundary, where the last bit of floating-point rounding could decide).
    """
    mean = statistics.fmean(values)
    sigma = _stddev(values)
    effective = stddev_floor if sigma is None or sigma == 0 else sigma
    z_high = (max(values) - mean) / effective
    z_low = (min(values) - mean) / effective
    high, low = z_high > threshold, -z_low > threshold
    margin = min(abs(z_high - threshold), abs(-z_low - threshold))
    if high and low:
        margin = min(margin, abs(z_high + z_low))
        return Scored(HIGH_VALUE, z_high, margin) if z_high >= -z_low else Scored(LOW_VALUE, z_low, margin)
    if high:
        return Scored(HIGH_VALUE, z_high, margin)
    if low:
        return Scored(LOW_VALUE, z_low, margin)
    return Scored(None, None, margin)


@dataclass
class AnomalyReference:
    """The anomaly job's alerts by key ``device_id|window_start``, and how close the closest call was."""

    alerts: dict[str, dict]
    smallest_margin: float
    windows: int


def anomaly_records(
    batches: Sequence[Sequence[Event]], windowing: Windowing, *, threshold: float, stddev_floor: float
) -> AnomalyReference:
    """Alerts of every emitted window that breaches the threshold (normal windows are not written)."""
    result = window_aggregate(batches, group=lambda e: e.device_id, windowing=windowing)
    alerts = {}
    smallest = math.inf
    for (device, start), events in result.emitted.items():
        values = [e.value for e in events]
        verdict = score_window(values, threshold=threshold, stddev_floor=stddev_floor)
        smallest = min(smallest, verdict.margin)
        if verdict.anomaly_type is None:
            continue
        alerts[f"{device}|{format_time(start)}"] = {
            "anomaly_type": verdict.anomaly_type,
            "anomaly_score": verdict.score,
            **_bounds(start, windowing),
            "device_id": device,
            "record_count": len(values),
            "avg_value": statistics.fmean(values),
            "stddev_value": _stddev(values),
            "min_value": min(values),
            "max_value": max(values),
            "threshold": threshold,
        }
    return AnomalyReference(alerts, smallest, len(result.emitted))


def split_batches(
    events_at: Mapping[tuple[int, int], Event], batch_ends: Iterable[Mapping[int, int]]
) -> list[list[Event]]:
    """Cut events keyed by (partition, offset) into micro-batches given each batch's end offsets (exclusive).

    Batches cover consecutive offset ranges of each partition, starting at offset 0; offsets past the last end
    belong to no batch (they are returned as a final batch, so nothing silently disappears).
    """
    batches: list[list[Event]] = []
    previous: dict[int, int] = {}
    remaining = dict(events_at)
    for ends in batch_ends:
        batch = [
            remaining.pop(position)
            for position in sorted(remaining)
            if previous.get(position[0], 0) <= position[1] < ends.get(position[0], 0)
        ]
        batches.append(batch)
        previous = {**previous, **ends}
    if remaining:
        batches.append([remaining[position] for position in sorted(remaining)])
    return batches
