"""Produce the lab's sensor events to Kafka, optionally late or malformed (ground truth in headers).

Prints progress to stderr every ~5 s and, at the end, the summary as one JSON line on stdout. Exits 0 when
every message was delivered, 1 otherwise, 2 on a bad flag.

Usage::

    python -m spark_jobs.generator --bootstrap-servers localhost:9092 --rate 100 --duration 60
    sluice-generator --count 10000 --rate 0 --seed 7 --start-time 2024-01-01T00:00:00Z \\
        --late-fraction 0.05 --malformed-fraction 0.01 --summary-file /tmp/generator-summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from spark_jobs.generator.model import MALFORMED_KINDS, GeneratorConfig, parse_timestamp
from spark_jobs.options import parse_with


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 100 or 0.25)") from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (e.g. 10)") from None


def build_parser() -> argparse.ArgumentParser:
    """The generator's flags; defaults come from :class:`GeneratorConfig`."""
    d = GeneratorConfig()
    p = argparse.ArgumentParser(
        prog="sluice-generator",
        description="Produce the lab's sensor events to Kafka (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bootstrap-servers", default=d.bootstrap_servers, help="Kafka bootstrap servers")
    p.add_argument("--topic", default=d.topic, help="topic to produce to")
    p.add_argument("--devices", type=_whole, default=d.devices, help="number of devices (device_001...)")
    p.add_argument("--rate", type=_number, default=d.rate, help="events per second in total; 0 = flat out")
    p.add_argument("--duration", type=_number, default=None, help="stop after this many seconds")
    p.add_argument("--count", type=_whole, default=None, help="stop after this many messages")
    p.add_argument(
        "--anomaly-probability",
        type=_number,
        default=d.anomaly_probability,
        help="probability (0..1) that an event is an anomaly (value in [200, 500])",
    )
    p.add_argument("--seed", type=_whole, default=None, help="random seed; fixes the whole message sequence")
    p.add_argument(
        "--start-time",
        default=None,
        help="ISO-8601 time of the first event (e.g. 2024-01-01T00:00:00Z); event i is at "
        "start + i * interval. Without it events carry the current UTC time",
    )
    p.add_argument(
        "--interval-ms",
        type=_number,
        default=None,
        help="milliseconds between event timestamps with --start-time "
        "(default: 1000 / rate, or 10 if rate is 0)",
    )
    p.add_argument(
        "--late-fraction",
        type=_number,
        default=d.late_fraction,
        help="probability (0..1) that an event's timestamp is moved back by up to --late-max-seconds",
    )
    p.add_argument(
        "--late-max-seconds", type=_number, default=d.late_max_seconds, help="largest delay of a late event"
    )
    p.add_argument(
        "--malformed-fraction",
        type=_number,
        default=d.malformed_fraction,
        help=f"probability (0..1) that a message is malformed instead ({', '.join(MALFORMED_KINDS)})",
    )
    p.add_argument("--summary-file", default=None, help="also write the final summary JSON to this file")
    p.add_argument(
        "--message-timeout-ms",
        type=_whole,
        default=d.message_timeout_ms,
        help="a message not delivered within this time fails (bounds a run against an unreachable broker)",
    )
    return p


def config_from(ns: argparse.Namespace) -> GeneratorConfig:
    """Build :class:`GeneratorConfig` from parsed flags (raises OptionsError naming the flag)."""
    return GeneratorConfig(
        bootstrap_servers=ns.bootstrap_servers,
        topic=ns.topic,
        devices=ns.devices,
        rate=ns.rate,
        duration=ns.duration,
        count=ns.count,
        anomaly_probability=ns.anomaly_probability,
        seed=ns.seed,
        start_time=None if ns.start_time is None else parse_timestamp(ns.start_time, flag="--start-time"),
        interval_ms=ns.interval_ms,
        late_fraction=ns.late_fraction,
        late_max_seconds=ns.late_max_seconds,
        malformed_fraction=ns.malformed_fraction,
        summary_file=ns.summary_file,
        message_timeout_ms=ns.message_timeout_ms,
    )


def main(argv: list[str] | None = None, *, run: Callable[[GeneratorConfig], dict] | None = None) -> int:
    """Run the generator with ``argv`` (default: the command line); return the process exit code."""
    config: GeneratorConfig = parse_with(build_parser(), config_from, argv)
    if run is None:
        from spark_jobs.generator.producer import run

    summary = run(config)
    print(json.dumps(summary), flush=True)
    status = 0
    if config.summary_file:
        try:
            path = Path(config.summary_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            print(
                f"sluice-generator: cannot write --summary-file {config.summary_file}: {exc}", file=sys.stderr
            )
            status = 1
    if summary["failed"]:
        errors = "; ".join(summary["errors"]) or "no error message"
        print(
            f"sluice-generator: {summary['failed']} of {summary['produced']} messages were not delivered to "
            f"topic {config.topic!r} at {config.bootstrap_servers}. First errors: {errors}",
            file=sys.stderr,
        )
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
