"""The sensor event: its schema, how raw Kafka records are parsed, and why a record is sent to the dead letters.

A sensor event is the lab's JSON object ``{"timestamp", "value", "device_id", "status"}``:

* ``timestamp`` — an ISO-8601 date-time string; with an offset (``Z``, ``+02:00``) it is converted to UTC, without
  one it is taken as UTC (the Spark session time zone is UTC);
* ``value`` — a finite JSON number;
* ``device_id`` and ``status`` — non-empty JSON strings of at most :attr:`InputLimits.max_field_length`
  characters (256 by default).

Other fields are ignored. The record (key and value) may hold at most :attr:`InputLimits.max_record_bytes` bytes
(64 KiB by default), and the event's time must lie within bounds (:class:`InputLimits`): at most an hour ahead of
the time the micro-batch runs (Spark's batch timestamp, kept in the query's offset log, so a micro-batch run again
after a crash decides the same), and at most 7 days behind the record's Kafka timestamp (when it was produced, so
a backlog read late is not refused for being read late). One far-future event would otherwise move the watermark
past every real event, and a far-past one open windows that are never useful. A record that is not such an object is never dropped and never stops a job: it gets an
``error_code`` (one of :data:`ERROR_CODES`) and an ``error_message`` and goes to the dead-letter topic with its
original bytes. Everything here is a pure ``DataFrame -> DataFrame`` transform over Spark's native functions (the
JSON is parsed once, as a VARIANT); it works on batch and streaming frames alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

FIELDS = ("timestamp", "value", "device_id", "status")

EMPTY_MESSAGE = "EMPTY_MESSAGE"
INVALID_UTF8 = "INVALID_UTF8"
INVALID_JSON = "INVALID_JSON"
NOT_AN_OBJECT = "NOT_AN_OBJECT"
MISSING_FIELD = "MISSING_FIELD"
INVALID_TYPE = "INVALID_TYPE"
INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
INVALID_VALUE = "INVALID_VALUE"
RECORD_TOO_LARGE = "RECORD_TOO_LARGE"
FIELD_TOO_LONG = "FIELD_TOO_LONG"
TIMESTAMP_OUT_OF_RANGE = "TIMESTAMP_OUT_OF_RANGE"

#: Every reason a record can be dead-lettered for, in the order the checks run (the first failing one is kept).
ERROR_CODES = (
    EMPTY_MESSAGE,
    RECORD_TOO_LARGE,
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_TYPE,
    INVALID_TIMESTAMP,
    INVALID_VALUE,
    FIELD_TOO_LONG,
    TIMESTAMP_OUT_OF_RANGE,
)

#: Header names put on every dead-letter record (the value of the record is the original bytes, untouched).
DLQ_HEADER_PREFIX = "sluice.dlq."
DLQ_HEADERS = (
    "error_code",
    "error_message",
    "job",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_timestamp",
)

#: Headers added to a dead letter whose original does not fit the dead-letter topic (see :func:`dead_letters`).
TRUNCATION_HEADERS = (
    "truncated",
    "original_key_bytes",
    "original_key_sha256",
    "original_value_bytes",
    "original_value_sha256",
    "original_headers_bytes",
    "original_headers_dropped",
)
#: An input record's own ``sluice.dlq.*`` headers (forged, or left by an earlier dead-lettering) are kept under
#: this prefix, so the dead letter's ``sluice.dlq.*`` headers are always this job's.
PREVIOUS_HEADER_PREFIX = DLQ_HEADER_PREFIX + "previous."
#: The largest record the dead-letter topic takes by default: the producer's ``max.request.size`` (1 MiB), just
#: under Kafka's default ``max.message.bytes``. Key, value and headers must fit it with room for the encoding.
DEAD_LETTER_MAX_BYTES = 1_048_576
MIN_DEAD_LETTER_BYTES = 32_768
_KEY_KEPT = 1024
_HEADERS_KEPT = 16_384
_ENCODING_MARGIN = 1024

#: Each column of a Kafka record (but the optional ``headers``, kept as they are) and its name in a parsed row.
_KAFKA_COLUMNS = {
    "key": "key",
    "value": "raw_value",
    "topic": "source_topic",
    "partition": "source_partition",
    "offset": "source_offset",
    "timestamp": "source_timestamp",
}
#: The columns :func:`parse_events` keeps from the source record, so a dead letter loses nothing.
SOURCE_COLUMNS = (*_KAFKA_COLUMNS.values(), "headers")

#: ISO-8601 date-times Spark's cast understands: date, 'T' or space, hh:mm[:ss[.fraction]], optional offset.
ISO_TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?$"

#: How timestamps are written in every JSON output and key (UTC, millisecond precision, 'Z').
ISO_OUTPUT_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"

_NUMERIC_TYPE = r"^(TINYINT|SMALLINT|INT|BIGINT|FLOAT|DOUBLE|DECIMAL)"

# The compact event as the lab's producers write it: exactly the four fields in order, strings of printable ASCII
# without escapes (so invalid UTF-8 never matches), the value a JSON number. Such a record is valid JSON with no
# duplicate key, and Spark's JSON reader gives the same values the VARIANT parse does (both round a number's
# decimal text to the nearest double). It takes the fast path; every other record the VARIANT parse decides.
_PLAIN = r"[\x20\x21\x23-\x5b\x5d-\x7e]+"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
CANONICAL_EVENT_PATTERN = (
    rf'^\{{"timestamp":"{_PLAIN}","value":{_NUMBER},"device_id":"{_PLAIN}","status":"{_PLAIN}"\}}\z'
)
_CANONICAL_SCHEMA = "timestamp string, value double, device_id string, status string"
_SHOWN_CHARS = 60


def _field(json: Column, name: str) -> Column:
    return F.variant_get(json, f"$.{name}", "variant")


def _kind(json: Column, name: str) -> Column:
    """The JSON type of one field as Spark names it (STRING, BIGINT, DOUBLE, BOOLEAN, VOID for null...)."""
    return F.schema_of_variant(_field(json, name))


def _shown(text: Column) -> Column:
    """A string value quoted for an error message, cut to a readable length."""
    cut = F.when(
        F.length(text) > _SHOWN_CHARS, F.concat(F.substring(text, 1, _SHOWN_CHARS), F.lit("..."))
    ).otherwise(text)
    return F.concat(F.lit('"'), cut, F.lit('"'))


@dataclass(frozen=True)
class InputLimits:
    """What a well-formed event must also respect to be valid (see the module docstring); None: no bound.

    * ``max_ahead_ms``: how far the event's time may be ahead of the micro-batch's processing time;
    * ``max_behind_ms``: how far it may be behind the record's Kafka timestamp;
    * ``max_record_bytes``: the most bytes of key and value together;
    * ``max_field_length``: the most characters of ``device_id`` and of ``status``.
    """

    max_ahead_ms: int | None = 3_600_000
    max_behind_ms: int | None = 7 * 24 * 3_600_000
    max_record_bytes: int = 65_536
    max_field_length: int = 256


DEFAULT_LIMITS = InputLimits()


def _bytes(column: str | Column) -> Column:
    """Bytes of a binary or string column; 0 for null."""
    return F.coalesce(F.octet_length(column), F.lit(0))


def _malformed_reason(j: Column) -> Column:
    """Why a record that is not a well-formed event is not one (the first failing check; see :data:`ERROR_CODES`)."""
    value_kind, device_kind, status_kind = (F.col(f"_{n}_kind") for n in ("value", "device", "status"))
    kinds = {
        "timestamp": _kind(j, "timestamp"),  # needed only to explain an invalid row
        "value": value_kind,
        "device_id": device_kind,
        "status": status_kind,
    }
    reason = F.when(
        ~F.is_valid_utf8(F.col("raw_value").cast("string")),
        F.array(F.lit(INVALID_UTF8), F.lit("the value is not valid UTF-8 text")),
    )
    reason = reason.when(
        j.isNull(),
        F.array(
            F.lit(INVALID_JSON),
            F.lit(
                "the value is not valid JSON (or it repeats a key, or nests deeper than the parser allows)"
            ),
        ),
    )
    reason = reason.when(
        ~F.schema_of_variant(j).startswith("OBJECT"),
        F.array(
            F.lit(NOT_AN_OBJECT),
            F.concat(
                F.lit(
                    "the value must be a JSON object with fields timestamp, value, device_id, status; got "
                ),
                F.regexp_extract(F.schema_of_variant(j), r"^[A-Z]+", 0),
            ),
        ),
    )
    for name in FIELDS:
        reason = reason.when(
            kinds[name].isNull() | (kinds[name] == "VOID"),
            F.array(F.lit(MISSING_FIELD), F.lit(f"field '{name}' is missing or null")),
        )
    expected = {
        "timestamp": ("STRING", "an ISO-8601 date-time string"),
        "value": (None, "a JSON number"),
        "device_id": ("STRING", "a string"),
        "status": ("STRING", "a string"),
    }
    for name, (kind, wording) in expected.items():
        wrong = ~kinds[name].rlike(_NUMERIC_TYPE) if kind is None else kinds[name] != kind
        reason = reason.when(
            wrong,
            F.array(
                F.lit(INVALID_TYPE),
                F.concat(
                    F.lit(f"field '{name}' must be {wording}, got "),
                    F.regexp_extract(kinds[name], r"^[A-Z]+", 0),
                ),
            ),
        )
    reason = reason.when(
        F.col("_event_time").isNull(),
        F.array(
            F.lit(INVALID_TIMESTAMP),
            F.concat(
                F.lit("field 'timestamp' is not an ISO-8601 date-time such as 2024-01-01T12:00:00Z: "),
                _shown(F.col("_ts_text")),
            ),
        ),
    )
    reason = reason.when(
        ~(F.abs(F.col("_value")) < F.lit(float("inf"))),
        F.array(F.lit(INVALID_VALUE), F.lit("field 'value' must be a finite number")),
    )
    return reason.otherwise(
        F.array(F.lit(INVALID_VALUE), F.lit("fields 'device_id' and 'status' must not be empty strings"))
    )


def _iso(time: Column) -> Column:
    return F.date_format(time, ISO_OUTPUT_FORMAT)


def _duration(millis: int) -> str:
    hours, rest = divmod(millis, 3_600_000)
    return f"{hours}h" if not rest else f"{millis // 1000}s" if not millis % 1000 else f"{millis}ms"


def _out_of_range(bound_ms: int | None, relation: str, reference: Column, flag: str) -> Column:
    """TIMESTAMP_OUT_OF_RANGE and why: the event's time, the bound, and the time it is measured from."""
    return F.array(
        F.lit(TIMESTAMP_OUT_OF_RANGE),
        F.concat(
            F.lit("field 'timestamp' "),
            _iso(F.col("_time")),
            F.lit(f" is more than {_duration(bound_ms or 0)} {relation} "),
            _iso(reference),
            F.lit(f" ({flag})"),
        ),
    )


@dataclass(frozen=True)
class _Checked:
    """The records staged for a decision (the event as read, and what explains a refusal), and the checks."""

    staged: DataFrame
    valid: Column
    too_long: Column
    ahead: Column


def _check(raw: DataFrame, limits: InputLimits, now: Column | None) -> _Checked:
    """Read every record as an event both ways (see the module docstring) and check it against ``limits``."""
    now = F.current_timestamp() if now is None else now
    headers = (
        F.col("headers")
        if "headers" in raw.columns
        else F.lit(None).cast("array<struct<key:string,value:binary>>")
    )
    record_bytes = _bytes("key") + _bytes("value")
    fits = record_bytes <= F.lit(limits.max_record_bytes)
    text = F.col("value").cast("string")
    # Fast path: a canonical event is read with Spark's JSON reader; only the other records are parsed as VARIANT
    # (in a CASE, so a canonical record never pays for it). A record over the size limit is parsed neither way.
    canonical = F.when(fits & text.rlike(CANONICAL_EVENT_PATTERN), F.from_json(text, _CANONICAL_SCHEMA))
    staged = raw.select(
        *[F.col(kafka).alias(source) for kafka, source in _KAFKA_COLUMNS.items()],
        headers.alias("headers"),
        now.alias("_now"),
        record_bytes.alias("_record_bytes"),
        canonical.alias("_canonical"),
    )
    fast_ts = F.col("_canonical.timestamp")
    staged = staged.select(
        "*", F.when(fast_ts.rlike(ISO_TIMESTAMP_PATTERN), fast_ts.try_cast("timestamp")).alias("_fast_time")
    )
    fast_valid = F.coalesce(
        F.col("_fast_time").isNotNull() & (F.abs(F.col("_canonical.value")) < F.lit(float("inf"))),
        F.lit(False),
    )
    staged = staged.select("*", fast_valid.alias("_fast"))
    parse = ~F.col("_fast") & (F.col("_record_bytes") <= F.lit(limits.max_record_bytes))
    staged = staged.select(
        "*", F.when(parse, F.try_parse_json(F.col("raw_value").cast("string"))).alias("_json")
    )
    j = F.col("_json")
    ts_text = F.try_variant_get(j, "$.timestamp", "string")
    staged = staged.select(
        "*",
        ts_text.alias("_ts_text"),
        F.when(ts_text.rlike(ISO_TIMESTAMP_PATTERN), ts_text.try_cast("timestamp")).alias("_event_time"),
        F.try_variant_get(j, "$.value", "double").alias("_value"),
        F.try_variant_get(j, "$.device_id", "string").alias("_device_id"),
        F.try_variant_get(j, "$.status", "string").alias("_status"),
        _kind(j, "value").alias("_value_kind"),
        _kind(j, "device_id").alias("_device_kind"),
        _kind(j, "status").alias("_status_kind"),
    )
    finite = F.abs(F.col("_value")) < F.lit(float("inf"))
    slow_valid = (
        F.col("_event_time").isNotNull()
        & F.col("_value_kind").rlike(_NUMERIC_TYPE)
        & finite
        & (F.col("_device_kind") == "STRING")
        & (F.length("_device_id") > 0)
        & (F.col("_status_kind") == "STRING")
        & (F.length("_status") > 0)
    )
    fast = F.col("_fast")
    # The event as read (either way): null unless it is well-formed.
    staged = staged.select(
        "*",
        F.coalesce(fast | slow_valid, F.lit(False)).alias("_well_formed"),
        F.when(fast, F.col("_fast_time")).when(slow_valid, F.col("_event_time")).alias("_time"),
        F.when(fast, F.col("_canonical.device_id")).when(slow_valid, F.col("_device_id")).alias("_device"),
        F.when(fast, F.col("_canonical.value")).when(slow_valid, F.col("_value")).alias("_number"),
        F.when(fast, F.col("_canonical.status")).when(slow_valid, F.col("_status")).alias("_state"),
    )
    longest = limits.max_field_length
    too_long = (F.length("_device") > longest) | (F.length("_state") > longest)
    time_us = F.unix_micros("_time")
    ahead = F.lit(False)
    if limits.max_ahead_ms is not None:
        ahead = F.coalesce(time_us > F.unix_micros("_now") + F.lit(limits.max_ahead_ms * 1000), F.lit(False))
    behind = F.lit(False)
    if limits.max_behind_ms is not None:
        behind = F.coalesce(
            time_us < F.unix_micros("source_timestamp") - F.lit(limits.max_behind_ms * 1000), F.lit(False)
        )
    valid = F.col("_well_formed") & ~too_long & ~ahead & ~behind
    return _Checked(staged, valid, too_long, ahead)


def parse_events(
    raw: DataFrame, limits: InputLimits = DEFAULT_LIMITS, *, now: Column | None = None
) -> DataFrame:
    """Parse Kafka records (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp`` and optionally
    ``headers``) into events.

    Returns one row per input record with ``event_time`` (timestamp, UTC), ``device_id``, ``value`` (double),
    ``status`` — null when the record is invalid — plus ``error_code`` / ``error_message`` (null when valid) and the
    source columns ``key``, ``raw_value``, ``source_topic``, ``source_partition``, ``source_offset``,
    ``source_timestamp``, ``headers`` needed to dead-letter it without loss.

    ``limits`` bound the record's size, the fields' lengths and the event's time; ``now`` is the processing time
    (default: ``current_timestamp()``, which in a streaming query is the micro-batch's timestamp).

    A job's hot path is :func:`screen_events`, which decides the same without the reasons.
    """
    checked = _check(raw, limits, now)
    staged, valid, too_long, ahead = checked.staged, checked.valid, checked.too_long, checked.ahead
    j, longest = F.col("_json"), limits.max_field_length
    # Only invalid rows reach this CASE (it sits in the ELSE of `valid`), so the costlier checks cost valid rows nothing.
    reason = F.when(
        F.col("raw_value").isNull() | (F.length("raw_value") == 0),
        F.array(F.lit(EMPTY_MESSAGE), F.lit("the record has no value")),
    )
    reason = reason.when(
        F.col("_record_bytes") > F.lit(limits.max_record_bytes),
        F.array(
            F.lit(RECORD_TOO_LARGE),
            F.concat(
                F.lit("the record's key and value are "),
                F.col("_record_bytes").cast("string"),
                F.lit(f" bytes; at most {limits.max_record_bytes} are accepted (--max-record-bytes)"),
            ),
        ),
    )
    reason = reason.when(~F.col("_well_formed"), _malformed_reason(j))
    reason = reason.when(
        too_long,
        F.array(
            F.lit(FIELD_TOO_LONG),
            F.concat(
                F.lit("field '"),
                F.when(F.length("_device") > longest, F.lit("device_id")).otherwise(F.lit("status")),
                F.lit("' is "),
                F.greatest(F.length("_device"), F.length("_state")).cast("string"),
                F.lit(f" characters long; at most {longest} are accepted (--max-field-length)"),
            ),
        ),
    )
    reason = reason.when(
        ahead,
        _out_of_range(
            limits.max_ahead_ms, "ahead of the processing time", F.col("_now"), "--max-event-ahead"
        ),
    )
    reason = reason.otherwise(
        _out_of_range(
            limits.max_behind_ms,
            "behind the record's Kafka timestamp",
            F.col("source_timestamp"),
            "--max-event-behind",
        )
    )
    error = F.when(valid, F.lit(None).cast("array<string>")).otherwise(reason)
    kept = F.col("_error").isNull()
    out = staged.select(
        F.col("_time").alias("event_time"),
        F.col("_device").alias("device_id"),
        F.col("_number").alias("value"),
        F.col("_state").alias("status"),
        error.alias("_error"),
        *SOURCE_COLUMNS,
    )
    return out.select(
        F.when(kept, F.col("event_time")).alias("event_time"),
        F.when(kept, F.col("device_id")).alias("device_id"),
        F.when(kept, F.col("value")).alias("value"),
        F.when(kept, F.col("status")).alias("status"),
        F.col("_error")[0].alias("error_code"),
        F.col("_error")[1].alias("error_message"),
        *SOURCE_COLUMNS,
    )


#: What :func:`screen_events` adds to an invalid record: the processing time its event time was checked against.
CHECKED_AT = "checked_at"


def screen_events(
    raw: DataFrame, limits: InputLimits = DEFAULT_LIMITS, *, now: Column | None = None
) -> DataFrame:
    """:func:`parse_events` without the reasons, for a job's hot path: ``event_time``, ``device_id``, ``value``,
    ``status`` — all null exactly when the record is invalid —, ``checked_at`` (the processing time the record
    was checked at; null when valid) and the source columns. :func:`explain_invalid` gives the reasons of the
    invalid rows.

    The decision is :func:`parse_events`' own (the same checks); what it leaves out is building the error codes
    and messages, a large expression Spark would generate into the one method every row runs: the windowed job's
    is 5,505 bytes of bytecode without it and 10,950 with it, past the 8,000 HotSpot compiles by default (see
    ``spark_jobs.session.JIT_OPTIONS``), and slower for the valid records too (README, Performance).
    """
    checked = _check(raw, limits, now)
    valid = checked.valid
    return checked.staged.select(
        F.when(valid, F.col("_time")).alias("event_time"),
        F.when(valid, F.col("_device")).alias("device_id"),
        F.when(valid, F.col("_number")).alias("value"),
        F.when(valid, F.col("_state")).alias("status"),
        F.when(~valid, F.col("_now")).alias(CHECKED_AT),
        *SOURCE_COLUMNS,
    )


def explain_invalid(screened: DataFrame, limits: InputLimits = DEFAULT_LIMITS) -> DataFrame:
    """:func:`parse_events` of rows :func:`screen_events` found invalid (``checked_at`` and the source columns):
    each is parsed again from its source columns, checked at its ``checked_at``, so it gets the same decision
    and its ``error_code`` and ``error_message``."""
    raw = screened.select(
        *[F.col(source).alias(kafka) for kafka, source in _KAFKA_COLUMNS.items()], "headers", CHECKED_AT
    )
    return parse_events(raw, limits, now=F.col(CHECKED_AT))


def valid_events(parsed: DataFrame) -> DataFrame:
    """The valid events of :func:`parse_events` or :func:`screen_events`: ``event_time, device_id, value,
    status`` (both leave ``event_time`` null exactly for the invalid records)."""
    return parsed.where(F.col("event_time").isNotNull()).select("event_time", "device_id", "value", "status")


def _header(name: str, value: Column) -> Column:
    return F.struct(
        F.lit(DLQ_HEADER_PREFIX + name).alias("key"), value.cast("string").cast("binary").alias("value")
    )


def _headers_bytes(headers: Column) -> Column:
    """Bytes of a record's headers: every name (UTF-8) and value."""
    return F.aggregate(
        headers,
        F.lit(0).cast("long"),
        lambda total, h: total + _bytes(h.key) + _bytes(h.value),
    )


def dead_letter_columns(job: str, *, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> list[Column]:
    """The columns of a dead-letter record made of a row of :func:`parse_events` (see :func:`dead_letters`)."""
    if max_bytes < MIN_DEAD_LETTER_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_DEAD_LETTER_BYTES}, got {max_bytes}")
    ours = F.array(
        _header("error_code", F.col("error_code")),
        _header("error_message", F.col("error_message")),
        _header("job", F.lit(job)),
        _header("source_topic", F.col("source_topic")),
        _header("source_partition", F.col("source_partition")),
        _header("source_offset", F.col("source_offset")),
        _header("source_timestamp", F.date_format("source_timestamp", ISO_OUTPUT_FORMAT)),
    )
    original = F.transform(
        F.coalesce(F.col("headers"), F.array().cast("array<struct<key:string,value:binary>>")),
        lambda h: F.struct(
            F.when(
                h.key.startswith(DLQ_HEADER_PREFIX),
                F.concat(F.lit(PREVIOUS_HEADER_PREFIX), h.key.substr(len(DLQ_HEADER_PREFIX) + 1, 1 << 20)),
            )
            .otherwise(h.key)
            .alias("key"),
            h.value.alias("value"),
        ),
    )
    key_bytes, value_bytes = _bytes("key"), _bytes("raw_value")
    original_bytes = _headers_bytes(original)
    limit = max_bytes - _ENCODING_MARGIN  # what key, value and headers may hold; the rest is Kafka's framing
    fits = key_bytes + value_bytes + original_bytes + _headers_bytes(ours) <= F.lit(limit)
    # Too big for the dead-letter topic: a prefix of the bytes, and what identifies the whole.
    key_cut = F.when(key_bytes <= _KEY_KEPT, F.col("key")).otherwise(F.col("key").substr(1, _KEY_KEPT))
    headers_cut = F.when(original_bytes <= _HEADERS_KEPT, original).otherwise(
        F.array().cast("array<struct<key:string,value:binary>>")
    )
    summary = F.array(
        _header("truncated", F.lit("true")),
        _header("original_key_bytes", key_bytes),
        _header("original_key_sha256", F.sha2(F.coalesce(F.col("key"), F.lit(b"")), 256)),
        _header("original_value_bytes", value_bytes),
        _header("original_value_sha256", F.sha2(F.coalesce(F.col("raw_value"), F.lit(b"")), 256)),
        _header("original_headers_bytes", original_bytes),
        _header(
            "original_headers_dropped", F.when(original_bytes <= _HEADERS_KEPT, 0).otherwise(F.size(original))
        ),
    )
    kept_headers = F.concat(headers_cut, ours, summary)
    room = F.lit(limit) - _bytes(key_cut) - _headers_bytes(kept_headers)
    value_cut = F.col("raw_value").substr(F.lit(1), F.greatest(room, F.lit(0)).cast("int"))
    return [
        F.when(fits, F.col("key")).otherwise(key_cut).alias("key"),
        F.when(fits, F.col("raw_value")).otherwise(value_cut).alias("value"),
        F.when(fits, F.concat(original, ours)).otherwise(kept_headers).alias("headers"),
    ]


def dead_letters(parsed: DataFrame, *, job: str, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> DataFrame:
    """Kafka records for the dead-letter topic: the original key and bytes, the original headers (any
    ``sluice.dlq.*`` among them renamed ``sluice.dlq.previous.*``), and ``sluice.dlq.*`` headers saying why, from
    which job, and where the record came from.

    A record that would be larger than ``max_bytes`` (key, value and headers) keeps a prefix of its value, at most
    1 KiB of its key, its headers when they total at most 16 KiB, and says so: ``sluice.dlq.truncated`` and the
    original sizes and SHA-256 of key and value (see :data:`TRUNCATION_HEADERS`). No input makes the write fail."""
    return parsed.where(F.col("error_code").isNotNull()).select(
        *dead_letter_columns(job, max_bytes=max_bytes)
    )
