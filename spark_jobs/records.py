"""Encoding of aggregates as Kafka records: a key consumers can upsert by, and a JSON value with UTC times."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampType

from spark_jobs.events import ISO_OUTPUT_FORMAT

_JSON_OPTIONS = {"timestampFormat": ISO_OUTPUT_FORMAT, "ignoreNullFields": "false"}


def _key_part(df: DataFrame, name: str) -> Column:
    if isinstance(df.schema[name].dataType, TimestampType):
        return F.date_format(name, ISO_OUTPUT_FORMAT)
    return F.col(name).cast("string")


def record_columns(df: DataFrame, *, key: list[str]) -> list[Column]:
    """The columns of :func:`to_kafka_records` for frames shaped like ``df`` (to build once, apply often)."""
    return [
        F.concat_ws("|", *[_key_part(df, k) for k in key]).alias("key"),
        F.to_json(F.struct(*df.columns), _JSON_OPTIONS).alias("value"),
    ]


def to_kafka_records(df: DataFrame, *, key: list[str]) -> DataFrame:
    """``key`` (the listed columns joined by ``|``, times as ISO-8601 UTC) and ``value`` (every column as JSON)."""
    return df.select(*record_columns(df, key=key))
