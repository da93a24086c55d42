"""Command-line options of the jobs and the generator: each knob declared once, with its default, help and bounds.

Every setting of a job is a flag. An options class is a frozen dataclass whose fields are made with
:func:`option`: the field's name gives the flag (``stddev_floor`` -> ``--stddev-floor``), and its default, help,
parsing and bounds (``minimum``, ``maximum``, ``exclusive_minimum``, ``choices``) live in the field's metadata.
From that one declaration:

* :func:`build_parser` / :func:`parse_options` make the ``argparse`` parser (a field holding a group of options,
  ``common: CommonOptions``, becomes its own argument group) and the options from ``argv``;
* :func:`check_fields`, called first in each class's ``__post_init__``, applies the bounds to every object made,
  with an error naming the flag, the value and what is accepted (checks across fields follow it);
* :func:`cli_defaults` gives each flag's default as the command line writes it, to compare with what the
  operator passes; :func:`flag_fields` gives each flag's field, to compare its bounds with the operator's spec.

The defaults are the lab's (topic names, window sizes, threshold); the operator and the local runner pass flags,
never environment variables or files.
"""

from __future__ import annotations

import argparse
import math
import re
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from functools import cache
from types import UnionType
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_TOPICS",
    "CommonOptions",
    "Duration",
    "OptionsError",
    "Topics",
    "Trigger",
    "build_parser",
    "check_fields",
    "check_window",
    "cli_defaults",
    "flag_fields",
    "option",
    "options_from",
    "parse_options",
    "validate_topic",
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


# --- options declared once: the field, its default, its help, its parsing and its bounds ---------------------------


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    flag: str | None = None,
    parse: Callable[..., Any] | None = None,
    check: Callable[[str, Any], object] | None = None,
    show: Callable[[Any], Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field that is also a command-line flag; everything about the flag is stored in its metadata.

    * ``flag``: the flag's name, by default the field's (``stddev_floor`` -> ``--stddev-floor``);
    * ``parse(text, flag=...)``: turns the flag's text into the field's value, raising :class:`OptionsError`;
      by default from the field's type (str, int, float, :class:`Duration`, :class:`Trigger`; a bool is a
      ``--x/--no-x`` pair); with ``repeat`` the flag may be given many times and the value is a tuple of items;
    * ``minimum``, ``maximum`` (``exclusive_minimum``: the minimum itself is refused) and ``choices`` bound the
      value, ``check(flag, value)`` is any other test of it alone: :func:`check_fields` applies them to every
      object made, from flags or not (None, an unset optional, is never checked);
    * ``show(value)``: the value as the command line writes it (default: ``str`` for a Duration or Trigger).
    """
    meta = {
        "help": help,
        "flag": flag,
        "parse": parse,
        "check": check,
        "show": show,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "choices": choices,
        "metavar": metavar,
        "repeat": repeat,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def whole(text: str, *, flag: str) -> int:
    """Parse a whole number, e.g. ``10``."""
    try:
        return int(text)
    except ValueError:
        raise OptionsError(f"{flag}: {text!r} is not a whole number (e.g. 10)") from None


def number(text: str, *, flag: str) -> float:
    """Parse a number, e.g. ``100`` or ``0.25``."""
    try:
        return float(text)
    except ValueError:
        raise OptionsError(f"{flag}: {text!r} is not a number (e.g. 100 or 0.25)") from None


def _text(text: str, *, flag: str) -> str:
    return text


_PARSERS: dict[Any, Callable[..., Any]] = {
    str: _text,
    int: whole,
    float: number,
    Duration: Duration.parse,
    Trigger: Trigger.parse,
}


@cache
def _types(cls: type) -> dict[str, Any]:
    """The fields' types, unwrapped from ``X | None`` (annotations are strings under ``from __future__``)."""
    hints = typing.get_type_hints(cls)
    types = {}
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, UnionType):
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        types[f.name] = hint
    return types


def _nested(cls: type, f: Field) -> type | None:
    """The options class of a field that holds a group of options (``common: CommonOptions``), None for an
    :func:`option`; any other field is refused."""
    if "help" in f.metadata:
        return None
    tp = _types(cls)[f.name]
    if not is_dataclass(tp):
        raise TypeError(f"{cls.__name__}.{f.name} is neither an option() nor a group of options")
    return tp


def _flag(f: Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def flag_fields(cls: type) -> dict[str, tuple[type, Field]]:
    """Every flag of an options class, in order: ``{flag: (class declaring it, its field)}``, groups included.

    The field's ``metadata`` holds the facts given to :func:`option` (``help``, ``minimum``, ``maximum``,
    ``exclusive_minimum``, ``choices``...).
    """
    found: dict[str, tuple[type, Field]] = {}
    for f in fields(cls):
        group = _nested(cls, f)
        if group is not None:
            found |= flag_fields(group)
        else:
            found[_flag(f)] = (cls, f)
    return found


def _accepted(cls: type, f: Field) -> str | None:
    """What a field's bounds accept (``one of a, b``, ``between 0 and 1``, ``at least 1``, ``a number greater
    than 0 and at most 1000``), None when it has none. A closed range reads "between" for numbers, "at least ...
    and at most" for whole numbers."""
    m = f.metadata
    low, high, real = m["minimum"], m["maximum"], _types(cls)[f.name] is float
    if m["choices"] is not None:
        return f"one of {', '.join(m['choices'])}"
    if real and low is not None and high is not None and not m["exclusive_minimum"]:
        return f"between {low} and {high}"
    limits = []
    if low is not None:
        limits.append(
            f"greater than {low}" if m["exclusive_minimum"] else f"{'of ' if real else ''}at least {low}"
        )
    if high is not None:
        limits.append(f"at most {high}")
    return ("a number " if real else "") + " and ".join(limits) if limits else None


def _in_bounds(f: Field, value: Any) -> bool:
    m = f.metadata
    if m["choices"] is not None and value not in m["choices"]:
        return False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    low, high = m["minimum"], m["maximum"]
    if isinstance(value, float) and not math.isfinite(value) and (low is not None or high is not None):
        return False
    if low is not None and (value <= low if m["exclusive_minimum"] else value < low):
        return False
    return high is None or value <= high


def check_fields(options: Any) -> None:
    """Apply each option's bounds, choices and ``check`` to its value (call it first in ``__post_init__``)."""
    cls = type(options)
    for f in fields(cls):
        value = getattr(options, f.name)
        if "help" not in f.metadata or value is None:
            continue
        flag = _flag(f)
        if not _in_bounds(f, value):
            accepted = _accepted(cls, f) or ""
            verb = "is not" if accepted.startswith(("one of", "between")) else "must be"
            omit = " (or omitted)" if _default(f) is None else ""
            raise OptionsError(f"{flag}: {value!r} {verb} {accepted}{omit}")
        if f.metadata["check"] is not None:
            f.metadata["check"](flag, value)


def _shown(f: Field, value: Any) -> Any:
    if value is None:
        return None
    if f.metadata["show"] is not None:
        return f.metadata["show"](value)
    return str(value) if isinstance(value, Duration | Trigger) else value


def cli_defaults(cls: type) -> dict[str, Any]:
    """Each flag of an options class with its default as the command line writes it, groups included.

    ``{"--threshold": 2.0, "--window": "30s", "--trigger": "5s", "--master": None, "--console": False, ...}``:
    numbers and booleans as they are, durations and triggers as text (``"1h"``, ``"available-now"``), None for a
    flag that is unset by default; ``--jars`` a comma-separated string, ``--spark-conf`` a list of ``KEY=VALUE``.
    Passing a flag its value here gives the default options back; compare them with what the operator passes.
    """
    return {flag: _shown(f, _default(f)) for flag, (_, f) in flag_fields(cls).items()}


def _help(cls: type, f: Field) -> str:
    shown = _shown(f, _default(f))
    if shown is None:
        default = "unset"
    elif isinstance(shown, list):
        default = ", ".join(shown) or "none"
    else:
        default = str(shown) if shown != "" else '""'
    accepted = _accepted(cls, f)
    return f"{f.metadata['help']} ({accepted + '; ' if accepted else ''}default: {default})".replace(
        "%", "%%"
    )


def build_parser(
    cls: type, *, prog: str | None = None, description: str | None = None, group: str | None = None
) -> argparse.ArgumentParser:
    """An ``argparse`` parser with a flag per field of the options class ``cls``.

    A field holding a group of options (``common: CommonOptions``) adds that class's flags under its ``TITLE``;
    the class's own flags go under ``group`` (or with ``-h`` when None). Each flag's help ends with what it
    accepts and its default. Flags not given are left out of the namespace: the dataclass defaults apply.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    _add_flags(parser, cls, group, prefix="")
    return parser


def _add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None, *, prefix: str) -> None:
    own: Any = None
    for f in fields(cls):
        group = _nested(cls, f)
        if group is not None:
            _add_flags(parser, group, group.TITLE, prefix=f"{prefix}{f.name}.")
            continue
        if own is None:
            own = parser.add_argument_group(title) if title else parser
        m, tp = f.metadata, _types(cls)[f.name]
        kwargs: dict[str, Any] = {
            "dest": prefix + f.name,
            "default": argparse.SUPPRESS,
            "help": _help(cls, f),
        }
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif m["parse"] is None and tp not in _PARSERS:
            raise TypeError(f"{cls.__name__}.{f.name}: option() needs parse= to read a {tp}")
        else:
            kwargs["metavar"] = m["metavar"] or f.name.upper()
            if m["repeat"]:
                kwargs["action"] = "append"
        own.add_argument(_flag(f), **kwargs)


def options_from(cls: type, ns: argparse.Namespace, *, prefix: str = "") -> Any:
    """The options ``cls`` from a namespace of :func:`build_parser`: each flag given is parsed, the others take
    their defaults (raises :class:`OptionsError` naming the flag)."""
    values = {}
    for f in fields(cls):
        group = _nested(cls, f)
        if group is not None:
            values[f.name] = options_from(group, ns, prefix=f"{prefix}{f.name}.")
        elif hasattr(ns, prefix + f.name):
            given, flag = getattr(ns, prefix + f.name), _flag(f)
            if isinstance(given, bool):  # --x / --no-x
                values[f.name] = given
                continue
            parse = f.metadata["parse"] or _PARSERS[_types(cls)[f.name]]
            if f.metadata["repeat"]:
                values[f.name] = tuple(parse(item, flag=flag) for item in given)
            else:
                values[f.name] = parse(given, flag=flag)
    return cls(**values)


def parse_options(cls: type, argv: list[str] | None = None, **parser_args: Any) -> Any:
    """Parse ``argv`` (default: the command line) into the options ``cls``; a bad flag exits 2 with its message.

    ``parser_args`` go to :func:`build_parser` (``prog``, ``description``, ``group``).
    """
    parser = build_parser(cls, **parser_args)
    ns = parser.parse_args(argv)
    try:
        return options_from(cls, ns)
    except OptionsError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


# --- the settings every job takes ------------------------------------------------------------------------------------

OUTPUT_MODES = ("append", "update")
FILE_FORMATS = ("parquet", "json")
LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")


def check_servers(flag: str, servers: str) -> None:
    """Refuse an empty list of Kafka bootstrap servers."""
    if not servers.strip():
        raise OptionsError(f"{flag}: must not be empty (host:port[,host:port...])")


def _check_starting_offsets(flag: str, offsets: str) -> None:
    if offsets not in {"earliest", "latest"} and not offsets.startswith("{"):
        raise OptionsError(
            f"{flag}: {offsets!r} is not 'earliest', 'latest' or a JSON object "
            'such as {"stream_data_topic":{"0":42}}'
        )


def _check_group(flag: str, group: str) -> None:
    if not group or len(group) > 255 or any(c.isspace() or not c.isprintable() for c in group):
        raise OptionsError(
            f"{flag}: {group!r} is not a consumer group name: 1 to 255 printable characters, no spaces, "
            "e.g. sluice.default.my-pipeline.windowed"
        )


def _key_value(item: str, *, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip().startswith("spark."):
        raise OptionsError(
            f"{flag}: {item!r} is not KEY=VALUE with a Spark key such as spark.executor.memory=2g"
        )
    return key.strip(), value


def _comma_list(text: str, *, flag: str) -> tuple[str, ...]:
    return tuple(item for item in text.split(",") if item.strip())


def _upper(text: str, *, flag: str) -> str:
    return text.upper()


def _bound(text: str, *, flag: str) -> Duration | None:
    """A duration, or ``none`` for no bound."""
    if text.strip().lower() == "none":
        return None
    try:
        return Duration.parse(text, flag=flag)
    except OptionsError:
        raise OptionsError(
            f"{flag}: {text!r} is neither a duration such as 30m, 1h or 168h nor 'none' (no bound)"
        ) from None


def _show_bound(value: Duration | None) -> str:
    return "none" if value is None else str(value)


@dataclass(frozen=True)
class CommonOptions:
    """Settings every job takes: where to read, where to keep state, how to trigger and emit."""

    TITLE: ClassVar[str] = "Kafka and Spark"

    bootstrap_servers: str = option("localhost:9092", help="Kafka bootstrap servers", check=check_servers)
    source_topic: str = option(
        DEFAULT_TOPICS.source, help="topic the sensor events are read from", check=validate_topic
    )
    dead_letter_topic: str = option(
        DEFAULT_TOPICS.dead_letter,
        help="topic that receives every record that cannot be parsed, with the reason in headers",
        check=validate_topic,
    )
    checkpoint_root: str = option("/tmp/sluice/checkpoints", help="root directory of query checkpoints")
    previous_checkpoint_root: str | None = option(
        None,
        help="checkpoint root of an earlier run of this job: a query with no checkpoint yet starts where that one "
        "had got to (its last committed offsets) instead of at --starting-offsets",
    )
    starting_offsets: str = option(
        "earliest",
        help="where a query with no checkpoint starts: earliest, latest or a JSON offsets object",
        check=_check_starting_offsets,
    )
    max_offsets_per_trigger: int | None = option(
        None, help="most Kafka records one micro-batch reads; unset reads everything there is", minimum=1
    )
    trigger: Trigger = option(
        default_factory=Trigger,
        help="processing-time interval such as 5s, or available-now to process what is there and stop",
    )
    output_mode: str = option(
        "append",
        help="append writes each window once, when final; update writes every change",
        choices=OUTPUT_MODES,
    )
    console: bool = option(
        False, help="also print each micro-batch's output rows as tables (for watching a run; off in pods)"
    )
    console_rows: int = option(20, help="rows shown per console batch", minimum=1)
    shuffle_partitions: int = option(4, help="spark.sql.shuffle.partitions", minimum=1)
    master: str | None = option(None, help="Spark master URL when run with python -m (e.g. local[2])")
    jars: tuple[str, ...] = option(
        (),
        help="comma-separated jars (the Kafka connector) when run with python -m",
        parse=_comma_list,
        show=",".join,
    )
    spark_conf: tuple[tuple[str, str], ...] = option(
        (),
        help="a Spark setting for the session (repeatable), e.g. spark.executor.memory=2g",
        parse=_key_value,
        show=lambda pairs: [f"{key}={value}" for key, value in pairs],
        metavar="KEY=VALUE",
        repeat=True,
    )
    log_level: str = option("WARN", help="Spark log level", parse=_upper, choices=LOG_LEVELS)
    query_prefix: str = option("", help="prefix of streaming query names")
    max_event_ahead: Duration | None = option(
        Duration(3_600_000),
        help="an event whose time is further ahead of the micro-batch's processing time is a dead letter "
        "(TIMESTAMP_OUT_OF_RANGE); none: no bound",
        parse=_bound,
        show=_show_bound,
    )
    max_event_behind: Duration | None = option(
        Duration(7 * 24 * 3_600_000),
        help="an event whose time is further behind its record's Kafka timestamp is a dead letter "
        "(TIMESTAMP_OUT_OF_RANGE); none: no bound",
        parse=_bound,
        show=_show_bound,
    )
    max_record_bytes: int = option(
        65_536,
        help="a record whose key and value hold more bytes is a dead letter (RECORD_TOO_LARGE)",
        minimum=1,
        maximum=104_857_600,
    )
    max_field_length: int = option(
        256,
        help="an event whose device_id or status has more characters is a dead letter (FIELD_TOO_LONG)",
        minimum=1,
        maximum=1_000_000,
    )
    fail_on_data_loss: bool = option(
        True,
        help="stop (exit 3, naming the offsets) when records the checkpoint has not read are gone from Kafka "
        "(retention, a deleted topic); --no-fail-on-data-loss skips them, as Spark does with failOnDataLoss=false",
    )
    dead_letter_max_bytes: int = option(
        1_048_576,
        help="the largest record the dead-letter topic takes (its max.message.bytes); a dead letter that would "
        "be larger keeps a prefix of its bytes, their size and SHA-256",
        minimum=32_768,
        maximum=104_857_600,
    )

    consumer_group: str | None = option(
        None,
        help="consumer group the job commits its processed offsets to after each micro-batch, for Kafka's lag "
        "tools (a reporting copy: the checkpoint stays the source of truth); default sluice.<job>",
        check=_check_group,
    )
    metrics_port: int = option(
        0, help="port of the job's Prometheus metrics (/metrics); 0: none", minimum=0, maximum=65535
    )
    executors_missing_file: str | None = option(
        None,
        help="a file the job keeps while its session has no executor (on a cluster: its pod's readiness probe "
        "fails while it is there); unset: none",
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def checkpoint(self, job: str) -> str:
        """Checkpoint directory of a job's streaming query (and its window state): ``<root>/<job>``."""
        return f"{self.checkpoint_root.rstrip('/')}/{job}"


def check_window(prefix: str, window: Duration, slide: Duration | None = None) -> None:
    """Reject windows Spark cannot compute: zero-length windows, or a slide longer than the window."""
    if window.millis <= 0:
        raise OptionsError(f"{prefix}: the window must be longer than 0 (got {window})")
    if slide is not None:
        if slide.millis <= 0:
            raise OptionsError(f"{prefix}: the slide must be longer than 0 (got {slide})")
        if slide > window:
            raise OptionsError(f"{prefix}: the slide ({slide}) must not be longer than the window ({window})")
