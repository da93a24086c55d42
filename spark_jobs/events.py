"""The sensor event: its schema, how raw Kafka records are parsed, and why a record is sent to the dead letters.

A sensor event is the lab's JSON object ``{"timestamp", "value", "device_id", "status"}``:

* ``timestamp`` — an ISO-8601 date-time string; with an offset (``Z``, ``+02:00``) it is converted to UTC, without
  one it is taken as UTC (the Spark session time zone is UTC);
* ``value`` — a finite JSON number;
* ``device_id`` and ``status`` — non-empty JSON strings.

Other fields are ignored. A record that is not such an object is never dropped and never stops a job: it gets an
``error_code`` (one of :data:`ERROR_CODES`) and an ``error_message`` and goes to the dead-letter topic with its
original bytes. Everything here is a pure ``DataFrame -> DataFrame`` transform over Spark's native functions (the
JSON is parsed once, as a VARIANT); it works on batch and streaming frames alike.
"""

from __future__ import annotations

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

#: Every reason a record can be dead-lettered for, in the order the checks run (the first failing one is kept).
ERROR_CODES = (
    EMPTY_MESSAGE,
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_TYPE,
    INVALID_TIMESTAMP,
    INVALID_VALUE,
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

#: The columns :func:`parse_events` keeps from the source record, so a dead letter loses nothing.
SOURCE_COLUMNS = (
    "key",
    "raw_value",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_timestamp",
    "headers",
)

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


def parse_events(raw: DataFrame) -> DataFrame:
    """Parse Kafka records (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp`` and optionally
    ``headers``) into events.

    Returns one row per input record with ``event_time`` (timestamp, UTC), ``device_id``, ``value`` (double),
    ``status`` — null when the record is invalid — plus ``error_code`` / ``error_message`` (null when valid) and the
    source columns ``key``, ``raw_value``, ``source_topic``, ``source_partition``, ``source_offset``,
    ``source_timestamp``, ``headers`` needed to dead-letter it without loss.
    """
    headers = (
        F.col("headers")
        if "headers" in raw.columns
        else F.lit(None).cast("array<struct<key:string,value:binary>>")
    )
    text = F.col("value").cast("string")
    # Fast path: a canonical event is read with Spark's JSON reader; only the other records are parsed as VARIANT
    # (in a CASE, so a canonical record never pays for it).
    canonical = F.when(text.rlike(CANONICAL_EVENT_PATTERN), F.from_json(text, _CANONICAL_SCHEMA))
    staged = raw.select(
        F.col("key"),
        F.col("value").alias("raw_value"),
        F.col("topic").alias("source_topic"),
        F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.col("timestamp").alias("source_timestamp"),
        headers.alias("headers"),
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
    staged = staged.select(
        "*", F.when(~F.col("_fast"), F.try_parse_json(F.col("raw_value").cast("string"))).alias("_json")
    )
    j = F.col("_json")
    ts_text = F.try_variant_get(j, "$.timestamp", "string")
    value_kind, device_kind, status_kind = _kind(j, "value"), _kind(j, "device_id"), _kind(j, "status")
    staged = staged.select(
        "*",
        ts_text.alias("_ts_text"),
        F.when(ts_text.rlike(ISO_TIMESTAMP_PATTERN), ts_text.try_cast("timestamp")).alias("_event_time"),
        F.try_variant_get(j, "$.value", "double").alias("_value"),
        F.try_variant_get(j, "$.device_id", "string").alias("_device_id"),
        F.try_variant_get(j, "$.status", "string").alias("_status"),
        value_kind.alias("_value_kind"),
        device_kind.alias("_device_kind"),
        status_kind.alias("_status_kind"),
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
    valid = fast | slow_valid
    kinds = {
        "timestamp": _kind(j, "timestamp"),  # needed only to explain an invalid row
        "value": F.col("_value_kind"),
        "device_id": F.col("_device_kind"),
        "status": F.col("_status_kind"),
    }
    # Only invalid rows reach this CASE (it sits in the ELSE of `valid`), so the costlier checks cost valid rows nothing.
    reason = F.when(
        F.col("raw_value").isNull() | (F.length("raw_value") == 0),
        F.array(F.lit(EMPTY_MESSAGE), F.lit("the record has no value")),
    )
    reason = reason.when(
        ~F.is_valid_utf8(F.col("raw_value").cast("string")),
        F.array(F.lit(INVALID_UTF8), F.lit("the value is not valid UTF-8 text")),
    )
    reason = reason.when(
        j.isNull(),
        F.array(F.lit(INVALID_JSON), F.lit("the value is not valid JSON")),
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
        ~finite, F.array(F.lit(INVALID_VALUE), F.lit("field 'value' must be a finite number"))
    )
    reason = reason.otherwise(
        F.array(F.lit(INVALID_VALUE), F.lit("fields 'device_id' and 'status' must not be empty strings"))
    )
    error = F.when(valid, F.lit(None).cast("array<string>")).otherwise(reason)
    out = staged.select(
        F.when(fast, F.col("_fast_time")).when(slow_valid, F.col("_event_time")).alias("event_time"),
        F.when(fast, F.col("_canonical.device_id")).when(slow_valid, F.col("_device_id")).alias("device_id"),
        F.when(fast, F.col("_canonical.value")).when(slow_valid, F.col("_value")).alias("value"),
        F.when(fast, F.col("_canonical.status")).when(slow_valid, F.col("_status")).alias("status"),
        error.alias("_error"),
        *SOURCE_COLUMNS,
    )
    return out.select(
        "event_time",
        "device_id",
        "value",
        "status",
        F.col("_error")[0].alias("error_code"),
        F.col("_error")[1].alias("error_message"),
        *SOURCE_COLUMNS,
    )


def valid_events(parsed: DataFrame) -> DataFrame:
    """The well-formed events of :func:`parse_events`: ``event_time, device_id, value, status``."""
    return parsed.where(F.col("error_code").isNull()).select("event_time", "device_id", "value", "status")


def dead_letter_columns(job: str) -> list[Column]:
    """The columns of a dead-letter record made of a row of :func:`parse_events` (see :func:`dead_letters`)."""

    def header(name: str, value: Column) -> Column:
        return F.struct(
            F.lit(DLQ_HEADER_PREFIX + name).alias("key"), value.cast("string").cast("binary").alias("value")
        )

    ours = F.array(
        header("error_code", F.col("error_code")),
        header("error_message", F.col("error_message")),
        header("job", F.lit(job)),
        header("source_topic", F.col("source_topic")),
        header("source_partition", F.col("source_partition")),
        header("source_offset", F.col("source_offset")),
        header("source_timestamp", F.date_format("source_timestamp", ISO_OUTPUT_FORMAT)),
    )
    original = F.coalesce(F.col("headers"), F.array().cast("array<struct<key:string,value:binary>>"))
    return [F.col("key"), F.col("raw_value").alias("value"), F.concat(original, ours).alias("headers")]


def dead_letters(parsed: DataFrame, *, job: str) -> DataFrame:
    """Kafka records for the dead-letter topic: the original key and bytes, the original headers, and
    ``sluice.dlq.*`` headers saying why, from which job, and where the record came from."""
    return parsed.where(F.col("error_code").isNotNull()).select(*dead_letter_columns(job))
