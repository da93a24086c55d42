"""The producing loop: paces messages from :class:`~spark_jobs.generator.model.EventFactory` to Kafka.

Batches with an idempotent, lz4-compressed confluent-kafka producer (no per-message flush), stops on --count /
--duration / SIGINT / SIGTERM, flushes, and returns a summary dict.

Deliveries are counted in bulk: librdkafka reports only the messages that fail (``delivery.report.only.error``),
so a delivered message costs no Python callback; delivered = produced - failed - still queued after the final
flush. At a fixed rate the loop sleeps between ticks (at least :data:`TICK_SECONDS`) and sends every message that
is due at once, so pacing costs little CPU whatever the rate. An unreachable broker cannot hang the run:
``message.timeout.ms`` makes undeliverable messages fail, and they are counted as failed.

Usage::

    summary = run(GeneratorConfig(bootstrap_servers="localhost:9092", count=1000, seed=1))
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from confluent_kafka import KafkaError, KafkaException, Producer

from spark_jobs.generator.model import (
    EPOCH,
    EVENT,
    MALFORMED_KINDS,
    EventFactory,
    GeneratorConfig,
    Message,
    format_timestamp,
)

__all__ = ["DeliveryStats", "KafkaProducerLike", "producer_settings", "run"]

#: How many distinct error messages a summary keeps.
MAX_KEPT_ERRORS = 5
#: Seconds between progress lines on stderr.
PROGRESS_SECONDS = 5.0
#: The final flush waits at most this long; what is still queued then counts as failed.
FLUSH_TIMEOUT_SECONDS = 30.0
#: Shortest sleep while pacing: the loop wakes up at most this often and sends what is due at once. As long as the
#: producer's linger.ms (it batches for that long anyway); fewer, larger bursts keep the CPU cost low (measured at
#: 1,000 events/s: 0.11 cores with 5 ms ticks, 0.07 with 20 ms).
TICK_SECONDS = 0.02
# The shortest timeout poll() sleeps for (librdkafka counts whole milliseconds).
_MIN_POLL_SECONDS = 0.001
# Longest single wait while pacing, so signals, progress lines and delivery callbacks are served promptly.
_WAIT_STEP_SECONDS = 0.05
# Serve (error) delivery callbacks every this many messages when sending flat out.
_POLL_EVERY = 1000
# The current UTC time; a partial rather than a lambda: no Python frame per call (once per message).
_utc_now = functools.partial(datetime.now, UTC)


class KafkaProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the loop uses (tests pass a fake)."""

    def produce(self, topic: str, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...
    def __len__(self) -> int: ...


class DeliveryStats:
    """Counts failed deliveries (the only ones reported) and keeps the first few distinct error messages."""

    def __init__(self, err: TextIO = sys.stderr) -> None:
        self.failed = 0
        self.errors: list[str] = []
        self.fatal = False
        self._err = err
        self._reported_codes: set[int] = set()

    def note(self, text: str) -> None:
        """Keep ``text`` if it is new and fewer than :data:`MAX_KEPT_ERRORS` are kept."""
        if text not in self.errors and len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(text)

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        """Delivery callback, from ``poll``/``flush``: called for failed messages only (see the settings)."""
        if err is not None:
            self.failed += 1
            self.note(f"delivery failed: {_describe(err)}")

    def on_error(self, err: KafkaError) -> None:
        """Client-wide error callback (broker down, authentication...): reported once per error code."""
        self.note(f"client error: {_describe(err)}")
        if err.fatal():
            self.fatal = True
        if err.code() not in self._reported_codes:
            self._reported_codes.add(err.code())
            print(f"sluice-generator: Kafka client error: {_describe(err)}", file=self._err, flush=True)


def _describe(err: KafkaError) -> str:
    return f"{err.name()}: {err.str()}"


class _FirstOccurrence(logging.Filter):
    """Passes each client log line once: librdkafka repeats e.g. "Connect ... failed" every retry."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        shape = re.sub(r"\d+", "#", record.getMessage())
        if shape in self._seen:
            return False
        self._seen.add(shape)
        return True


def _client_logger(err: TextIO) -> logging.Logger:
    # A private, unregistered logger: client log lines go to ``err`` once each, whatever logging is set up.
    logger = logging.Logger("sluice.generator.kafka")
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("sluice-generator: Kafka client log: %(message)s"))
    handler.addFilter(_FirstOccurrence())
    logger.addHandler(handler)
    return logger


def producer_settings(
    config: GeneratorConfig, stats: DeliveryStats, err: TextIO = sys.stderr
) -> dict[str, Any]:
    """librdkafka settings: batched, lz4, idempotent with acks=all, bounded delivery time, and delivery reports
    for failed messages only."""
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": "sluice-generator",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 100_000,
        "message.timeout.ms": config.message_timeout_ms,
        "delivery.report.only.error": True,
        "on_delivery": stats.on_delivery,
        "error_cb": stats.on_error,
        "logger": _client_logger(err),
    }


class _StopRequest:
    """Set by SIGINT/SIGTERM; the loop checks it between messages."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        self.reason = signal.Signals(signum).name


@contextlib.contextmanager
def _signals_handled(stop: _StopRequest, enabled: bool) -> Iterator[None]:
    # Signal handlers can only be installed from the main thread.
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Tally:
    """What was produced, by kind; summarised at the end."""

    def __init__(self) -> None:
        self.produced = 0
        self.valid_events = 0
        self.anomalies = 0
        self.late = 0
        self.malformed: Counter[str] = Counter()
        self.earliest_ms: int | None = None
        self.latest_ms: int | None = None

    def add(self, message: Message) -> None:
        self.produced += 1
        if message.kind != EVENT:
            self.malformed[message.malformed_kind or "unknown"] += 1
            return
        self.valid_events += 1
        # Branches rather than adding the bools: int + bool takes the interpreter's slow path (this is per message).
        if message.is_anomaly:
            self.anomalies += 1
        if message.is_late:
            self.late += 1
        moment = message.event_ms
        if moment is not None:
            if self.earliest_ms is None or moment < self.earliest_ms:
                self.earliest_ms = moment
            if self.latest_ms is None or moment > self.latest_ms:
                self.latest_ms = moment

    def iso(self, ms: int | None) -> str | None:
        return None if ms is None else format_timestamp(EPOCH + timedelta(milliseconds=ms))


def run(
    config: GeneratorConfig,
    *,
    producer: Callable[[dict[str, Any]], KafkaProducerLike] = Producer,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = _utc_now,
    err: TextIO = sys.stderr,
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Produce messages as ``config`` says until --count, --duration or a signal; flush; return the summary.

    ``producer`` builds the client from :func:`producer_settings` (tests pass a fake).

    Summary keys: ``topic``, ``produced``, ``delivered``, ``failed`` (delivery failures, produce errors and
    messages still queued after the final flush), ``errors`` (first few, distinct), ``valid_events``,
    ``anomalies``, ``late``, ``malformed`` (kind -> count), ``duration_seconds``, ``rate_achieved`` and
    ``cpu_seconds`` (of the producing phase, flush excluded; CPU of the whole process, the client's threads
    included), ``flush_seconds`` (the final flush), ``first_event_time`` / ``last_event_time`` (earliest / latest
    timestamp of the valid events, ISO, or None), ``stopped_by`` (count, duration, SIGINT, SIGTERM or
    fatal-error) and ``seed``.
    """
    stats = DeliveryStats(err)
    kafka = producer(producer_settings(config, stats, err))
    factory = EventFactory(config)
    tally = _Tally()
    stop = _StopRequest()

    start = clock()
    cpu_start = time.process_time()
    next_progress = start + PROGRESS_SECONDS

    def progress_due() -> None:
        nonlocal next_progress
        now = clock()
        if now >= next_progress:
            elapsed = now - start
            rate = tally.produced / elapsed if elapsed > 0 else 0.0
            delivered = tally.produced - stats.failed - len(kafka)
            print(
                f"sluice-generator: produced={tally.produced} delivered={delivered} "
                f"failed={stats.failed} rate={rate:.1f}/s",
                file=err,
                flush=True,
            )
            next_progress = now + PROGRESS_SECONDS

    def stop_reason() -> str | None:
        if stop.reason is not None:
            return stop.reason
        return "fatal-error" if stats.fatal else None

    def wait_until(target: float) -> None:
        # Sleeping in poll() serves delivery callbacks meanwhile; targets are absolute, so no drift builds up.
        # poll() sleeps whole milliseconds: under one millisecond left, the target counts as reached (a shorter
        # timeout would return at once, again and again, spinning a core until the target passes).
        while stop_reason() is None:
            remaining = target - clock()
            if remaining < _MIN_POLL_SECONDS:
                return
            kafka.poll(min(remaining, _WAIT_STEP_SECONDS))
            progress_due()

    def produce(message: Message) -> None:
        while True:
            try:
                kafka.produce(config.topic, key=message.key, value=message.value, headers=message.headers)
                tally.add(message)
                return
            except BufferError:
                # The local queue is full: let the client send (or expire) some, then retry.
                if stop_reason() is not None:
                    return
                kafka.poll(0.1)
                progress_due()
            except KafkaException as exc:
                tally.add(message)
                stats.failed += 1
                stats.note(f"produce failed: {exc}")
                return

    seq = 0
    stopped_by = ""
    count, rate, duration = config.count, config.rate, config.duration
    message_of, needs_now = factory.message, config.start_time is None
    no_time = wall_clock() if not needs_now else None
    with _signals_handled(stop, handle_signals):
        while True:
            if count is not None and seq >= count:
                stopped_by = "count"
                break
            if rate > 0:
                target = start + seq / rate
                if duration is not None and target - start >= duration:
                    stopped_by = "duration"
                    break
                now = clock()
                if target > now:
                    # Not due yet: sleep at least a tick, then send every message that is due by then at once.
                    wait_until(max(target, now + TICK_SECONDS))
            elif duration is not None and seq % _POLL_EVERY == 0 and clock() - start >= duration:
                stopped_by = "duration"
                break
            if stop.reason is not None or stats.fatal:
                stopped_by = stop_reason() or ""
                break
            produce(message_of(seq, wall_clock() if needs_now else no_time))
            seq += 1
            if seq % _POLL_EVERY == 0:
                kafka.poll(0)
                progress_due()
        elapsed = clock() - start
        cpu = time.process_time() - cpu_start
        print(f"sluice-generator: stopping ({stopped_by}); flushing {tally.produced} messages", file=err)
        flush_started = clock()
        queued = kafka.flush(FLUSH_TIMEOUT_SECONDS)
        flush_seconds = clock() - flush_started
    if queued:
        stats.failed += queued
        stats.note(f"{queued} messages were still queued after waiting {FLUSH_TIMEOUT_SECONDS:.0f} s")

    return {
        "topic": config.topic,
        "produced": tally.produced,
        "delivered": tally.produced - stats.failed,
        "failed": stats.failed,
        "errors": list(stats.errors),
        "valid_events": tally.valid_events,
        "anomalies": tally.anomalies,
        "late": tally.late,
        "malformed": {kind: tally.malformed[kind] for kind in MALFORMED_KINDS},
        "duration_seconds": round(elapsed, 3),
        "rate_achieved": round(tally.produced / elapsed, 1) if elapsed > 0 else 0.0,
        "cpu_seconds": round(cpu, 3),
        "flush_seconds": round(flush_seconds, 3),
        "first_event_time": tally.iso(tally.earliest_ms),
        "last_event_time": tally.iso(tally.latest_ms),
        "stopped_by": stopped_by,
        "seed": config.seed,
    }
