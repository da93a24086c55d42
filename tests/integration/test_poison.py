"""The poison suite: every kind of bad record, 200 of each, mixed among 50,000 valid events, through the three jobs
on the real broker, with the jobs' default bounds.

Each bad record must be in the dead letters exactly once per job with the code it was made to have; no job may
fail (a failed query would be a restart in a pod); and every output must equal the reference computed from the
valid events alone, as if the bad records had never been sent. The expected codes come from how each record is
made (below), not from the parser; the valid events are parsed by ``reference.py``.

The dead-letter topic takes at most 40,000-byte records (``max.message.bytes``, enforced by the broker), so the
records made too big for it must arrive cut to fit, with their original size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import reference as ref
from confluent_kafka import Message, Producer
from pyspark.sql import SparkSession
from reference import Event, Windowing, seconds
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics
from support.outputs import assert_same_records, records_by_key

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import read_all
from spark_jobs import anomaly, basic, windowed
from spark_jobs import events as ev
from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.basic import BasicOptions
from spark_jobs.generator.model import EventFactory, GeneratorConfig
from spark_jobs.options import CommonOptions, Duration, Trigger
from spark_jobs.runner import await_queries
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.integration

VALID = 50_000
EACH = 200
DEAD_LETTER_MAX_BYTES = 40_000
KIND_HEADER = "poison.kind"

BASIC = Windowing(seconds(10), seconds(5), seconds(10))
TUMBLING = Windowing(seconds(10), seconds(10), seconds(10))
SLIDING = Windowing(seconds(30), seconds(10), seconds(10))
STATUS = Windowing(seconds(20), seconds(20), seconds(10))
ANOMALY = Windowing(seconds(30), seconds(10), seconds(30))


def _event(timestamp: str = "2024-01-01T00:00:00Z", **fields: object) -> dict:
    return {"timestamp": timestamp, "value": 42.5, "device_id": "device_001", "status": "Normal", **fields}


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Kind:
    """A kind of bad record: how one is made (from the current time, an ISO-8601 text within the bounds) and the
    code it must be dead-lettered with."""

    name: str
    code: str
    make: Callable[[str], tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]  # key, value, headers
    cut: bool = False  # too big for the dead-letter topic: arrives truncated


def _value(code: str, name: str, value: Callable[[str], bytes | None], **more) -> Kind:
    return Kind(name, code, lambda now: (b"poison", value(now), []), **more)


def _far_ahead(now: str) -> bytes:
    day_ahead = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(days=1)
    return _json(_event(day_ahead.strftime("%Y-%m-%dT%H:%M:%SZ")))


KINDS = (
    _value(ev.EMPTY_MESSAGE, "null value", lambda now: None),
    _value(ev.EMPTY_MESSAGE, "empty value", lambda now: b""),
    _value(
        ev.RECORD_TOO_LARGE, "70 KB event", lambda now: _json(_event(now, device_id="d" * 70_000)), cut=True
    ),
    _value(ev.INVALID_JSON, "45 KB of junk", lambda now: b"{" + b"x" * 45_000, cut=True),
    _value(ev.INVALID_UTF8, "not UTF-8", lambda now: b"\xff\xfe" + _json(_event(now))),
    _value(ev.INVALID_JSON, "cut short", lambda now: _json(_event(now))[:-7]),
    _value(ev.INVALID_JSON, "NaN", lambda now: _json(_event(now)).replace(b"42.5", b"NaN")),
    _value(ev.INVALID_JSON, "Infinity", lambda now: _json(_event(now)).replace(b"42.5", b"Infinity")),
    _value(ev.INVALID_JSON, "10,000 levels", lambda now: b"[" * 10_000 + b"]" * 10_000),
    _value(
        ev.INVALID_JSON,
        "duplicate key",
        lambda now: _json(_event(now)).replace(b'"value": 42.5', b'"value": 1, "value": 2'),
    ),
    _value(ev.NOT_AN_OBJECT, "array", lambda now: b"[" + _json(_event(now)) + b"]"),
    _value(
        ev.MISSING_FIELD,
        "no device",
        lambda now: _json({k: v for k, v in _event(now).items() if k != "device_id"}),
    ),
    _value(ev.INVALID_TYPE, "number as timestamp", lambda now: _json(_event(1_700_000_000))),
    _value(ev.INVALID_TIMESTAMP, "not a time", lambda now: _json(_event("2024-13-45T00:00:00Z"))),
    _value(ev.INVALID_VALUE, "1e999", lambda now: _json(_event(now)).replace(b"42.5", b"1e999")),
    _value(ev.INVALID_VALUE, "empty device", lambda now: _json(_event(now, device_id=""))),
    _value(ev.FIELD_TOO_LONG, "1,000-character device", lambda now: _json(_event(now, device_id="d" * 1000))),
    _value(ev.TIMESTAMP_OUT_OF_RANGE, "year 9999", lambda now: _json(_event("9999-01-01T00:00:00Z"))),
    _value(ev.TIMESTAMP_OUT_OF_RANGE, "year 1970", lambda now: _json(_event("1970-01-01T00:00:00Z"))),
    _value(ev.TIMESTAMP_OUT_OF_RANGE, "a day ahead", _far_ahead),
    Kind(
        "forged dead-letter headers",
        ev.INVALID_JSON,
        lambda now: (b"poison", b"junk", [("sluice.dlq.error_code", b"FORGED"), ("sluice.dlq.job", b"none")]),
    ),
    Kind(
        "non-UTF-8 key and header",
        ev.INVALID_JSON,
        lambda now: (b"\xff\xfe\xfd", b"junk", [("h", b"\xc3\x28")]),
    ),
)


@dataclass
class PoisonRun:
    bootstrap: str
    source: str
    sent: dict[tuple[int, int], Message]  # the source topic as read back, by (partition, offset)
    events: list[Event]  # the valid events, as the reference parses them
    outputs: dict[str, list[Message]]
    letters: list[Message]
    files: Counter


def _header(message: Message, name: str) -> bytes | None:
    return dict(message.headers() or []).get(name)


def _produce(bootstrap: str, topic: str, start: datetime) -> None:
    """The valid events in time order (the real generator's, 10 ms apart), and after every 11th one the next bad
    record, the kinds taken in turn. Some valid events carry forged dead-letter headers or a non-UTF-8 key."""
    factory = EventFactory(
        GeneratorConfig(seed=23, devices=8, start_time=start, interval_ms=10, malformed_fraction=0)
    )
    now_text = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    bad = [(kind, i) for i in range(EACH) for kind in KINDS]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    errors: list = []

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(err)

    for seq in range(VALID):
        m = factory.message(seq, start)
        headers, key = list(m.headers), m.key
        if seq % 250 == 1:
            headers.append(("sluice.dlq.error_code", b"FORGED"))
        if seq % 250 == 2:
            key = b"\xff" + key
        producer.produce(topic, key=key, value=m.value, headers=headers, on_delivery=delivered)
        if seq % 11 == 5 and bad:
            kind, _ = bad.pop()
            k, v, h = kind.make(now_text)
            producer.produce(
                topic, key=k, value=v, headers=[*h, (KIND_HEADER, kind.name.encode())], on_delivery=delivered
            )
        producer.poll(0)
    assert not bad, f"{len(bad)} bad records left over: make VALID larger"
    assert producer.flush(60) == 0 and not errors, errors[:3]


@pytest.fixture(scope="module")
def poison(spark: SparkSession, kafka_broker: KafkaBroker, tmp_path_factory) -> PoisonRun:
    bootstrap = kafka_broker.bootstrap_servers
    suffix = uuid.uuid4().hex[:8]
    topics = {
        role: f"poison-{role}-{suffix}" for role in ("source", "processed", "windowed", "alerts", "dlq")
    }
    ensure_topics(
        bootstrap,
        [
            DesiredTopic(topics["source"], partitions=3),
            *(DesiredTopic(topics[r]) for r in ("processed", "windowed", "alerts")),
            DesiredTopic(topics["dlq"], config={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}),
        ],
        timeout=30,
    )
    # Whole minutes, 15 minutes ago: within the default bounds, and the same window layout in every run.
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=15)
    _produce(bootstrap, topics["source"], start)
    root = tmp_path_factory.mktemp("poison")

    def common(job: str) -> CommonOptions:
        return CommonOptions(
            bootstrap_servers=bootstrap,
            source_topic=topics["source"],
            dead_letter_topic=topics["dlq"],
            dead_letter_max_bytes=DEAD_LETTER_MAX_BYTES,
            checkpoint_root=str(root / "checkpoints"),
            trigger=Trigger(available_now=True),
            shuffle_partitions=2,
            query_prefix=f"poison-{suffix}-",
        )  # the bounds of event time, record size and field length are the defaults

    jobs = [
        (
            basic.start,
            BasicOptions(common("basic"), processed_topic=topics["processed"], output_dir=str(root)),
        ),
        (
            windowed.start,
            WindowedOptions(
                common("windowed"), status_window=Duration(20_000), windowed_topic=topics["windowed"]
            ),
        ),
        (anomaly.start, AnomalyOptions(common("anomaly"), alerts_topic=topics["alerts"])),
    ]
    queries = []
    try:
        queries = [start_(spark, opts) for start_, opts in jobs]
        failure = await_queries(queries)
    finally:
        for q in queries:
            q.stop()
    assert failure is None, f"a job failed on bad input: {failure}"

    messages = read_all(bootstrap, topics["source"], timeout=120)
    sent = {(m.partition(), m.offset()): m for m in messages}
    events = [ref.parse_record(m.value()).event for m in messages if _header(m, KIND_HEADER) is None]
    rows = spark.read.parquet(str(root / "events")).selectExpr(
        "unix_micros(event_time) AS t", "device_id", "value", "status"
    )
    return PoisonRun(
        bootstrap,
        topics["source"],
        sent,
        events,
        {r: read_all(bootstrap, topics[r], timeout=60) for r in ("processed", "windowed", "alerts")},
        read_all(bootstrap, topics["dlq"], timeout=120),
        Counter(Event(r.t, r.device_id, r.value, r.status) for r in rows.collect()),
    )


def test_the_data_holds_every_kind_and_the_valid_events(poison: PoisonRun) -> None:
    kinds = Counter(_header(m, KIND_HEADER).decode() for m in poison.sent.values() if _header(m, KIND_HEADER))
    assert kinds == {kind.name: EACH for kind in KINDS}
    assert len(KINDS) >= 14
    assert (
        None not in poison.events and len(poison.events) == VALID
    )  # the reference finds every valid event valid


@pytest.mark.parametrize("job", ["basic", "windowed", "anomaly"])
def test_every_bad_record_is_a_dead_letter_once_with_its_code(poison: PoisonRun, job: str) -> None:
    mine = [m for m in poison.letters if _header(m, "sluice.dlq.job") == job.encode()]
    positions = Counter(
        (int(_header(m, "sluice.dlq.source_partition")), int(_header(m, "sluice.dlq.source_offset")))
        for m in mine
    )
    assert [p for p, n in positions.items() if n > 1] == []
    bad = {p for p, m in poison.sent.items() if _header(m, KIND_HEADER) is not None}
    assert set(positions) == bad, (
        f"{job}: {len(set(positions) - bad)} valid records dead-lettered, {len(bad - set(positions))} bad ones not"
    )
    by_kind = {kind.name: kind for kind in KINDS}
    problems, cut = [], 0
    for letter in mine:
        position = (
            int(_header(letter, "sluice.dlq.source_partition")),
            int(_header(letter, "sluice.dlq.source_offset")),
        )
        original = poison.sent[position]
        kind = by_kind[_header(original, KIND_HEADER).decode()]
        code = _header(letter, "sluice.dlq.error_code")
        if code != kind.code.encode():
            problems.append(f"{kind.name}: {code!r}, expected {kind.code}")
        if [v for k, v in letter.headers() if k == "sluice.dlq.error_code"] != [code]:
            problems.append(f"{kind.name}: more than one sluice.dlq.error_code header")
        if kind.cut:
            cut += 1
            headers = dict(letter.headers())
            whole = original.value()
            size = len(letter.key() or b"") + len(letter.value() or b"")
            size += sum(len(k.encode()) + len(v or b"") for k, v in letter.headers())
            if not (
                headers.get("sluice.dlq.truncated") == b"true"
                and headers.get("sluice.dlq.original_value_sha256")
                == hashlib.sha256(whole).hexdigest().encode()
                and headers.get("sluice.dlq.original_value_bytes") == str(len(whole)).encode()
                and whole.startswith(letter.value())
                and size <= DEAD_LETTER_MAX_BYTES
            ):
                problems.append(f"{kind.name}: not cut to fit as documented ({size} bytes)")
        elif (letter.key(), letter.value()) != (original.key(), original.value()):
            problems.append(f"{kind.name}: key or value changed")
    assert problems == [], f"{job}: {len(problems)} problems:\n" + "\n".join(problems[:20])
    assert cut == EACH * sum(kind.cut for kind in KINDS)


def test_forged_headers_are_kept_as_previous_ones(poison: PoisonRun) -> None:
    forged = [
        m
        for m in poison.letters
        if _header(
            poison.sent[
                (int(_header(m, "sluice.dlq.source_partition")), int(_header(m, "sluice.dlq.source_offset")))
            ],
            KIND_HEADER,
        )
        == b"forged dead-letter headers"
    ]
    assert len(forged) == 3 * EACH
    for letter in forged:
        headers = letter.headers()
        assert ("sluice.dlq.previous.error_code", b"FORGED") in headers
        assert ("sluice.dlq.previous.job", b"none") in headers


def test_outputs_equal_the_reference_of_the_valid_events_alone(poison: PoisonRun) -> None:
    batches = [poison.events]  # available-now without a per-trigger limit: one micro-batch
    assert_same_records(
        records_by_key(poison.outputs["processed"]), ref.basic_records(batches, BASIC), "basic"
    )
    windowed_expected = {
        **ref.tumbling_records(batches, TUMBLING),
        **ref.sliding_records(batches, SLIDING),
        **ref.status_records(batches, STATUS),
    }
    assert_same_records(records_by_key(poison.outputs["windowed"]), windowed_expected, "windowed")
    alerts = ref.anomaly_records(batches, ANOMALY, threshold=2.0, stddev_floor=1.0)
    assert alerts.smallest_margin > 1e-6, "a window is too close to the threshold to compare reliably"
    assert len(alerts.alerts) > 50
    assert_same_records(records_by_key(poison.outputs["alerts"]), alerts.alerts, "anomaly")
    assert poison.files == Counter(poison.events)
