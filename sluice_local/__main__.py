"""``python -m sluice_local``: the local runtime's commands.

* ``demo``   — run the whole pipeline locally for a while and summarize (see :mod:`sluice_local.demo`);
* ``broker`` — start a single-node Kafka broker and wait for Ctrl-C (see :mod:`sluice_local.kafka_broker`);
* ``fetch``  — resolve the pinned jars into the cache (see :mod:`sluice_local.artifacts`);
* ``peek``   — wait for records in Kafka topics and print the latest (see :mod:`sluice_local.peek`);
* ``bench``  — measure Sluice against the machine's limits, as ratios (see :mod:`sluice_local.bench.cli`).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = {"demo", "broker", "fetch", "peek", "bench"}
    if not args or args[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nusage: python -m sluice_local {{{','.join(sorted(commands))}}} [options]", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from sluice_local.demo import main as run
    elif command == "broker":
        from sluice_local.kafka_broker import main as run
    elif command == "peek":
        from sluice_local.peek import main as run
    elif command == "bench":
        from sluice_local.bench.cli import main as run
    else:
        from sluice_local.artifacts import main as run

        rest = ["fetch", *rest]
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
