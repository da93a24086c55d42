"""What the e2e tier checks a pipeline's outputs against: the generator's ground truth (the source topic, whose
records say which events the generator made late), read from Kafka on the host, and the rules a job's windows and
alerts must meet whichever of the late events they counted. Shared by the pipelines of every Spark mode."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import reference as ref
from cluster import wait_for

from sluice_local.topics import read_all, wait_for_records

BOOTSTRAP = "localhost:30092"  # Kafka's external listener, mapped to the host by k8s/kind-config.yaml


LATE_HEADER = "sluice.late"  # the generator marks each event it back-dates (its ground truth)


EXACT = 1e-9


FIRST_RECORDS_S = 600
"""How long a job of the pipeline may take to write its first records (it starts on a busy node)."""


CLEAR_MARGIN = 0.25
"""How far from the threshold a z-score must be for a window to be flagged whichever of its late events count."""


@dataclass
class Window:
    """The source's valid events in one (group, window): the values of those on time, and of those the generator
    back-dated, in the order they were written (a device's events share one partition: they are keyed by it)."""

    on_time: list[float]
    late: list[float]

    def possible(self) -> list[list[float]]:
        """Every set of values a job may have aggregated (see :func:`counted`): the on-time events and the first
        ``k`` late ones, for each ``k``."""
        return [self.on_time + self.late[:k] for k in range(len(self.late) + 1)]


def ground_truth(source: Iterable, windowing: ref.Windowing) -> dict[tuple[str, int], Window]:
    """The source records (Kafka messages) by device and window start. A job must count every on-time event of a
    window it emits; a back-dated one it may count or drop, depending on the watermark when it arrived."""
    windows: dict[tuple[str, int], Window] = {}
    for message in source:
        event = ref.parse_record(message.value()).event
        if event is None:  # malformed: the dead letters' business
            continue
        late = dict(message.headers() or []).get(LATE_HEADER) == b"true"
        for start in windowing.starts(event.time_us):
            window = windows.setdefault((event.device_id, start), Window([], []))
            (window.late if late else window.on_time).append(event.value)
    return windows


def rows(topic: str, aggregation: str | None = None) -> list[dict]:
    found = [json.loads(m.value()) for m in read_all(BOOTSTRAP, topic, timeout=120)]
    return [r for r in found if aggregation is None or r.get("aggregation") == aggregation]


def window_start(row: dict) -> int:
    start = ref.timestamp_us(row["window_start"])
    assert start is not None, row
    return start


def settled_rows(topic: str, *, aggregation: str | None, windowing: ref.Windowing) -> tuple[list[dict], int]:
    """Every row of ``topic`` (of one aggregation), and the latest window start W whose micro-batch has surely
    finished writing: a window two slides later has appeared since (micro-batches run one after another). Every
    window ending by W's end has then been emitted, if it is ever to be."""
    # Each aggregation's windows close at their own pace (one query computes them all): wait for its first ones.
    first = wait_for(
        lambda: rows(topic, aggregation), timeout=FIRST_RECORDS_S, what=f"{aggregation or 'rows'} in {topic}"
    )
    settled = max(window_start(r) for r in first)
    later = settled + 2 * windowing.slide_us

    def after() -> list[dict] | None:
        found = rows(topic, aggregation)
        return found if any(window_start(r) >= later for r in found) else None

    everything = wait_for(
        after, timeout=300, what=f"a window starting at {ref.format_time(later)} in {topic}"
    )
    return everything, settled


def counted(row: dict, window: Window) -> list[float]:
    """The values a job aggregated into ``row``, told by its count. On-time events are never dropped. A late event
    is dropped when the watermark in force for its micro-batch has reached the window's end (Spark's rule, which the
    jobs keep); the watermark never moves back, and micro-batches take each partition's records in order, so once
    one late event of a window is dropped, every later one is too. A device's events share one partition: the
    late events counted are the first ``record_count - len(on_time)`` written."""
    late = row["record_count"] - len(window.on_time)
    assert 0 <= late <= len(window.late), (row, window)
    return window.on_time + window.late[:late]


def check_window_rows(
    rows: list[dict], truth: dict, *, settled: int, fields: dict[str, Callable[[list[float]], float | None]]
) -> int:
    """Each emitted window counted every on-time event of the source and no more than all of them; each of
    ``fields`` equals that statistic computed from the events it counted (:func:`counted`); every window with
    on-time events that starts by ``settled`` was emitted. Returns how many rows aggregated late events."""
    with_late = 0
    emitted = set()
    for row in rows:
        key = (row["device_id"], window_start(row))
        emitted.add(key)
        window = truth.get(key)
        assert window is not None, f"window with no source event: {row}"
        values = counted(row, window)
        with_late += len(values) > len(window.on_time)
        for field, statistic in fields.items():
            expected = statistic(values)
            if expected is None:  # a sample standard deviation of one value: JSON null
                assert row[field] is None, (field, row)
            else:
                close = math.isclose(row[field], expected, rel_tol=EXACT, abs_tol=EXACT)
                assert close, (field, row, expected)
    missing = sorted(k for k, w in truth.items() if w.on_time and k[1] <= settled and k not in emitted)
    assert not missing, f"windows with on-time events never emitted: {missing[:10]}"
    return with_late


TUMBLING_FIELDS = {
    "record_count": len,
    "avg_value": statistics.fmean,
    "min_value": min,
    "max_value": max,
}


SLIDING_FIELDS = {
    "record_count": len,
    "avg_value": statistics.fmean,
    "stddev_value": lambda values: statistics.stdev(values) if len(values) > 1 else None,
}


@dataclass(frozen=True)
class Pipeline:
    name: str
    spec: dict
    manifest: Path
    """The manifest applied (the sample, sized for one kind node)."""

    def topic(self, role: str) -> str:
        return self.spec["kafka"]["topics"][role]["name"]

    @property
    def topics(self) -> set[str]:
        return {t["name"] for t in self.spec["kafka"]["topics"].values()}

    def windowing(self, window: str, slide: str | None = None, *, job: str) -> ref.Windowing:
        settings = self.spec["jobs"][job]
        length = seconds(settings[window])
        return ref.Windowing(
            ref.seconds(length),
            ref.seconds(seconds(settings[slide]) if slide else length),
            ref.seconds(seconds(settings["watermark"])),
        )


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, f"test helper reads only <n>s/m/h durations, not {duration!r}"
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def records_by_key(topic: str) -> dict[str, list[bytes]]:
    """Every record value of ``topic``, by key, in the order written."""
    records: dict[str, list[bytes]] = {}
    for message in read_all(BOOTSTRAP, topic, timeout=120):
        records.setdefault(message.key().decode(), []).append(message.value())
    return records


def written_twice(records: dict[str, list[bytes]]) -> list[str]:
    return sorted(k for k, values in records.items() if len(values) > 1)


def rewritten(records: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """The keys written more than once, with their values when these differ (a re-emitted window must repeat its
    first record exactly)."""
    return {k: values for k, values in records.items() if len(set(values)) > 1}


def rows_settled_after(
    topic: str, windowing: ref.Windowing, after: int, *, aggregation: str | None = None
) -> tuple[list[dict], int]:
    """:func:`settled_rows` once windows starting at ``after`` have appeared: the settled start is then at least
    ``after``."""
    wait_for(
        lambda: any(window_start(r) >= after for r in rows(topic, aggregation)),
        timeout=600,
        what=f"{aggregation or 'rows'} windows in {topic} from {ref.format_time(after)} on",
    )
    found, settled = settled_rows(topic, aggregation=aggregation, windowing=windowing)
    assert settled >= after, (ref.format_time(settled), ref.format_time(after))
    return found, settled


BASIC_FIELDS = {"record_count": len, "avg_value": statistics.fmean}


def check_windowed(pipeline: Pipeline) -> None:
    """The windowed job's tumbling and sliding windows agree with the source (:func:`check_window_rows`), some of
    them counted late events, and every device has windows."""
    topic = pipeline.topic("windowed")
    wait_for_records(BOOTSTRAP, topic, count=100, timeout=FIRST_RECORDS_S)
    tumbling = pipeline.windowing("tumblingWindow", job="windowed")
    sliding = pipeline.windowing("slidingWindow", "slidingSlide", job="windowed")
    tumbling_rows, tumbling_settled = settled_rows(topic, aggregation="tumbling", windowing=tumbling)
    sliding_rows, sliding_settled = settled_rows(topic, aggregation="sliding", windowing=sliding)
    # Read after the results, the source holds every event of their windows.
    source = read_all(BOOTSTRAP, pipeline.topic("source"), timeout=300)

    with_late = check_window_rows(
        tumbling_rows, ground_truth(source, tumbling), settled=tumbling_settled, fields=TUMBLING_FIELDS
    )
    with_late += check_window_rows(
        sliding_rows, ground_truth(source, sliding), settled=sliding_settled, fields=SLIDING_FIELDS
    )
    # The sample back-dates late events by up to a minute, past the 10 s watermark delay or not: some land in
    # windows still open, and count.
    assert with_late > 0, "no window counted a late event: the late-event path went unchecked"
    devices = {r["device_id"] for r in tumbling_rows}
    assert len(devices) == pipeline.spec["generator"]["devices"], sorted(devices)


def check_alerts(pipeline: Pipeline) -> None:
    """Each alert's score is the z-score rule's on the values its window counted, and every settled window the
    rule flags clearly (whichever of its late events counted) was alerted."""
    topic = pipeline.topic("alerts")
    settings = pipeline.spec["jobs"]["anomaly"]
    windowing = pipeline.windowing("window", "slide", job="anomaly")
    wait_for_records(BOOTSTRAP, topic, count=1, timeout=FIRST_RECORDS_S)
    alerts, settled = settled_rows(topic, aggregation=None, windowing=windowing)
    source = read_all(BOOTSTRAP, pipeline.topic("source"), timeout=300)
    truth = ground_truth(source, windowing)
    threshold, floor = settings["threshold"], settings["stddevFloor"]

    alerted, exact = set(), 0
    for alert in alerts:
        key = (alert["device_id"], window_start(alert))
        alerted.add(key)
        window = truth[key]
        assert alert["threshold"] == threshold
        assert abs(alert["anomaly_score"]) > threshold, alert
        values = counted(alert, window)
        verdict = ref.score_window(values, threshold=threshold, stddev_floor=floor)
        if verdict.margin < 1e-6:  # the last bit of rounding could decide
            continue
        assert verdict.anomaly_type == alert["anomaly_type"], (alert, verdict)
        assert math.isclose(alert["anomaly_score"], verdict.score, rel_tol=EXACT), (alert, verdict)
        assert (alert["min_value"], alert["max_value"]) == (min(values), max(values)), alert
        exact += 1
    # Only a score within rounding of the threshold is left out.
    assert exact >= len(alerts) - len(alerts) // 100, f"only {exact} of {len(alerts)} alerts compared"

    # Every settled window the z-score rule flags clearly, whichever of its late events counted, was alerted.
    def clearly_flagged(window: Window) -> bool:
        verdicts = [
            ref.score_window(values, threshold=threshold, stddev_floor=floor) for values in window.possible()
        ]
        return all(v.anomaly_type is not None and v.margin >= CLEAR_MARGIN for v in verdicts)

    flagged = {k for k, w in truth.items() if k[1] <= settled and w.on_time and clearly_flagged(w)}
    assert flagged, "the ground truth flags no window: the check below would be empty"
    assert sorted(flagged - alerted) == []
