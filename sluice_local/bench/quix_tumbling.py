"""The benchmark's peer: the windowed job's 10 s tumbling aggregation per device, written with Quix Streams.

Run by the Python of its own virtualenv (Quix Streams pins its own confluent-kafka), never imported by Sluice:

    quix-venv/bin/python quix_tumbling.py --bootstrap B --topic T --output O --group G --state-dir D --result F

It reads ``T`` from the beginning, keeps the records Sluice's parser would accept (the same four-field rules; the
others are skipped), takes each event's own timestamp as its time (a skipped record keeps its partition's latest
event time, so it cannot move the windows' clock), and writes each closed window (grace 10 s, as Sluice's
watermark) to ``O`` as JSON: ``start, end`` (epoch ms), ``device_id``, ``avg_value, max_value, min_value,
record_count``. It stops when no record has arrived for ``--idle`` seconds, then writes the time from the first
record to the last one processed, and the process's CPU seconds over the same span, to ``F``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from datetime import UTC, datetime

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean, Min

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?$")


def event(raw: bytes | None) -> dict | None:
    """The event in ``raw`` if Sluice's parser accepts it, else None."""
    if not raw:
        return None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    stamp, value, device, status = (body.get(k) for k in ("timestamp", "value", "device_id", "status"))
    if not (isinstance(stamp, str) and ISO.match(stamp)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if not (isinstance(device, str) and device and isinstance(status, str) and status):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return {"ms": int(moment.timestamp() * 1000), "device_id": device, "value": float(value)}


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--bootstrap", "--topic", "--output", "--group", "--state-dir", "--result"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()

    clock = {"latest": None}
    parsed: dict[int, dict | None] = {}  # the record the extractor just parsed, for the pipeline (parse once)
    span = {"first": None, "last": None, "cpu_first": None, "cpu_last": None, "records": 0, "events": 0}

    def timestamp(value, _headers, kafka_ms, _type) -> int:
        result = event(value)
        parsed[id(value)] = result
        if result is None:  # skipped later; it must not move the windows' clock
            return clock["latest"] if clock["latest"] is not None else kafka_ms
        clock["latest"] = result["ms"] if clock["latest"] is None else max(clock["latest"], result["ms"])
        return result["ms"]

    def seen(value):
        now, cpu = time.monotonic(), time.process_time()
        if span["first"] is None:
            span["first"], span["cpu_first"] = now, cpu
        span["last"], span["cpu_last"] = now, cpu
        span["records"] += 1
        return parsed.pop(id(value), None)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
    )
    source = app.topic(args.topic, value_deserializer="bytes", timestamp_extractor=timestamp)
    output = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(seen).filter(lambda e: e is not None)
    sdf = sdf.update(lambda _e: span.__setitem__("events", span["events"] + 1))
    windows = (
        sdf.tumbling_window(duration_ms=10_000, grace_ms=10_000)
        .agg(
            avg_value=Mean("value"),
            max_value=Max("value"),
            min_value=Min("value"),
            record_count=Count(),
        )
        .final()
    )
    windows = windows.apply(lambda w, key, *_: {**w, "device_id": key.decode()}, metadata=True)
    windows.to_topic(output)
    app.run(timeout=args.idle)
    result = {
        "records": span["records"],
        "events": span["events"],
        "seconds": (span["last"] - span["first"]) if span["first"] is not None else 0.0,
        "cpu_seconds": (span["cpu_last"] - span["cpu_first"]) if span["first"] is not None else 0.0,
    }
    with open(args.result, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
