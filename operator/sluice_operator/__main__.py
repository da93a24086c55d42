"""``python -m sluice_operator``: run the operator (kopf) with its handlers, liveness probe and metrics.

Settings come from SLUICE_* environment variables (see :mod:`sluice_operator.settings`); the liveness endpoint is
http://0.0.0.0:8080/healthz unless ``--liveness`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf

from sluice_operator import logs
from sluice_operator.settings import SettingsError, from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice-operator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"sluice-operator: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_prefix=True)
    if not args.verbose:
        logs.quiet_success()
        # librdkafka repeats each failed connection many times a second; the condition and Event carry the cause.
        logging.getLogger("sluice_operator.kafka_admin.librdkafka").setLevel(logging.CRITICAL)
    from sluice_operator import handlers  # noqa: F401 — registers the handlers with kopf

    namespaces = [settings.watch_namespace] if settings.watch_namespace else []
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
