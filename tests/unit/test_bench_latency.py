"""The latency scenario's arithmetic, on hand-worked records: when a window could close, what its record's latency
is, and which segment of the measured time it falls in."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from sluice_local.bench.latency import SourceEvent, alert_latencies, percentiles, window_latencies

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, in ms: a whole 10 s
WINDOW_END = "2023-11-14T22:13:30.000Z"  # T0 + 10 s


@dataclass
class Record:
    """What the functions read of a Kafka message: the value and the (type, ms) timestamp."""

    body: dict
    arrived_ms: int

    def value(self) -> bytes:
        return json.dumps(self.body).encode()

    def timestamp(self) -> tuple[int, int]:
        return (2, self.arrived_ms)  # 2: LogAppendTime


def _events() -> list[SourceEvent]:
    # Event times 0, 12, 19.5, 20, 21 s after T0; produced in a different order than their event times.
    return [
        SourceEvent(T0, T0 + 100, "d1"),
        SourceEvent(T0 + 12_000, T0 + 12_100, "d1"),
        SourceEvent(T0 + 19_500, T0 + 19_600, "d2"),
        SourceEvent(T0 + 21_000, T0 + 20_500, "d2"),  # produced before the event stamped 20 s
        SourceEvent(T0 + 20_000, T0 + 22_000, "d1"),
    ]


def test_a_window_could_close_when_the_first_event_past_its_end_plus_the_delay_was_produced():
    # The window ends at T0 + 10 s; with a 10 s delay, the first event stamped at or after T0 + 20 s closes it:
    # two are (20 s and 21 s), and the one stamped 21 s was produced first, at T0 + 20.5 s.
    record = Record({"window_end": WINDOW_END}, arrived_ms=T0 + 27_500)
    assert window_latencies([record], _events(), delay_s=10, aggregation=None, from_ms=T0) == [7.0]


def test_segments_take_the_windows_that_could_close_inside_them():
    record = Record({"window_end": WINDOW_END}, arrived_ms=T0 + 27_500)  # could close at T0 + 20.5 s
    kw = {"delay_s": 10, "aggregation": None}
    assert window_latencies([record], _events(), from_ms=T0, until_ms=T0 + 20_500, **kw) == []
    assert window_latencies([record], _events(), from_ms=T0 + 20_500, until_ms=T0 + 30_000, **kw) == [7.0]
    assert window_latencies([record], _events(), from_ms=T0 + 20_501, **kw) == []


def test_records_of_other_aggregations_and_windows_nothing_closed_yet_are_left_out():
    other = Record({"window_end": WINDOW_END, "aggregation": "sliding"}, arrived_ms=T0 + 30_000)
    assert window_latencies([other], _events(), delay_s=10, aggregation="tumbling", from_ms=T0) == []
    open_ = Record(
        {"window_end": "2023-11-14T22:13:50.000Z"}, arrived_ms=T0 + 30_000
    )  # needs an event at 40 s
    assert window_latencies([open_], _events(), delay_s=10, aggregation=None, from_ms=T0) == []


def test_an_alert_counts_from_the_newest_event_of_its_window_and_device():
    # Window [T0, T0 + 30 s) of d1 holds the events stamped 0, 12 and 20 s; the newest was produced at T0 + 22 s.
    alert = Record(
        {
            "device_id": "d1",
            "window_start": "2023-11-14T22:13:20.000Z",
            "window_end": "2023-11-14T22:13:50.000Z",
        },
        arrived_ms=T0 + 61_000,
    )
    assert alert_latencies([alert], _events(), from_ms=T0) == [39.0]
    assert alert_latencies([alert], _events(), from_ms=T0, until_ms=T0 + 22_000) == []
    assert alert_latencies([alert], _events(), from_ms=T0 + 22_001) == []


def test_percentiles_take_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert percentiles(values) == {"count": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert percentiles([3.0]) == {"count": 1, "p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert percentiles([]) == {"count": 0}
