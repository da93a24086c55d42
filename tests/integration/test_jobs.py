"""The three streaming jobs end to end: a real broker, the real generator, the real Spark jobs, and every output
record compared field by field with the pure-Python reference in ``reference.py`` (written from the spec).

One generated data set (3 partitions, 8 devices, malformed records of every kind) is produced once per module and
each job runs over it once (available-now); the restart tests use their own topics or checkpoints.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import reference as ref
from confluent_kafka import KafkaError, Message, Producer
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery
from reference import Event, Parsed, Windowing, seconds
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics
from support.outputs import assert_same_records as _assert_same_records
from support.outputs import records_by_key as _records

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import end_offsets, read_all
from spark_jobs import anomaly, basic, windowed
from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.basic import BasicOptions
from spark_jobs.generator import producer
from spark_jobs.generator.model import (
    EXPECTED_ERROR_CODE,
    HEADER_ANOMALY,
    HEADER_MALFORMED,
    HEADER_SEQ,
    MALFORMED_KINDS,
    GeneratorConfig,
)
from spark_jobs.options import CommonOptions, Duration, Trigger
from spark_jobs.runner import await_queries, stop_gracefully
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.integration

S = Duration.parse
START = datetime(2024, 3, 1, tzinfo=UTC)
START_US = ref.timestamp_us("2024-03-01T00:00:00Z")
DLQ_HEADERS = tuple(
    f"sluice.dlq.{name}"
    for name in (
        "error_code",
        "error_message",
        "job",
        "source_topic",
        "source_partition",
        "source_offset",
        "source_timestamp",
    )
)
# The shared data set: 3000 messages 40 ms apart (event times 00:00:00.000 .. 00:01:59.960). Seed 11 gives
# every malformed kind (7 to 20 times each); its last message is a valid event at 00:01:59.960, so the final
# watermarks are x9.960 s and no window ends exactly on one.
DATASET = {"count": 3000, "devices": 8, "interval_ms": 40, "seed": 11, "malformed_fraction": 0.03}
MARGIN = 1e-6
# With a status window of 20 s the status aggregation closes windows within the test data (1 h would not).
STATUS_WINDOW = S("20s")

BASIC = Windowing(seconds(10), seconds(5), seconds(10))
TUMBLING = Windowing(seconds(10), seconds(10), seconds(10))
SLIDING = Windowing(seconds(30), seconds(10), seconds(10))
STATUS = Windowing(seconds(20), seconds(20), seconds(10))
ANOMALY = Windowing(seconds(30), seconds(10), seconds(30))
THRESHOLD, STDDEV_FLOOR = 2.0, 1.0


# --- source records ----------------------------------------------------------------------------------------------


@dataclass
class Source:
    """The records of a source topic as read back, each parsed by the reference."""

    topic: str
    messages: list[Message]
    parsed: dict[tuple[int, int], Parsed]

    @classmethod
    def read(cls, bootstrap: str, topic: str) -> Source:
        messages = read_all(bootstrap, topic, timeout=60)
        return cls(topic, messages, {_position(m): ref.parse_record(m.value()) for m in messages})

    @property
    def events_at(self) -> dict[tuple[int, int], Event]:
        return {pos: p.event for pos, p in self.parsed.items() if p.event is not None}

    @property
    def events(self) -> list[Event]:
        return list(self.events_at.values())

    @property
    def invalid(self) -> list[Message]:
        return [m for m in self.messages if self.parsed[_position(m)].event is None]


def _position(message: Message) -> tuple[int, int]:
    return message.partition(), message.offset()


def _headers(message: Message) -> list[tuple[str, bytes]]:
    return list(message.headers() or [])


def _header(message: Message, name: str) -> bytes | None:
    return dict(_headers(message)).get(name)


def _new_topic(broker: KafkaBroker, prefix: str, partitions: int = 1) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, [DesiredTopic(name, partitions=partitions)], timeout=30)
    return name


def _generate(bootstrap: str, topic: str, **settings: object) -> dict:
    """Produce with the real generator (flat out, deterministic) and check every message was delivered."""
    config = GeneratorConfig(bootstrap_servers=bootstrap, topic=topic, rate=0, **settings)
    summary = producer.run(config, handle_signals=False, err=io.StringIO())
    assert summary["failed"] == 0 and summary["delivered"] == config.count, summary
    return summary


def _event_json(time_us: int, device: str, value: float, status: str = "Normal") -> tuple[bytes, bytes]:
    body = {"timestamp": ref.format_time(time_us), "value": value, "device_id": device, "status": status}
    return device.encode(), json.dumps(body).encode()


def _produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Produce hand-made (key, value) records and wait until each is acknowledged."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    kafka = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        kafka.produce(
            topic, key=key, value=value, headers=[("test.kind", b"hand-made")], on_delivery=on_delivery
        )
    assert kafka.flush(30) == 0, "hand-made records still undelivered after 30 s"
    assert errors == []


# --- running jobs ---------------------------------------------------------------------------------------------


def _common(
    bootstrap: str, source: str, dead_letters: str, checkpoints: Path, **overrides: object
) -> CommonOptions:
    settings: dict = {
        "bootstrap_servers": bootstrap,
        "source_topic": source,
        "dead_letter_topic": dead_letters,
        "checkpoint_root": str(checkpoints),
        "trigger": Trigger(available_now=True),
        "console": False,
        "shuffle_partitions": 2,
        # The events are dated from 2024-03-01 (a fixed history, so the references are fixed) and produced now.
        "max_event_behind": None,
        **overrides,
    }
    # Query names must be unique among active queries: one prefix per run.
    settings.setdefault("query_prefix", f"t{uuid.uuid4().hex[:8]}-")
    return CommonOptions(**settings)


def _run(spark: SparkSession, jobs: Sequence[tuple[Callable, object]]) -> list[StreamingQuery]:
    """Start every job's query, wait until all have ended (available-now), fail on a query failure."""
    queries: list[StreamingQuery] = []
    try:
        for start, options in jobs:
            queries.append(start(spark, options))
        failure = await_queries(queries)
        assert failure is None, failure
    finally:
        for query in queries:
            query.stop()
    return queries


def _query(queries: Sequence[StreamingQuery], suffix: str) -> StreamingQuery:
    (found,) = (q for q in queries if q.name.endswith(suffix))
    return found


def _end_offsets(progress) -> dict[int, int]:
    (source,) = progress["sources"]
    (offsets,) = json.loads(source["endOffset"]).values()
    return {int(partition): offset for partition, offset in offsets.items()}


# --- comparing outputs -------------------------------------------------------------------------------------------


def _by_aggregation(records: dict[str, dict], aggregation: str) -> dict[str, dict]:
    return {key: value for key, value in records.items() if value.get("aggregation") == aggregation}


def _windowed_reference(batches: Sequence[Sequence[Event]]) -> dict[str, dict]:
    return {
        **ref.tumbling_records(batches, TUMBLING),
        **ref.sliding_records(batches, SLIDING),
        **ref.status_records(batches, STATUS),
    }


def _anomaly_reference(batches: Sequence[Sequence[Event]]) -> dict[str, dict]:
    expected = ref.anomaly_records(batches, ANOMALY, threshold=THRESHOLD, stddev_floor=STDDEV_FLOOR)
    assert expected.smallest_margin > MARGIN, "a window is too close to the threshold to compare reliably"
    return expected.alerts


def _event_files(spark: SparkSession, path: Path) -> Counter:
    """The multiset of events in the job's files, checking each sits in the partition of its UTC date."""
    rows = (
        spark.read.parquet(str(path))
        .selectExpr(
            "unix_micros(event_time) AS t", "device_id", "value", "status", "CAST(event_date AS STRING) AS d"
        )
        .collect()
    )
    misplaced = [r for r in rows if ref.format_time(r.t)[:10] != r.d]
    assert not misplaced, f"events outside their event_date partition, e.g. {misplaced[:3]}"
    return Counter(Event(r.t, r.device_id, r.value, r.status) for r in rows)


def _assert_dead_letters(dead_letters: Sequence[Message], source: Source, job: str) -> None:
    """The job's dead letters are the invalid source records, one each, unchanged, with the reason added."""
    mine = [m for m in dead_letters if _header(m, "sluice.dlq.job") == job.encode()]
    by_source = Counter(
        (int(_header(m, "sluice.dlq.source_partition")), int(_header(m, "sluice.dlq.source_offset")))
        for m in mine
    )
    twice = [pos for pos, n in by_source.items() if n > 1]
    assert not twice, f"{job}: records dead-lettered more than once: {twice[:5]}"
    invalid = {_position(m): m for m in source.invalid}
    assert set(by_source) == set(invalid), (
        f"{job}: dead letters for {sorted(set(by_source) - set(invalid))[:5]} (valid?), "
        f"none for {sorted(set(invalid) - set(by_source))[:5]}"
    )
    problems = []
    for letter in mine:
        headers = _headers(letter)
        position = (
            int(_header(letter, "sluice.dlq.source_partition")),
            int(_header(letter, "sluice.dlq.source_offset")),
        )
        original = invalid[position]
        kind = _header(original, HEADER_MALFORMED).decode()
        names = Counter(name for name, _ in headers if name.startswith("sluice.dlq."))
        checks = {
            "value": (letter.value(), original.value()),
            "key": (letter.key(), original.key()),
            "original headers kept": (Counter(_headers(original)) <= Counter(headers), True),
            "original headers": ({HEADER_SEQ, HEADER_MALFORMED} <= {n for n, _ in headers}, True),
            "dlq header names": (names, Counter(DLQ_HEADERS)),
            "error_code": (_header(letter, "sluice.dlq.error_code"), EXPECTED_ERROR_CODE[kind].encode()),
            "error_message": (bool(_header(letter, "sluice.dlq.error_message")), True),
            "source_topic": (_header(letter, "sluice.dlq.source_topic"), source.topic.encode()),
            "source_timestamp": (
                _header(letter, "sluice.dlq.source_timestamp"),
                ref.format_time(original.timestamp()[1] * 1000).encode(),
            ),
        }
        problems += [
            f"{position} ({kind}): {name}: {got!r} != {want!r}"
            for name, (got, want) in checks.items()
            if got != want
        ]
    assert not problems, f"{job}: {len(problems)} dead-letter problems:\n" + "\n".join(problems[:20])


# --- the shared data set and one run of each job over it ---------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(kafka_broker: KafkaBroker) -> tuple[Source, dict]:
    """The shared data set, produced by the real generator, read back; and the generator's summary."""
    topic = _new_topic(kafka_broker, "jobs-source", partitions=3)
    summary = _generate(kafka_broker.bootstrap_servers, topic, start_time=START, **DATASET)
    return Source.read(kafka_broker.bootstrap_servers, topic), summary


@pytest.fixture(scope="module")
def source(dataset: tuple[Source, dict]) -> Source:
    return dataset[0]


@pytest.fixture(scope="module")
def dead_letter_topic(kafka_broker: KafkaBroker) -> str:
    """One dead-letter topic shared by the three jobs over the data set (told apart by the job header)."""
    return _new_topic(kafka_broker, "jobs-dlq")


@dataclass
class JobRun:
    output: list[Message]
    queries: list[StreamingQuery]
    output_dir: Path | None = None


@pytest.fixture(scope="module")
def basic_run(
    spark: SparkSession, kafka_broker: KafkaBroker, source: Source, dead_letter_topic: str, tmp_path_factory
) -> JobRun:
    bootstrap = kafka_broker.bootstrap_servers
    processed = _new_topic(kafka_broker, "jobs-processed")
    output_dir = tmp_path_factory.mktemp("basic-output")
    options = BasicOptions(
        common=_common(bootstrap, source.topic, dead_letter_topic, tmp_path_factory.mktemp("basic-ckpt")),
        processed_topic=processed,
        output_dir=str(output_dir),
    )
    queries = _run(spark, [(basic.start, options)])
    return JobRun(read_all(bootstrap, processed, timeout=60), queries, output_dir / "events")


@pytest.fixture(scope="module")
def windowed_run(
    spark: SparkSession, kafka_broker: KafkaBroker, source: Source, dead_letter_topic: str, tmp_path_factory
) -> JobRun:
    bootstrap = kafka_broker.bootstrap_servers
    output = _new_topic(kafka_broker, "jobs-windowed")
    options = WindowedOptions(
        common=_common(bootstrap, source.topic, dead_letter_topic, tmp_path_factory.mktemp("windowed-ckpt")),
        status_window=STATUS_WINDOW,
        windowed_topic=output,
    )
    queries = _run(spark, [(windowed.start, options)])
    return JobRun(read_all(bootstrap, output, timeout=60), queries)


@pytest.fixture(scope="module")
def anomaly_run(
    spark: SparkSession, kafka_broker: KafkaBroker, source: Source, dead_letter_topic: str, tmp_path_factory
) -> JobRun:
    bootstrap = kafka_broker.bootstrap_servers
    output = _new_topic(kafka_broker, "jobs-alerts")
    options = AnomalyOptions(
        common=_common(bootstrap, source.topic, dead_letter_topic, tmp_path_factory.mktemp("anomaly-ckpt")),
        alerts_topic=output,
    )
    queries = _run(spark, [(anomaly.start, options)])
    return JobRun(read_all(bootstrap, output, timeout=60), queries)


# --- 1. the data set: generator ground truth vs the reference parser ---------------------------------------------


def test_reference_parser_agrees_with_the_generators_ground_truth(dataset: tuple[Source, dict]) -> None:
    source, summary = dataset
    assert len(source.messages) == DATASET["count"]
    assert sorted(int(_header(m, HEADER_SEQ)) for m in source.messages) == list(range(DATASET["count"]))
    assert {m.partition() for m in source.messages} == {0, 1, 2}

    kinds = Counter(
        _header(m, HEADER_MALFORMED).decode() for m in source.messages if _header(m, HEADER_MALFORMED)
    )
    assert set(kinds) == set(MALFORMED_KINDS), f"some malformed kind is missing from the data set: {kinds}"
    assert dict(kinds) == {k: n for k, n in summary["malformed"].items() if n}

    disagreements = []
    for m in source.messages:
        parsed = source.parsed[_position(m)]
        kind = _header(m, HEADER_MALFORMED)
        expected_code = EXPECTED_ERROR_CODE[kind.decode()] if kind else None
        if parsed.error_code != expected_code:
            disagreements.append(f"{_position(m)} {m.value()[:60]!r}: {parsed.error_code} vs {kind}")
    assert not disagreements, "\n".join(disagreements[:20])

    events = source.events
    assert len(events) == summary["valid_events"]
    assert sum(_header(m, HEADER_ANOMALY) == b"true" for m in source.messages) == summary["anomalies"]
    assert {e.device_id for e in events} == {f"device_{n:03d}" for n in range(1, 9)}
    assert ref.format_time(min(e.time_us for e in events)) == summary["first_event_time"]
    assert ref.format_time(max(e.time_us for e in events)) == summary["last_event_time"]
    assert summary["last_event_time"] == "2024-03-01T00:01:59.960Z"


# --- 2. basic ------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_basic_windows_match_the_reference(basic_run: JobRun, source: Source) -> None:
    expected = ref.basic_records([source.events], BASIC)
    assert len(expected) > 100
    _assert_same_records(_records(basic_run.output), expected, "basic device windows")


@pytest.mark.timeout(600)
def test_basic_files_hold_every_valid_event_once(
    spark: SparkSession, basic_run: JobRun, source: Source
) -> None:
    assert _event_files(spark, basic_run.output_dir) == Counter(source.events)


# --- 3. windowed ---------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("aggregation", windowed.AGGREGATIONS)
def test_windowed_aggregation_matches_the_reference(
    windowed_run: JobRun, source: Source, aggregation: str
) -> None:
    records = _records(windowed_run.output)
    assert {r["aggregation"] for r in records.values()} == set(windowed.AGGREGATIONS)
    expected = _by_aggregation(_windowed_reference([source.events]), aggregation)
    assert expected, "the data set should close windows of every aggregation"
    _assert_same_records(_by_aggregation(records, aggregation), expected, f"windowed {aggregation}")


# --- 4. anomaly ----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_anomaly_alerts_match_the_reference(anomaly_run: JobRun, source: Source) -> None:
    expected = _anomaly_reference([source.events])
    assert expected, "the data set should raise alerts"
    _assert_same_records(_records(anomaly_run.output), expected, "anomaly alerts")


@pytest.mark.timeout(600)
def test_alerted_windows_mostly_hold_injected_anomalies(anomaly_run: JobRun, source: Source) -> None:
    flagged = {_position(m) for m in source.messages if _header(m, HEADER_ANOMALY) == b"true"}
    injected = {(e.device_id, e.time_us) for position, e in source.events_at.items() if position in flagged}
    alerts = _records(anomaly_run.output).values()
    assert alerts
    holding = [
        a
        for a in alerts
        if any(
            device == a["device_id"]
            and ref.timestamp_us(a["window_start"]) <= moment < ref.timestamp_us(a["window_end"])
            for device, moment in injected
        )
    ]
    assert len(holding) > len(alerts) / 2, (
        f"only {len(holding)} of {len(alerts)} alerted windows hold an anomaly"
    )


# --- 5. dead letters -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("job", ["basic", "windowed", "anomaly"])
def test_dead_letters_are_the_invalid_records(
    request: pytest.FixtureRequest,
    kafka_broker: KafkaBroker,
    source: Source,
    dead_letter_topic: str,
    job: str,
) -> None:
    request.getfixturevalue(f"{job}_run")
    letters = read_all(kafka_broker.bootstrap_servers, dead_letter_topic, timeout=60)
    assert {_header(m, "sluice.dlq.job") for m in letters} <= {b"basic", b"windowed", b"anomaly"}
    _assert_dead_letters(letters, source, job)


# --- 6. restart from a checkpoint, with late events in between ---------------------------------------------------

# Part 1: generated events at 00:00:00.000 .. 00:01:29.960 plus one hand-made event at exactly 00:01:30.000, so
# the watermark after run 1 is exactly 00:01:20 (windowed, 10 s delay) and 00:01:00 (anomaly, 30 s delay): a
# window end. Which side of that boundary Spark puts the windows ending there is pinned by the run-1 check.
# Few anomalies, so that some windows raise no alert.
PART1 = {
    "count": 2250,
    "devices": 4,
    "interval_ms": 40,
    "seed": 101,
    "malformed_fraction": 0.02,
    "anomaly_probability": 0.005,
}
PART1_MAX_US = START_US + seconds(90)
# Part 2 continues: 00:01:30.040 .. 00:02:29.960.
PART2 = {**PART1, "count": 1499, "seed": 202}
PART2_START_US = START_US + seconds(90.04)
# Produced with part 2. "Clearly late": older than both watermarks after run 1 by more than 30 s, so every window
# they fall in ended before the watermark: dropped by any rule. "Marginally late": older than the watermark, but
# some of their sliding windows end after it; they tell apart the two rules Spark could apply (drop the event, or
# drop only its contributions to windows that ended) — see the reference's module docstring.
CLEARLY_LATE = [(5.0, "device_001", 480.0), (12.345, "device_002", 11.0), (25.0, "device_003", 333.0)]
MARGINALLY_LATE = [(79.5, "device_002", 99.0), (55.0, "device_003", 480.0)]
# Produced with part 1: one low value among high ones, for a LOW_VALUE alert (the generator's values never make
# one: a lone normal value among anomalies is too rare).
LOW_BURST = [(20 + i / 1000, "device_low", 300.0 + i) for i in range(11)] + [(20.011, "device_low", 20.0)]


@dataclass
class RestartRun:
    source: Source
    part1_ends: dict[int, int]
    batches: list[list[Event]]
    first: dict[str, list[Message]]
    both: dict[str, list[Message]]
    queries: list[list[StreamingQuery]]


@pytest.fixture(scope="module")
def restart_run(spark: SparkSession, kafka_broker: KafkaBroker, tmp_path_factory) -> RestartRun:
    """Run windowed and anomaly together on part 1, add part 2 and late events, run them again."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = _new_topic(kafka_broker, "restart-source", partitions=2)
    outputs = {
        "windowed": _new_topic(kafka_broker, "restart-windowed"),
        "anomaly": _new_topic(kafka_broker, "restart-alerts"),
    }
    dead_letters = _new_topic(kafka_broker, "restart-dlq")
    checkpoints = tmp_path_factory.mktemp("restart-ckpt")

    def run() -> list[StreamingQuery]:
        common = _common(bootstrap, topic, dead_letters, checkpoints)
        windowed_options = WindowedOptions(
            common=common, status_window=STATUS_WINDOW, windowed_topic=outputs["windowed"]
        )
        anomaly_options = AnomalyOptions(common=common, alerts_topic=outputs["anomaly"])
        return _run(spark, [(windowed.start, windowed_options), (anomaly.start, anomaly_options)])

    _generate(bootstrap, topic, start_time=START, **PART1)
    hand_made = [(PART1_MAX_US, "device_001", 42.0)]
    hand_made += [(START_US + seconds(at), device, value) for at, device, value in LOW_BURST]
    _produce(bootstrap, topic, [_event_json(*event) for event in hand_made])
    part1_ends = end_offsets(bootstrap, topic)
    first_queries = run()
    first = {job: read_all(bootstrap, out, timeout=60) for job, out in outputs.items()}

    _generate(bootstrap, topic, start_time=START + timedelta(microseconds=PART2_START_US - START_US), **PART2)
    late = CLEARLY_LATE + MARGINALLY_LATE
    _produce(bootstrap, topic, [_event_json(START_US + seconds(at), device, v) for at, device, v in late])
    second_queries = run()
    both = {job: read_all(bootstrap, out, timeout=60) for job, out in outputs.items()}

    source = Source.read(bootstrap, topic)
    batches = ref.split_batches(source.events_at, [part1_ends])
    return RestartRun(source, part1_ends, batches, first, both, [first_queries, second_queries])


@pytest.mark.timeout(600)
def test_restart_runs_read_their_part_once(restart_run: RestartRun) -> None:
    part1, part2 = restart_run.batches
    assert max(e.time_us for e in part1) == PART1_MAX_US
    late = sorted(e.time_us for e in part2 if e.time_us <= PART1_MAX_US)
    assert late == sorted(START_US + seconds(at) for at, _, _ in CLEARLY_LATE + MARGINALLY_LATE)
    assert min(e.time_us for e in part2 if e.time_us > PART1_MAX_US) >= PART2_START_US
    # Run 2 resumed where run 1 ended: each query read every record of its part, and nothing else.
    records = [sum(restart_run.part1_ends.values())]
    records.append(len(restart_run.source.messages) - records[0])
    for queries, expected in zip(restart_run.queries, records, strict=True):
        for query in queries:
            assert sum(p["numInputRows"] for p in query.recentProgress) == expected, query.name


def _job_reference(job: str) -> tuple[Callable[[Sequence[Sequence[Event]]], dict[str, dict]], int]:
    """The reference of a windowed or anomaly job's output, and the job's watermark delay."""
    if job == "windowed":
        return _windowed_reference, TUMBLING.delay_us
    return _anomaly_reference, ANOMALY.delay_us


@pytest.mark.parametrize("job", ["windowed", "anomaly"])
def test_restart_data_tells_the_late_rules_apart(restart_run: RestartRun, job: str) -> None:
    """The marginally late events make two candidate rules predict different outputs — drop an event's
    contributions to windows that ended at the watermark (the reference's), or drop events older than the
    watermark — so the restart test below pins which one Spark applies. The clearly late ones count in neither."""
    reference, delay = _job_reference(job)
    part1, part2 = restart_run.batches
    by_window = reference([part1, part2])
    by_event = reference([part1, [e for e in part2 if e.time_us >= PART1_MAX_US - delay]])
    assert by_window != by_event
    clearly_late = {START_US + seconds(at) for at, _, _ in CLEARLY_LATE}
    assert by_window == reference([part1, [e for e in part2 if e.time_us not in clearly_late]])
    if job == "anomaly":
        alerts = ref.anomaly_records([part1, part2], ANOMALY, threshold=THRESHOLD, stddev_floor=STDDEV_FLOOR)
        types = Counter(alert["anomaly_type"] for alert in alerts.alerts.values())
        assert types[ref.HIGH_VALUE] and types[ref.LOW_VALUE], types
        assert alerts.windows > len(alerts.alerts), "some windows should raise no alert"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("job", ["windowed", "anomaly"])
def test_restart_emits_each_window_once_and_drops_late_contributions(
    restart_run: RestartRun, job: str
) -> None:
    reference, delay = _job_reference(job)
    first_run = restart_run.first[job]
    both_runs = restart_run.both[job]
    # Run 1 emitted exactly the windows final at its watermark, including those ending exactly on it.
    expected_first = reference(restart_run.batches[:1])
    # Spark closes a window whose end equals the watermark: end <= watermark is final.
    ends = {ref.timestamp_us(r["window_end"]) for r in expected_first.values()}
    assert PART1_MAX_US - delay in ends, "run 1 should close windows ending exactly on its watermark"
    _assert_same_records(_records(first_run), expected_first, f"{job} after run 1")
    # Run 2 re-emitted none of them, and together they are the reference with late contributions dropped.
    assert [m.value() for m in both_runs[: len(first_run)]] == [m.value() for m in first_run]
    _assert_same_records(_records(both_runs), reference(restart_run.batches), f"{job} after both runs")


# --- 7. stop mid-stream, restart from the checkpoint ---------------------------------------------------------------

BATCHES_BEFORE_STOP = 3  # the watermark first closes windows in the third batch, so run 1 writes some
MAX_OFFSETS = 300
# A batch of this job takes 1-1.5 s on two cores, so with a 1 s trigger the batches of the backlog run back to
# back and the query is never idle: stop_gracefully must stop it right after a batch commits, not wait for a gap.
TRIGGER = S("1s")


def _wait_for_batches(queries: Sequence[StreamingQuery], watched: StreamingQuery, batches: int) -> None:
    deadline = time.monotonic() + 300
    while sum(p["numInputRows"] > 0 for p in watched.recentProgress) < batches:
        for query in queries:
            assert query.isActive, f"query {query.name} ended early: {query.exception()}"
        assert time.monotonic() < deadline, f"{watched.name} did not complete {batches} batches in 300 s"
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_basic_stopped_mid_stream_resumes_without_loss_or_duplicates(
    spark: SparkSession, kafka_broker: KafkaBroker, source: Source, tmp_path_factory
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    processed = _new_topic(kafka_broker, "midstream-processed")
    dead_letters = _new_topic(kafka_broker, "midstream-dlq")
    output_dir = tmp_path_factory.mktemp("midstream-output")
    checkpoints = tmp_path_factory.mktemp("midstream-ckpt")

    def options(trigger: Trigger) -> BasicOptions:
        common = _common(
            bootstrap,
            source.topic,
            dead_letters,
            checkpoints,
            trigger=trigger,
            max_offsets_per_trigger=MAX_OFFSETS,
        )
        return BasicOptions(common=common, processed_topic=processed, output_dir=str(output_dir))

    queries = [basic.start(spark, options(Trigger(interval=TRIGGER)))]
    try:
        windows = _query(queries, "basic")
        _wait_for_batches(queries, windows, BATCHES_BEFORE_STOP)
        stop_gracefully(queries)
    finally:
        for query in queries:
            query.stop()
    first_progress = [p for p in windows.recentProgress if p["numInputRows"] > 0]
    written_before_restart = read_all(bootstrap, processed, timeout=60)
    read_before = sum(_end_offsets(first_progress[-1]).values())
    assert read_before < len(source.messages) / 2, f"run 1 should stop early, it read {read_before} records"
    assert written_before_restart, "run 1 should have closed some windows"

    restarted = _run(spark, [(basic.start, options(Trigger(available_now=True)))])
    second_progress = [p for p in _query(restarted, "basic").recentProgress if p["numInputRows"] > 0]
    watermarks = {r.batch_id: r.watermark_ms for q in (windows, *restarted) for r in q.handler.reports}

    # Rebuild the micro-batches from the progress reports (each data batch's end offsets), run the reference's
    # watermark over them, and check Spark's watermark of every batch against it.
    progress = first_progress + second_progress
    assert [p["batchId"] for p in progress] == sorted({p["batchId"] for p in progress})
    batches = ref.split_batches(source.events_at, [_end_offsets(p) for p in progress])
    assert sum(map(len, batches)) == len(source.events) and len(batches) == len(progress), (
        "offsets not covered"
    )
    simulated = ref.window_aggregate(batches, group=lambda e: e.device_id, windowing=BASIC)
    assert [ref.format_time(watermarks[p["batchId"]] * 1000) for p in progress] == [
        ref.format_time(w or 0) for w in simulated.batch_watermarks
    ]
    # No event of this data set is late in any batch, so the windows are those of one batch with everything.
    assert simulated.dropped == []
    expected = ref.basic_records([source.events], BASIC)

    output = read_all(bootstrap, processed, timeout=60)
    assert [m.value() for m in output[: len(written_before_restart)]] == [
        m.value() for m in written_before_restart
    ]
    _assert_same_records(_records(output), expected, "basic windows across a mid-stream restart")
    assert _event_files(spark, output_dir / "events") == Counter(source.events)
    _assert_dead_letters(read_all(bootstrap, dead_letters, timeout=60), source, "basic")
