"""Produce the lab's sensor events to Kafka, optionally late or malformed (ground truth in headers).

Prints progress to stderr every ~5 s and, at the end, the summary as one JSON line on stdout. Exits 0 when
every message was delivered, 1 otherwise, 2 on a bad flag.

Usage::

    python -m spark_jobs.generator --bootstrap-servers localhost:9092 --rate 100 --duration 60
    sluice-generator --count 10000 --rate 0 --seed 7 --start-time 2024-01-01T00:00:00Z \\
        --late-fraction 0.05 --malformed-fraction 0.01 --summary-file /tmp/generator-summary.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import parse_options


def main(argv: list[str] | None = None, *, run: Callable[[GeneratorConfig], dict] | None = None) -> int:
    """Run the generator with ``argv`` (default: the command line); return the process exit code."""
    config: GeneratorConfig = parse_options(
        GeneratorConfig,
        argv,
        prog="sluice-generator",
        description="Produce the lab's sensor events to Kafka (see the module docstring).",
    )
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
