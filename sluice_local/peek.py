"""``python -m sluice_local peek``: wait until Kafka topics hold records, then print the latest of each.

Used by ``make kind-demo`` to show a pipeline's windowed results and alerts, and handy against any broker::

    python -m sluice_local peek --bootstrap localhost:30092 windowed_results_topic anomaly_alerts_topic
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from sluice_local.topics import TopicError, wait_for_records


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sluice_local peek", description=__doc__.split("\n\n")[0])
    parser.add_argument("topics", nargs="+", help="topics to read")
    parser.add_argument(
        "--bootstrap", default="localhost:9092", help="bootstrap servers (default %(default)s)"
    )
    parser.add_argument(
        "--count", type=int, default=1, help="wait for at least this many records (default 1)"
    )
    parser.add_argument(
        "--show", type=int, default=5, help="print this many of the latest records (default 5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait per topic (default 180)"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.show < 0 or args.timeout <= 0:
        parser.error("--count must be >= 1, --show >= 0 and --timeout > 0")
    return args


def _line(message) -> str:
    _kind, millis = message.timestamp()
    when = datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    key = message.key().decode("utf-8", "replace") if message.key() is not None else "-"
    value = message.value().decode("utf-8", "replace") if message.value() is not None else "<null>"
    return f"  {when}  key={key}  {value}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    failed = False
    for topic in args.topics:
        try:
            records = wait_for_records(args.bootstrap, topic, count=args.count, timeout=args.timeout)
        except TopicError as exc:
            print(f"{topic}: {exc}", file=sys.stderr)
            failed = True
            continue
        latest = sorted(records, key=lambda m: m.timestamp()[1])[-args.show :] if args.show else []
        print(f"{topic}: {len(records)} record(s); the latest {len(latest)}:")
        for message in latest:
            print(_line(message))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
