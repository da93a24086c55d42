"""Parsing of raw Kafka records into events, and the dead-letter classification of every kind of bad input."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from spark_jobs import events as ev

pytestmark = pytest.mark.unit

RAW_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "headers array<struct<key:string,value:binary>>"
)
KAFKA_TIME = datetime(2024, 5, 1, 8, 0, 0)


def raw_frame(spark, values: list[bytes | None]):
    rows = [
        (b"k%d" % i, v, "stream_data_topic", 0, 100 + i, KAFKA_TIME, [("origin", b"test")])
        for i, v in enumerate(values)
    ]
    return spark.createDataFrame(rows, RAW_SCHEMA)


def event(**overrides) -> bytes:
    body = {"timestamp": "2024-01-01T12:00:00Z", "value": 42.5, "device_id": "device_001", "status": "Normal"}
    for name, value in overrides.items():
        if value is ...:
            body.pop(name)
        else:
            body[name] = value
    return json.dumps(body).encode()


def parse_one(spark, value: bytes | None):
    (row,) = ev.parse_events(raw_frame(spark, [value])).collect()
    return row


@pytest.mark.parametrize(
    ("text", "expected_utc"),
    [
        ("2024-01-01T12:00:00Z", datetime(2024, 1, 1, 12, 0, 0)),
        ("2024-01-01T12:00:00.250Z", datetime(2024, 1, 1, 12, 0, 0, 250_000)),
        ("2024-01-01T12:00:00+02:00", datetime(2024, 1, 1, 10, 0, 0)),
        ("2024-01-01T12:00:00-05:30", datetime(2024, 1, 1, 17, 30, 0)),
        ("2024-01-01T12:00:00.123456", datetime(2024, 1, 1, 12, 0, 0, 123_456)),  # no offset: taken as UTC
        ("2024-01-01 23:59:59", datetime(2024, 1, 1, 23, 59, 59)),
    ],
)
def test_timestamps_with_or_without_offset_become_utc(spark, text, expected_utc):
    row = parse_one(spark, event(timestamp=text))
    assert row.error_code is None, row.error_message
    # The session time zone is UTC, so collected timestamps are naive UTC wall-clock times.
    assert row.event_time == expected_utc


def test_valid_event_fields_and_integer_value(spark):
    row = parse_one(spark, event(value=7, device_id="device_042", status="Warning"))
    assert (row.device_id, row.value, row.status, row.error_code) == ("device_042", 7.0, "Warning", None)
    assert isinstance(row.value, float)


def test_extra_fields_are_ignored(spark):
    body = json.loads(event())
    body["firmware"] = "1.2.3"
    row = parse_one(spark, json.dumps(body).encode())
    assert row.error_code is None and row.device_id == "device_001"


BAD_RECORDS = [
    # (bytes, expected code, words the message must contain)
    (None, ev.EMPTY_MESSAGE, "no value"),
    (b"", ev.EMPTY_MESSAGE, "no value"),
    (b"\xff\xfe" + event(), ev.INVALID_UTF8, "UTF-8"),
    (b"\xc3\x28", ev.INVALID_UTF8, "UTF-8"),
    (b'{"timestamp": "2024-01-01T12:00:00Z", "value": 4', ev.INVALID_JSON, "not valid JSON"),
    (b"hello", ev.INVALID_JSON, "not valid JSON"),
    (b"[1, 2, 3]", ev.NOT_AN_OBJECT, "ARRAY"),
    (b"42", ev.NOT_AN_OBJECT, "must be a JSON object"),
    (event(timestamp=...), ev.MISSING_FIELD, "'timestamp'"),
    (event(value=...), ev.MISSING_FIELD, "'value'"),
    (event(device_id=...), ev.MISSING_FIELD, "'device_id'"),
    (event(status=...), ev.MISSING_FIELD, "'status'"),
    (event(value=None), ev.MISSING_FIELD, "'value' is missing or null"),
    (event(value="12.5"), ev.INVALID_TYPE, "'value' must be a JSON number, got STRING"),
    (event(value=True), ev.INVALID_TYPE, "'value' must be a JSON number, got BOOLEAN"),
    (event(device_id=5), ev.INVALID_TYPE, "'device_id' must be a string, got BIGINT"),
    (event(status={"a": 1}), ev.INVALID_TYPE, "'status' must be a string, got OBJECT"),
    (event(timestamp=1704110400), ev.INVALID_TYPE, "'timestamp' must be an ISO-8601"),
    (event(timestamp="not-a-time"), ev.INVALID_TIMESTAMP, '"not-a-time"'),
    (event(timestamp="2024-13-45T00:00:00Z"), ev.INVALID_TIMESTAMP, "2024-13-45"),
    (event(timestamp="12345"), ev.INVALID_TIMESTAMP, "ISO-8601"),
    (
        b'{"timestamp":"2024-01-01T12:00:00Z","value":1e400,"device_id":"d","status":"x"}',
        ev.INVALID_VALUE,
        "finite",
    ),
    (event(device_id=""), ev.INVALID_VALUE, "empty"),
]


@pytest.mark.parametrize(("value", "code", "words"), BAD_RECORDS)
def test_each_bad_kind_is_classified(spark, value, code, words):
    row = parse_one(spark, value)
    assert row.error_code == code
    assert words in row.error_message
    assert (row.event_time, row.device_id, row.value, row.status) == (None, None, None, None)


def test_every_error_code_is_exercised():
    assert {code for _, code, _ in BAD_RECORDS} == set(ev.ERROR_CODES)


def test_valid_and_invalid_records_of_one_batch_are_split_without_loss(spark):
    values = [event(device_id="a"), b"junk", event(device_id="b"), None, event(value="x")]
    parsed = ev.parse_events(raw_frame(spark, values)).cache()
    valid = ev.valid_events(parsed).collect()
    dead = ev.dead_letters(parsed, job="basic").collect()
    assert sorted(r.device_id for r in valid) == ["a", "b"]
    assert valid[0].asDict().keys() == {"event_time", "device_id", "value", "status"}
    assert len(valid) + len(dead) == len(values)
    # the original bytes and key travel unchanged
    assert sorted((r.key, r.value) for r in dead) == sorted(
        [(b"k1", b"junk"), (b"k3", None), (b"k4", event(value="x"))], key=lambda t: t[0]
    )


def test_dead_letter_headers_name_reason_job_and_source(spark):
    parsed = ev.parse_events(raw_frame(spark, [b"\xff\xfe"]))
    (row,) = ev.dead_letters(parsed, job="anomaly").collect()
    headers = {h.key: bytes(h.value).decode() for h in row.headers}
    assert headers == {
        "origin": "test",  # the record's own headers are kept
        "sluice.dlq.error_code": "INVALID_UTF8",
        "sluice.dlq.error_message": "the value is not valid UTF-8 text",
        "sluice.dlq.job": "anomaly",
        "sluice.dlq.source_topic": "stream_data_topic",
        "sluice.dlq.source_partition": "0",
        "sluice.dlq.source_offset": "100",
        "sluice.dlq.source_timestamp": "2024-05-01T08:00:00.000Z",
    }
    assert bytes(row.value) == b"\xff\xfe"


def test_long_bad_timestamps_are_cut_in_the_message(spark):
    row = parse_one(spark, event(timestamp="x" * 500))
    assert row.error_code == ev.INVALID_TIMESTAMP
    assert row.error_message.endswith('x..."')
    assert len(row.error_message) < 200


# --- the fast path: compact events read by Spark's JSON reader, the rest parsed as VARIANT -------------------------

COMPACT = {"separators": (",", ":")}


def _object(**fields) -> dict:
    body = {"timestamp": "2024-01-01T12:00:00Z", "value": 42.5, "device_id": "device_001", "status": "Normal"}
    body.update(fields)
    return body


# Each body written two ways: compact (the generator's layout, taking the fast path when its strings are plain
# ASCII) and with spaces (the VARIANT parse). Both ways must give the same event, or the same dead-letter reason.
SAME_EITHER_WAY = [
    _object(),
    _object(value=0),
    _object(value=-0.0),
    _object(value=12),
    _object(value=1e2),
    _object(value=1.5e-7),
    _object(value=9007199254740993),  # above 2**53: both round the digits to the nearest double
    _object(value=123456789012345678901234567890),
    _object(timestamp="2024-01-01T12:00:00.123456789+02:00"),
    _object(timestamp="2024-13-45T00:00:00Z"),  # compact, but not a date: INVALID_TIMESTAMP either way
    _object(timestamp="not-a-time"),
    _object(device_id=""),  # empty: INVALID_VALUE either way
    _object(status="Dänger"),  # not plain ASCII: always the VARIANT parse
    _object(device_id='dev"ice'),  # an escaped quote: always the VARIANT parse
    _object(device_id="dev\\ice"),
]


@pytest.mark.parametrize(
    "body", SAME_EITHER_WAY, ids=[json.dumps(b, **COMPACT)[:60] for b in SAME_EITHER_WAY]
)
def test_compact_and_spaced_json_parse_the_same(spark, body):
    compact, spaced = json.dumps(body, **COMPACT).encode(), json.dumps(body).encode()
    rows = ev.parse_events(raw_frame(spark, [compact, spaced])).collect()
    fields = ("event_time", "device_id", "value", "status", "error_code", "error_message")
    compact_row, spaced_row = ([getattr(r, f) for f in fields] for r in rows)
    assert compact_row == spaced_row


def test_an_infinite_compact_value_is_refused_as_the_variant_parse_refuses_it(spark):
    compact = b'{"timestamp":"2024-01-01T12:00:00Z","value":1e400,"device_id":"d","status":"s"}'
    (row,) = ev.parse_events(raw_frame(spark, [compact])).collect()
    spaced = parse_one(spark, compact.replace(b",", b", "))
    assert row.event_time is None and (row.error_code, row.error_message) == (
        spaced.error_code,
        spaced.error_message,
    )
    assert row.error_code is not None


def test_the_generators_events_take_the_fast_path():
    import re

    from spark_jobs.generator.model import EVENT, EventFactory, GeneratorConfig

    pattern = re.compile(ev.CANONICAL_EVENT_PATTERN.replace(r"\z", r"\Z"))
    factory = EventFactory(GeneratorConfig(seed=3, late_fraction=0.1))
    messages = [factory.message(i, KAFKA_TIME) for i in range(500)]
    assert all(pattern.match(m.value.decode()) for m in messages if m.kind == EVENT)
