"""A pod's container run here as a process, as a kubelet would run it: the tiers with no kubelet use it to run what
the operator built.

Two things differ from the pod and are said here: ``python3`` is this interpreter, and ``--jars`` adds the
connector jars that the job image bakes into pyspark. The checkpoint volume's mount path is mapped to a local
directory (the "PVC").
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from sluice_operator.checkpoints import STATE_MOUNT

from sluice_local.artifacts import connector_jars


def run_container(container: Mapping, volume: Path, log: Path) -> subprocess.Popen:
    """Start a pod's (only) container: its args with the state mount at ``volume``, its environment, output to
    ``log`` (appended), in its own process group."""
    program, flags = (
        list(container["args"][:3]),
        list(container["args"][3:]),
    )  # python3 -m <module>, its flags
    command = [sys.executable if c == "python3" else c for c in program]
    args = [a.replace(STATE_MOUNT, str(volume)) for a in flags]
    args += ["--jars", ",".join(str(j) for j in connector_jars())]  # baked into the image's pyspark
    env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}}
    env["PYSPARK_PYTHON"] = sys.executable
    env["HOME"] = str(volume.parent)
    env["SPARK_LOCAL_DIRS"] = str(volume.parent / "spark-local")
    with log.open("a") as out:
        return subprocess.Popen(
            command + args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
