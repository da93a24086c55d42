"""What the generator sends: the lab's sensor events, late events and malformed messages, reproducibly.

Pure: no Kafka, no clock. :class:`EventFactory` turns a sequence number (and the current time, when no
``start_time`` is set) into a :class:`Message` — key, value bytes and ground-truth headers — drawing every
random choice from one ``random.Random(seed)`` in a fixed order, so a seed fixes the whole message sequence.

The lab's distribution: with probability ``anomaly_probability`` a value uniform in [200, 500] with status
Danger/Error (0.6/0.4), otherwise uniform in [10, 100] with status Normal/Warning/Danger/Error
(0.7/0.15/0.1/0.05); values are rounded to 2 decimals. The payload is exactly
``{"timestamp", "value", "device_id", "status"}``, keyed by ``device_id``.

Usage::

    factory = EventFactory(GeneratorConfig(seed=7, start_time=parse_timestamp("2024-01-01T00:00:00Z")))
    message = factory.message(0, datetime.now(UTC))
"""

from __future__ import annotations

import json
import random
from bisect import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from spark_jobs.options import (
    DEFAULT_TOPICS,
    OptionsError,
    check_fields,
    check_servers,
    option,
    validate_topic,
)

__all__ = [
    "ANOMALY_RANGE",
    "ANOMALY_STATUS_WEIGHTS",
    "EPOCH",
    "EVENT",
    "EXPECTED_ERROR_CODE",
    "FIELDS",
    "HEADER_ANOMALY",
    "HEADER_LATE",
    "HEADER_MALFORMED",
    "HEADER_SEQ",
    "MALFORMED",
    "MALFORMED_KINDS",
    "NORMAL_RANGE",
    "NORMAL_STATUS_WEIGHTS",
    "EventFactory",
    "GeneratorConfig",
    "Message",
    "device_id",
    "format_timestamp",
    "parse_timestamp",
]

#: The lab's four payload fields, in the order they are written.
FIELDS = ("timestamp", "value", "device_id", "status")

NORMAL_RANGE = (10.0, 100.0)
NORMAL_STATUS_WEIGHTS = {"Normal": 0.7, "Warning": 0.15, "Danger": 0.1, "Error": 0.05}
ANOMALY_RANGE = (200.0, 500.0)
ANOMALY_STATUS_WEIGHTS = {"Danger": 0.6, "Error": 0.4}

# Message kinds.
EVENT = "event"
MALFORMED = "malformed"

# Malformed kinds: each is one way a record fails the Spark parser (spark_jobs.events).
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_TYPE = "invalid_type"
INVALID_TIMESTAMP = "invalid_timestamp"
INVALID_UTF8 = "invalid_utf8"
EMPTY = "empty"
MALFORMED_KINDS = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_TYPE,
    INVALID_TIMESTAMP,
    INVALID_UTF8,
    EMPTY,
)

#: The error code the Spark parser gives each malformed kind (plain strings: importing spark_jobs.events
#: would pull in pyspark).
EXPECTED_ERROR_CODE = {
    INVALID_JSON: "INVALID_JSON",
    NOT_AN_OBJECT: "NOT_AN_OBJECT",
    MISSING_FIELD: "MISSING_FIELD",
    INVALID_TYPE: "INVALID_TYPE",
    INVALID_TIMESTAMP: "INVALID_TIMESTAMP",
    INVALID_UTF8: "INVALID_UTF8",
    EMPTY: "EMPTY_MESSAGE",
}

# Ground-truth headers; the payload stays the lab's.
HEADER_SEQ = "sluice.seq"
HEADER_ANOMALY = "sluice.anomaly"
HEADER_LATE = "sluice.late"
HEADER_MALFORMED = "sluice.malformed"

_BAD_TIMESTAMPS = ("not-a-time", "2024-13-45T00:00:00Z")
_ANOMALY_HEADER = (HEADER_ANOMALY, b"true")
_LATE_HEADER = (HEADER_LATE, b"true")
_NORMAL_LOW, _NORMAL_SPAN = NORMAL_RANGE[0], NORMAL_RANGE[1] - NORMAL_RANGE[0]
_ANOMALY_LOW, _ANOMALY_SPAN = ANOMALY_RANGE[0], ANOMALY_RANGE[1] - ANOMALY_RANGE[0]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a 'Z' suffix, e.g. ``2024-01-01T12:00:00.000Z``.

    Sub-millisecond digits are dropped (truncated, as ``isoformat(timespec="milliseconds")`` does); a naive
    datetime is taken as UTC.
    """
    utc = (
        moment.replace(tzinfo=None) if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)
    )
    if utc.year >= 1000:  # isoformat pads years to four digits, strftime's %Y does not: keep the older text
        return utc.isoformat(timespec="milliseconds") + "Z"
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str, *, flag: str = "--start-time") -> datetime:
    """Parse an ISO-8601 date-time (``2024-01-01T00:00:00Z``, ``...+02:00``; no offset = UTC) into UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionsError(
            f"{flag}: {text!r} is not an ISO-8601 date-time; write e.g. 2024-01-01T00:00:00Z "
            "or 2024-01-01T02:00:00+02:00"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def device_id(number: int, devices: int) -> str:
    """The id of device ``number`` (1-based) among ``devices``: ``device_001``; wider when devices > 999."""
    width = max(3, len(str(devices)))
    return f"device_{number:0{width}d}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(moment: datetime) -> int:
    """Whole microseconds since the epoch (a naive datetime is taken as UTC); exact, unlike ``timestamp()``."""
    delta = (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _TimestampText:
    """:func:`format_timestamp` of a time in ms since the epoch, cheap for times in order: the text up to the second
    and the text up to the minute are kept from the last call (a new second in the same minute makes only the
    seconds again), and the milliseconds are looked up."""

    def __init__(self) -> None:
        self._minute: int | None = None
        self._minute_text = ""
        self._second: int | None = None
        self._second_text = ""

    def of(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            minute, second_of_minute = divmod(second, 60)
            if minute != self._minute:
                text = format_timestamp(EPOCH + timedelta(minutes=minute))
                self._minute, self._minute_text = minute, text[: text.rindex(":") + 1]
            self._second, self._second_text = second, f"{self._minute_text}{second_of_minute:02d}."
        return self._second_text + _MILLI_TEXT[milli]


# The end of a timestamp's text by its milliseconds: "000Z", "001Z" ... "999Z".
_MILLI_TEXT = tuple(f"{milli:03d}Z" for milli in range(1000))


def _fraction(default: float, help: str) -> Any:
    return option(default, help=help, minimum=0, maximum=1)


@dataclass(frozen=True)
class GeneratorConfig:
    """Every setting of the generator, one flag each (:func:`spark_jobs.options.option`); bad values raise naming it.

    ``duration`` (seconds) and ``count`` (messages) bound the run; with neither it runs until stopped, with
    both it stops at whichever comes first. ``interval_ms`` is the spacing of event timestamps when
    ``start_time`` is set; None means ``1000 / rate`` (or 10 ms when ``rate`` is 0). The bounds are the operator's
    spec's, but ``rate`` also takes 0 (as fast as possible: the benchmark).
    """

    bootstrap_servers: str = option("localhost:9092", help="Kafka bootstrap servers", check=check_servers)
    topic: str = option(DEFAULT_TOPICS.source, help="topic to produce to", check=validate_topic)
    devices: int = option(10, help="number of devices (device_001...)", minimum=1, maximum=100_000)
    rate: float = option(100.0, help="events per second in total; 0 = flat out", minimum=0, maximum=1_000_000)
    duration: float | None = option(None, help="stop after this many seconds", minimum=0)
    count: int | None = option(None, help="stop after this many messages", minimum=0)
    anomaly_probability: float = _fraction(
        0.1, "probability that an event is an anomaly (value in [200, 500])"
    )
    seed: int | None = option(None, help="random seed; fixes the whole message sequence", minimum=0)
    start_time: datetime | None = option(
        None,
        help="ISO-8601 time of the first event (e.g. 2024-01-01T00:00:00Z); event i is at "
        "start + i * interval. Without it events carry the current UTC time",
        parse=parse_timestamp,
        show=format_timestamp,
    )
    interval_ms: float | None = option(
        None,
        help="milliseconds between event timestamps with --start-time (unset: 1000 / rate, or 10 if rate is 0)",
        minimum=0,
        exclusive_minimum=True,
    )
    late_fraction: float = _fraction(
        0.0, "probability that an event's time is moved back by up to --late-max-seconds"
    )
    late_max_seconds: float = option(60.0, help="largest delay of a late event", minimum=0.001)
    malformed_fraction: float = _fraction(
        0.0, f"probability that a message is malformed instead ({', '.join(MALFORMED_KINDS)})"
    )
    summary_file: str | None = option(None, help="also write the final summary JSON to this file")
    # librdkafka wants it above linger.ms (20 ms here); below 100 ms little could be delivered.
    message_timeout_ms: int = option(
        120_000,
        help=(
            "a message not delivered within this time fails (bounds a run against an unreachable broker; the "
            "default, the Java producer's delivery.timeout.ms, rides out a broker restart)"
        ),
        minimum=100,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.start_time is not None and self.start_time.tzinfo is None:
            object.__setattr__(self, "start_time", self.start_time.replace(tzinfo=UTC))

    @property
    def slot_interval_ms(self) -> float:
        """Milliseconds between the timestamps of consecutive messages when ``start_time`` is set."""
        if self.interval_ms is not None:
            return self.interval_ms
        return 1000.0 / self.rate if self.rate > 0 else 10.0

    @property
    def late_max_ms(self) -> int:
        """The largest delay of a late event, in whole milliseconds (at least 1)."""
        return max(1, round(self.late_max_seconds * 1000))


@dataclass(slots=True)
class Message:
    """One Kafka record to produce, with what the generator knows about it (the ground truth).

    ``kind`` is :data:`EVENT` or :data:`MALFORMED`; ``is_anomaly`` and ``is_late`` are only ever true for
    events; ``event_ms`` is the timestamp written in an event's payload, in milliseconds since the epoch (None for
    malformed messages).
    """

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    seq: int
    kind: str
    device_id: str
    is_anomaly: bool = False
    is_late: bool = False
    malformed_kind: str | None = None
    event_ms: int | None = None

    @property
    def event_time(self) -> datetime | None:
        """The event's timestamp (UTC), as written in its payload; None for malformed messages."""
        return None if self.event_ms is None else EPOCH + timedelta(milliseconds=self.event_ms)


class EventFactory:
    """Samples the message with a given sequence number; one instance per run, driven with seq = 0, 1, 2...

    Determinism: with a seed, calling :meth:`message` for the same seqs in the same order (and, without a
    ``start_time``, the same ``now``) gives identical messages.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._normal = _Choice(NORMAL_STATUS_WEIGHTS)
        self._anomaly = _Choice(ANOMALY_STATUS_WEIGHTS)
        self._devices = tuple(device_id(n, config.devices) for n in range(1, config.devices + 1))
        # Per device, made once: the record key, and the payload's text from the device id to the status.
        self._keys = tuple(device.encode() for device in self._devices)
        self._device_json = tuple(f',"device_id":"{device}","status":"' for device in self._devices)
        self._device_bits = config.devices.bit_length()
        start = config.start_time
        self._start_us = None if start is None else _epoch_us(start)
        self._interval_ms = config.slot_interval_ms
        self._text = _TimestampText()

    def slot_ms(self, seq: int, now: datetime) -> int:
        """On-time timestamp of message ``seq`` in ms since the epoch: ``start_time + seq * interval``, else
        ``now``; truncated to the millisecond."""
        if self._start_us is None:
            return _epoch_us(now) // 1000
        return (self._start_us + round(seq * self._interval_ms * 1000)) // 1000

    def slot_time(self, seq: int, now: datetime) -> datetime:
        """:meth:`slot_ms` as a UTC datetime."""
        return EPOCH + timedelta(milliseconds=self.slot_ms(seq, now))

    def message(self, seq: int, now: datetime) -> Message:
        """The message numbered ``seq``; ``now`` (UTC) is its timestamp when no start time is set."""
        cfg, rng = self.config, self._random
        # The draw order below is part of the reproducibility contract: changing it changes what seeds mean.
        # rng.randrange(devices), drawn as CPython draws it (3.10 to 3.13: randrange(n) is Random._randbelow(n),
        # which takes getrandbits(n.bit_length()) until the result is below n): the same draws, two calls fewer.
        devices, bits = cfg.devices, self._device_bits
        index = rng.getrandbits(bits)
        while index >= devices:
            index = rng.getrandbits(bits)
        device = self._devices[index]
        malformed = rng.random() < cfg.malformed_fraction
        anomaly = rng.random() < cfg.anomaly_probability
        # a + (b - a) * random() is what Random.uniform computes: the same draw, without the call. The value is
        # kept as the text of round(value, 2), as written in the payload (see _two_decimals).
        if anomaly:
            value_text = _two_decimals(_ANOMALY_LOW + _ANOMALY_SPAN * rng.random())
            status = self._anomaly.draw(rng)
        else:
            value_text = _two_decimals(_NORMAL_LOW + _NORMAL_SPAN * rng.random())
            status = self._normal.draw(rng)
        late = rng.random() < cfg.late_fraction
        event_ms = self.slot_ms(seq, now)
        if late:
            event_ms -= rng.randint(1, cfg.late_max_ms)
        timestamp = self._text.of(event_ms)

        seq_header = (HEADER_SEQ, str(seq).encode())
        if malformed:
            # float(value_text) is the rounded value itself (see _two_decimals).
            event = {
                "timestamp": timestamp,
                "value": float(value_text),
                "device_id": device,
                "status": status,
            }
            kind = rng.choice(MALFORMED_KINDS)
            return Message(
                key=self._keys[index],
                value=self._malformed_value(kind, event),
                headers=[seq_header, (HEADER_MALFORMED, kind.encode())],
                seq=seq,
                kind=MALFORMED,
                device_id=device,
                malformed_kind=kind,
            )
        headers = [seq_header]
        if anomaly:
            headers.append(_ANOMALY_HEADER)
        if late:
            headers.append(_LATE_HEADER)
        # The payload is _dumps(event) written directly: the same bytes (no string in it needs escaping, and
        # value_text is the repr json.dumps writes for the rounded value), several times faster.
        payload = f'{{"timestamp":"{timestamp}","value":{value_text}{self._device_json[index]}{status}"}}'
        # Positional arguments, in the order of the fields: with keywords the call costs twice as much.
        return Message(
            self._keys[index], payload.encode(), headers, seq, EVENT, device, anomaly, late, None, event_ms
        )

    def _malformed_value(self, kind: str, event: dict) -> bytes:
        rng = self._random
        if kind == EMPTY:
            return b""
        if kind == INVALID_UTF8:
            return b"\xff\xfe" + _dumps(event)
        if kind == INVALID_JSON:
            # Any proper prefix of a JSON object's text is not JSON: the closing brace is missing.
            text = _dumps(event)
            return text[: rng.randint(1, len(text) - 1)]
        body: object
        if kind == NOT_AN_OBJECT:
            body = [event[name] for name in FIELDS]
        elif kind == MISSING_FIELD:
            dropped = rng.choice(FIELDS)
            body = {name: v for name, v in event.items() if name != dropped}
        elif kind == INVALID_TYPE:
            if rng.random() < 0.5:
                body = {**event, "value": str(event["value"])}
            else:
                body = {**event, "device_id": int(event["device_id"].removeprefix("device_"))}
        elif kind == INVALID_TIMESTAMP:
            body = {**event, "timestamp": rng.choice(_BAD_TIMESTAMPS)}
        else:
            raise ValueError(f"unknown malformed kind {kind!r}; expected one of {', '.join(MALFORMED_KINDS)}")
        return _dumps(body)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _two_decimals(x: float) -> str:
    """``repr(round(x, 2))`` for an event value (10 to 500), with one conversion instead of three (``round``
    converts x to decimal text and back, ``repr`` converts the result to text again).

    ``f"{x:.2f}"`` is the decimal ``round(x, 2)`` rounds to: both round the exact binary value of x to 2 decimals,
    correctly, ties to even (CPython's dtoa, mode 3, for both). With at most 5 significant digits that decimal reads
    back as the float ``round`` returns, and ``repr`` (the shortest text that reads back as that float) writes it
    without trailing zeros, keeping one digit after the point: "12.50" -> "12.5", "100.00" -> "100.0".
    """
    text = f"{x:.2f}".rstrip("0")
    return text + "0" if text[-1] == "." else text


class _Choice:
    """``random.choices(population, weights)[0]`` with its cumulative weights computed once: the same single
    ``random()`` draw, the same bisection, the same result."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._population = tuple(weights)
        self._cumulative = list(accumulate(weights.values()))
        self._total = self._cumulative[-1] + 0.0
        self._hi = len(self._population) - 1

    def draw(self, rng: random.Random) -> str:
        return self._population[bisect(self._cumulative, rng.random() * self._total, 0, self._hi)]
