"""Command-line options shared by the streaming jobs: one source of truth for defaults and validation.

Every setting of a job is a flag. The defaults below are the lab's (topic names, window sizes, threshold);
the operator and the local runner pass flags, never environment variables or files.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, fields

__all__ = [
    "DEFAULT_TOPICS",
    "CommonOptions",
    "Duration",
    "OptionsError",
    "Topics",
    "Trigger",
    "add_common_arguments",
    "common_options",
    "parse_with",
]


class OptionsError(ValueError):
    """A flag has a value the jobs cannot use; the message names the flag and what is accepted."""


@dataclass(frozen=True)
class Topics:
    """Kafka topic names used across the pipeline (the lab's names by default)."""

    source: str = "stream_data_topic"
    processed: str = "processed_data_topic"
    windowed: str = "windowed_results_topic"
    alerts: str = "anomaly_alerts_topic"
    dead_letter: str = "dead_letter_topic"

    def all(self) -> list[str]:
        """Every topic name, in a stable order."""
        return [getattr(self, f.name) for f in fields(self)]


DEFAULT_TOPICS = Topics()

# Kafka's own rule for topic names (kafka.common.internals.Topic): at most 249 of [a-zA-Z0-9._-], not "." or "..".
_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def validate_topic(flag: str, name: str) -> str:
    """Return ``name`` if it is a legal Kafka topic name, else raise naming the flag."""
    if not _TOPIC_RE.match(name) or name in {".", ".."}:
        raise OptionsError(
            f"{flag}: {name!r} is not a valid Kafka topic name "
            "(1-249 characters of letters, digits, '.', '_' or '-'; not '.' or '..')"
        )
    return name


_UNITS_MS = {
    "ms": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1000,
    "sec": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True, order=True)
class Duration:
    """A non-negative whole number of milliseconds, written like ``10s``, ``30 seconds``, ``1h`` or ``500ms``."""

    millis: int

    @classmethod
    def parse(cls, text: str, *, flag: str = "duration") -> Duration:
        """Parse ``text``; the error names ``flag`` and the accepted forms."""
        match = _DURATION_RE.match(str(text))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _UNITS_MS:
            raise OptionsError(
                f"{flag}: {text!r} is not a duration; write a whole number and a unit, "
                "e.g. 500ms, 10s, 30 seconds, 5m, 1h (units: ms, s, m, h and their long names)"
            )
        return cls(int(match.group(1)) * _UNITS_MS[unit])

    @property
    def seconds(self) -> float:
        return self.millis / 1000

    def spark(self) -> str:
        """The interval string Spark's window(), withWatermark() and triggers accept."""
        if self.millis % 1000 == 0:
            return f"{self.millis // 1000} seconds"
        return f"{self.millis} milliseconds"

    def __str__(self) -> str:
        if self.millis % 3_600_000 == 0 and self.millis:
            return f"{self.millis // 3_600_000}h"
        if self.millis % 60_000 == 0 and self.millis:
            return f"{self.millis // 60_000}m"
        if self.millis % 1000 == 0:
            return f"{self.millis // 1000}s"
        return f"{self.millis}ms"


@dataclass(frozen=True)
class Trigger:
    """When micro-batches run: every ``interval`` (0 = as soon as the previous one ends), or ``available-now``."""

    available_now: bool = False
    interval: Duration = Duration(5000)

    @classmethod
    def parse(cls, text: str, *, flag: str = "--trigger") -> Trigger:
        if text.strip().lower() in {"available-now", "availablenow"}:
            return cls(available_now=True)
        try:
            return cls(interval=Duration.parse(text, flag=flag))
        except OptionsError:
            raise OptionsError(
                f"{flag}: {text!r} is not a trigger; use 'available-now' (process what is there, then stop) "
                "or a processing-time interval such as 5s or 1m"
            ) from None

    def spark_kwargs(self) -> dict:
        """Keyword arguments for ``DataStreamWriter.trigger``."""
        if self.available_now:
            return {"availableNow": True}
        return {"processingTime": self.interval.spark()}

    def __str__(self) -> str:
        return "available-now" if self.available_now else str(self.interval)


OUTPUT_MODES = ("append", "update")
FILE_FORMATS = ("parquet", "json")
LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")


@dataclass(frozen=True)
class CommonOptions:
    """Settings every job takes: where to read, where to keep state, how to trigger and emit."""

    bootstrap_servers: str = "localhost:9092"
    source_topic: str = DEFAULT_TOPICS.source
    dead_letter_topic: str = DEFAULT_TOPICS.dead_letter
    checkpoint_root: str = "/tmp/sluice/checkpoints"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    trigger: Trigger = field(default_factory=Trigger)
    output_mode: str = "append"
    console: bool = False
    console_rows: int = 20
    shuffle_partitions: int = 4
    master: str | None = None
    jars: tuple[str, ...] = ()
    spark_conf: tuple[tuple[str, str], ...] = ()
    log_level: str = "WARN"
    query_prefix: str = ""

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise OptionsError("--bootstrap-servers: must not be empty (host:port[,host:port...])")
        validate_topic("--source-topic", self.source_topic)
        validate_topic("--dead-letter-topic", self.dead_letter_topic)
        if self.output_mode not in OUTPUT_MODES:
            raise OptionsError(f"--output-mode: {self.output_mode!r} is not one of {', '.join(OUTPUT_MODES)}")
        if self.log_level not in LOG_LEVELS:
            raise OptionsError(f"--log-level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.shuffle_partitions < 1:
            raise OptionsError(f"--shuffle-partitions: {self.shuffle_partitions} must be at least 1")
        if self.console_rows < 1:
            raise OptionsError(f"--console-rows: {self.console_rows} must be at least 1")
        if self.max_offsets_per_trigger is not None and self.max_offsets_per_trigger < 1:
            raise OptionsError(
                f"--max-offsets-per-trigger: {self.max_offsets_per_trigger} must be at least 1 (or omitted)"
            )
        if self.starting_offsets not in {"earliest", "latest"} and not self.starting_offsets.startswith("{"):
            raise OptionsError(
                f"--starting-offsets: {self.starting_offsets!r} is not 'earliest', 'latest' or a JSON object "
                'such as {"stream_data_topic":{"0":42}}'
            )

    def checkpoint(self, job: str) -> str:
        """Checkpoint directory of a job's streaming query (and its window state): ``<root>/<job>``."""
        return f"{self.checkpoint_root.rstrip('/')}/{job}"


def _positive_int(flag: str):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} must be at least 1")
        return value

    convert.__name__ = flag
    return convert


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of :class:`CommonOptions` to ``parser`` (defaults from the dataclass)."""
    d = CommonOptions()
    g = parser.add_argument_group("Kafka and Spark")
    g.add_argument("--bootstrap-servers", default=d.bootstrap_servers, help="Kafka bootstrap servers")
    g.add_argument("--source-topic", default=d.source_topic, help="topic the sensor events are read from")
    g.add_argument(
        "--dead-letter-topic",
        default=d.dead_letter_topic,
        help="topic that receives every record that cannot be parsed, with the reason in headers",
    )
    g.add_argument("--checkpoint-root", default=d.checkpoint_root, help="root directory of query checkpoints")
    g.add_argument(
        "--starting-offsets",
        default=d.starting_offsets,
        help="where a query with no checkpoint starts: earliest, latest or a JSON offsets object",
    )
    g.add_argument("--max-offsets-per-trigger", type=_positive_int("max-offsets-per-trigger"), default=None)
    g.add_argument(
        "--trigger",
        default=str(d.trigger),
        help="processing-time interval such as 5s, or available-now to process what is there and stop",
    )
    g.add_argument("--output-mode", default=d.output_mode, help="append (final windows once) or update")
    g.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        default=d.console,
        help="also print each micro-batch's output rows as tables (for watching a run; off in pods)",
    )
    g.add_argument("--console-rows", type=int, default=d.console_rows, help="rows shown per console batch")
    g.add_argument(
        "--shuffle-partitions", type=int, default=d.shuffle_partitions, help="spark.sql.shuffle.partitions"
    )
    g.add_argument("--master", default=None, help="Spark master URL when run with python -m (e.g. local[2])")
    g.add_argument(
        "--jars", default="", help="comma-separated jars (the Kafka connector) when run with python -m"
    )
    g.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the session (repeatable), e.g. spark.executor.memory=2g",
    )
    g.add_argument("--log-level", default=d.log_level, help=f"Spark log level: {', '.join(LOG_LEVELS)}")
    g.add_argument("--query-prefix", default=d.query_prefix, help="prefix of streaming query names")


def _key_value(flag: str, item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip().startswith("spark."):
        raise OptionsError(
            f"{flag}: {item!r} is not KEY=VALUE with a Spark key such as spark.executor.memory=2g"
        )
    return key.strip(), value


def common_options(ns: argparse.Namespace) -> CommonOptions:
    """Build :class:`CommonOptions` from parsed flags (raises :class:`OptionsError`)."""
    return CommonOptions(
        bootstrap_servers=ns.bootstrap_servers,
        source_topic=ns.source_topic,
        dead_letter_topic=ns.dead_letter_topic,
        checkpoint_root=ns.checkpoint_root,
        starting_offsets=ns.starting_offsets,
        max_offsets_per_trigger=ns.max_offsets_per_trigger,
        trigger=Trigger.parse(ns.trigger),
        output_mode=ns.output_mode,
        console=ns.console,
        console_rows=ns.console_rows,
        shuffle_partitions=ns.shuffle_partitions,
        master=ns.master,
        jars=tuple(j for j in ns.jars.split(",") if j.strip()),
        spark_conf=tuple(_key_value("--spark-conf", item) for item in ns.spark_conf),
        log_level=ns.log_level.upper(),
        query_prefix=ns.query_prefix,
    )


def parse_with(parser: argparse.ArgumentParser, build, argv: list[str] | None):
    """Parse ``argv`` and build options with ``build(namespace)``; bad values exit 2 with the message."""
    ns = parser.parse_args(argv)
    try:
        return build(ns)
    except OptionsError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def check_window(prefix: str, window: Duration, slide: Duration | None = None) -> None:
    """Reject windows Spark cannot compute: zero-length windows, or a slide longer than the window."""
    if window.millis <= 0:
        raise OptionsError(f"{prefix}: the window must be longer than 0 (got {window})")
    if slide is not None:
        if slide.millis <= 0:
            raise OptionsError(f"{prefix}: the slide must be longer than 0 (got {slide})")
        if slide > window:
            raise OptionsError(f"{prefix}: the slide ({slide}) must not be longer than the window ({window})")
