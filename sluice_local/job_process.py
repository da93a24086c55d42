"""How the local runtime runs a component: ``python -m <module>`` on this interpreter, with the flags the operator
gives its pod (:func:`sluice_operator.commands.arguments`).

A Spark job's Python driver is the parent process and starts Spark's JVM itself, so SIGTERM reaches the driver
first: its handler lets the micro-batch in flight commit, stops the queries and then the JVM. (Under
``spark-submit`` the JVM is the parent, and SIGTERM to it stops the SparkContext under the running queries.) The
pods' image holds the Kafka connector in Spark's jars; here the jobs get the pinned jars with ``--jars``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sluice_operator.components import Component

from sluice_local.artifacts import connector_jars


def local_command(component: Component, args: Sequence[str]) -> list[str]:
    """The command line that runs ``component`` with ``args`` (and, for a Spark job, the Kafka connector)."""
    command = [sys.executable, "-m", component.module, *args]
    if component.spark:
        command += ["--jars", ",".join(str(j) for j in connector_jars())]
    return command


def job_environment() -> dict[str, str]:
    """Environment of a job process: UTC, and Spark's Python workers on this same interpreter."""
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["TZ"] = "UTC"
    return env
