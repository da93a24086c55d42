"""Parsing of raw Kafka records into events, and the dead-letter classification of every kind of bad input."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from spark_jobs import events as ev

pytestmark = pytest.mark.unit

RAW_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "headers array<struct<key:string,value:binary>>"
)
# An hour after the events' own time (2024-01-01T12:00:00Z): within the default bounds of event time.
KAFKA_TIME = datetime(2024, 1, 1, 13, 0, 0)


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
    # values JSON has no words for, and JSON a parser must refuse
    (event().replace(b"42.5", b"NaN"), ev.INVALID_JSON, "not valid JSON"),
    (event().replace(b"42.5", b"Infinity"), ev.INVALID_JSON, "not valid JSON"),
    (event().replace(b"42.5", b"-1e999"), ev.INVALID_VALUE, "finite"),
    (b"[" * 10_000 + b"]" * 10_000, ev.INVALID_JSON, "nests deeper"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, ev.INVALID_JSON, "nests deeper"),
    (event().replace(b'"value": 42.5', b'"value": 1, "value": 2'), ev.INVALID_JSON, "repeats a key"),
    # bounds: size, field length, event time
    (b"x" * 65_535, ev.RECORD_TOO_LARGE, "65537 bytes; at most 65536"),  # with the 2-byte key "k0"
    (event(device_id="d" * 257), ev.FIELD_TOO_LONG, "'device_id' is 257 characters long; at most 256"),
    (event(status="s" * 300), ev.FIELD_TOO_LONG, "'status' is 300 characters long"),
    (
        event(timestamp="9999-01-01T00:00:00Z"),
        ev.TIMESTAMP_OUT_OF_RANGE,
        "9999-01-01T00:00:00.000Z is more than 1h ahead",
    ),
    (
        event(timestamp="1970-01-01T00:00:00Z"),
        ev.TIMESTAMP_OUT_OF_RANGE,
        "1970-01-01T00:00:00.000Z is more than 168h behind the record's Kafka timestamp 2024-01-01T13:00:00.000Z",
    ),
]


@pytest.mark.parametrize(("value", "code", "words"), BAD_RECORDS)
def test_each_bad_kind_is_classified(spark, value, code, words):
    row = parse_one(spark, value)
    assert row.error_code == code
    assert words in row.error_message
    assert (row.event_time, row.device_id, row.value, row.status) == (None, None, None, None)


def test_every_error_code_is_exercised():
    assert {code for _, code, _ in BAD_RECORDS} == set(ev.ERROR_CODES)


def test_fields_of_exactly_the_limits_are_accepted(spark):
    # 65,536 bytes of key and value: the 2-byte key "k0" and a 65,534-byte event padded with an ignored field
    body = event(device_id="d" * 256, status="s" * 256)
    padded = body[:-1] + b', "pad": "' + b"p" * (65_534 - len(body) - 11) + b'"}'
    assert len(padded) == 65_534
    row = parse_one(spark, padded)
    assert (row.error_code, len(row.device_id), len(row.status)) == (None, 256, 256)


def _parse_at(spark, event_times: list[str], *, now: str, limits=ev.DEFAULT_LIMITS):
    values = [event(timestamp=t) for t in event_times]
    parsed = ev.parse_events(raw_frame(spark, values), limits, now=F.lit(now).cast("timestamp"))
    return [(r.error_code, r.event_time) for r in parsed.collect()]


def test_event_time_bounds_are_inclusive(spark):
    # Kafka time 2024-01-01T13:00:00Z; processing time 2024-01-01T14:00:00Z: an event may be up to 15:00:00 (1 h
    # ahead of processing) and back to 2023-12-25T13:00:00 (7 days behind its Kafka time), both ends included.
    got = _parse_at(
        spark,
        [
            "2024-01-01T15:00:00Z",
            "2024-01-01T15:00:00.001Z",
            "2023-12-25T13:00:00Z",
            "2023-12-25T12:59:59.999Z",
        ],
        now="2024-01-01 14:00:00",
    )
    assert got == [
        (None, datetime(2024, 1, 1, 15)),
        (ev.TIMESTAMP_OUT_OF_RANGE, None),
        (None, datetime(2023, 12, 25, 13)),
        (ev.TIMESTAMP_OUT_OF_RANGE, None),
    ]


def test_no_bound_accepts_any_time(spark):
    unbounded = ev.InputLimits(max_ahead_ms=None, max_behind_ms=None)
    got = _parse_at(
        spark, ["9999-01-01T00:00:00Z", "1970-01-01T00:00:00Z"], now="2024-01-01 14:00:00", limits=unbounded
    )
    assert got == [(None, datetime(9999, 1, 1)), (None, datetime(1970, 1, 1))]


def _letter(spark, value, *, key=b"k", headers=(), max_bytes=ev.DEAD_LETTER_MAX_BYTES):
    rows = [(key, value, "stream_data_topic", 2, 7, KAFKA_TIME, list(headers))]
    parsed = ev.parse_events(spark.createDataFrame(rows, RAW_SCHEMA))
    (row,) = ev.dead_letters(parsed, job="basic", max_bytes=max_bytes).collect()
    return row


def _size(row) -> int:
    """Key, value and headers of a record, in bytes (what the dead-letter topic must take, before framing)."""
    headers = sum(len(h.key.encode()) + len(bytes(h.value or b"")) for h in row.headers)
    return len(bytes(row.key or b"")) + len(bytes(row.value or b"")) + headers


def test_forged_dead_letter_headers_are_kept_as_previous_ones(spark):
    forged = [("sluice.dlq.error_code", b"FORGED"), ("sluice.dlq.previous.job", b"earlier"), ("x", b"\xff")]
    row = _letter(spark, b"junk", headers=forged)
    headers = [(h.key, bytes(h.value)) for h in row.headers]
    assert headers[:3] == [
        ("sluice.dlq.previous.error_code", b"FORGED"),
        ("sluice.dlq.previous.previous.job", b"earlier"),
        ("x", b"\xff"),
    ]
    assert [v for k, v in headers if k == "sluice.dlq.error_code"] == [b"INVALID_JSON"]


def test_non_utf8_keys_and_headers_are_carried_as_bytes(spark):
    rows = [
        (b"\xff\xfe", event(), "t", 0, 1, KAFKA_TIME, [("h", b"\xc3\x28")]),
        (b"\xff\xfe", b"junk", "t", 0, 2, KAFKA_TIME, [("h", b"\xc3\x28")]),
    ]
    parsed = ev.parse_events(spark.createDataFrame(rows, RAW_SCHEMA))
    assert [r.error_code for r in parsed.collect()] == [None, ev.INVALID_JSON]
    (letter,) = ev.dead_letters(parsed, job="basic").collect()
    assert bytes(letter.key) == b"\xff\xfe" and (letter.headers[0].key, bytes(letter.headers[0].value)) == (
        "h",
        b"\xc3\x28",
    )


def test_a_dead_letter_that_fits_is_whole(spark):
    value = (
        b"x" * 30_000
    )  # not JSON; 30,001 bytes of key and value with its headers come to well under 39,000
    row = _letter(spark, value, max_bytes=40_000)
    assert bytes(row.value) == value and bytes(row.key) == b"k"
    assert not any(h.key == "sluice.dlq.truncated" for h in row.headers)


def test_a_dead_letter_too_big_for_its_topic_keeps_a_prefix_its_size_and_hash(spark):
    key, value = (
        b"K" * 2_000,
        b"x" * 70_000,
    )  # 72,000 bytes: RECORD_TOO_LARGE, and bigger than the topic takes
    row = _letter(spark, value, key=key, headers=[("origin", b"test")], max_bytes=40_000)
    headers = {h.key: bytes(h.value).decode() for h in row.headers}
    assert headers["sluice.dlq.error_code"] == ev.RECORD_TOO_LARGE
    assert headers["origin"] == "test"  # small headers are kept
    assert headers["sluice.dlq.truncated"] == "true"
    assert headers["sluice.dlq.original_key_bytes"] == "2000"
    assert headers["sluice.dlq.original_key_sha256"] == hashlib.sha256(key).hexdigest()
    assert headers["sluice.dlq.original_value_bytes"] == "70000"
    assert headers["sluice.dlq.original_value_sha256"] == hashlib.sha256(value).hexdigest()
    assert headers["sluice.dlq.original_headers_dropped"] == "0"
    assert bytes(row.key) == key[:1024]
    assert bytes(row.value) == value[: len(row.value)]
    # filled up to the limit less 1 KiB for Kafka's framing, not beyond
    assert _size(row) == 40_000 - 1024


def test_a_dead_letter_drops_headers_too_big_to_keep_and_counts_them(spark):
    headers = [(f"h{i}", b"v" * 1000) for i in range(20)]  # 20 KB of headers
    row = _letter(spark, b"y" * 60_000, headers=headers, max_bytes=40_000)
    names = [h.key for h in row.headers]
    assert not any(n.startswith("h") for n in names)
    kept = {h.key: bytes(h.value).decode() for h in row.headers}
    assert kept["sluice.dlq.original_headers_dropped"] == "20"
    assert kept["sluice.dlq.original_headers_bytes"] == str(
        20 * (2 + 1000) + 10 * 1
    )  # h0..h9: 2 chars, h10..: 3
    assert _size(row) == 40_000 - 1024


def test_a_dead_letter_limit_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 32768"):
        ev.dead_letter_columns("basic", max_bytes=1000)


def test_a_record_without_a_kafka_timestamp_is_not_refused_as_behind(spark):
    rows = [(b"k", event(), "t", 0, 1, None, None)]
    (row,) = ev.parse_events(spark.createDataFrame(rows, RAW_SCHEMA)).collect()
    assert row.error_code is None


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
        "sluice.dlq.source_timestamp": "2024-01-01T13:00:00.000Z",
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


# --- a job's hot path: screened, and only the invalid records explained ---------------------------------------------


def test_screening_keeps_what_parsing_keeps_and_the_invalid_ones_get_the_same_reasons(spark):
    """A job screens its source (screen_events) and explains only the invalid records (explain_invalid, parsing
    them again at the time they were checked): together they must agree with parse_events on every record."""
    values = [value for value, _, _ in BAD_RECORDS]
    for body in SAME_EITHER_WAY:
        values += [json.dumps(body, **COMPACT).encode(), json.dumps(body).encode()]
    raw = raw_frame(spark, values)
    # The processing time of test_event_time_bounds_are_inclusive: BAD_RECORDS' far-future event is refused.
    now = F.lit("2024-01-01 14:00:00").cast("timestamp")
    parsed = {r.source_offset: r for r in ev.parse_events(raw, now=now).collect()}
    screened = ev.screen_events(raw, now=now)
    event_fields = ("event_time", "device_id", "value", "status")
    kept = {r.source_offset: r for r in screened.collect()}
    assert kept.keys() == parsed.keys()
    for offset, row in kept.items():
        expected = parsed[offset]
        assert [getattr(row, f) for f in event_fields] == [getattr(expected, f) for f in event_fields], offset
        assert (row.checked_at is None) == (expected.error_code is None), (offset, expected.error_code)
    explained = ev.explain_invalid(screened.where(F.col("checked_at").isNotNull())).collect()
    reasons = {r.source_offset: (r.error_code, r.error_message) for r in explained}
    assert reasons == {o: (r.error_code, r.error_message) for o, r in parsed.items() if r.error_code}
    assert {code for code, _ in reasons.values()} == set(ev.ERROR_CODES)
    # and the explained rows keep the source columns a dead letter is made of
    assert {r.raw_value for r in explained} == {parsed[o].raw_value for o in reasons}
