"""How the local runtime launches a streaming job: ``python -m spark_jobs.<job>`` in Spark local mode.

The Python driver is the parent process and starts Spark's JVM itself, so SIGTERM reaches the driver first: its
handler lets the micro-batch in flight commit, stops the queries and then the JVM. (Under ``spark-submit`` the JVM
is the parent, and SIGTERM to it stops the SparkContext under the running queries.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sluice_local.artifacts import connector_jars

#: The job modules, in the order they are started.
JOBS = ("basic", "windowed", "anomaly")


def job_command(job: str, job_args: Sequence[str], *, master: str = "local[2]") -> list[str]:
    """The command line that runs ``spark_jobs.<job>`` with its flags and the Kafka connector jars."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; the jobs are {', '.join(JOBS)}")
    jars = ",".join(str(j) for j in connector_jars())
    return [sys.executable, "-m", f"spark_jobs.{job}", "--master", master, "--jars", jars, *job_args]


def job_environment() -> dict[str, str]:
    """Environment of a job process: UTC, and Spark's Python workers on this same interpreter."""
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["TZ"] = "UTC"
    return env
