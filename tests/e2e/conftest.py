"""End-to-end tier: Sluice installed on a real kind cluster by the same script as `make kind-up`.

The cluster is created once per test session (scripts/kind.sh up) and deleted afterwards. Where kind cannot create
a cluster because no node image is present or pullable (a machine with no container registry), every e2e test is
skipped with kind's own error as the reason; any other failure of the install fails the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIND_SCRIPT = ROOT / "scripts" / "kind.sh"
NODE_IMAGE_UNAVAILABLE = 3
"""scripts/kind.sh's exit status when kind cannot create the cluster for want of a node image."""
INSTALL_TIMEOUT_S = 40 * 60


@dataclass(frozen=True)
class KindCluster:
    name: str
    namespace: str
    env: dict[str, str]

    def script(self, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(KIND_SCRIPT), command],
            env={**self.env, **extra},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                self.env["SLUICE_KUBECTL"],
                "--context",
                f"kind-{self.name}",
                "--namespace",
                self.namespace,
                *args,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
        return result


def _kubectl_path() -> str:
    output = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-kube.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    return next(line.split("=", 1)[1] for line in output.splitlines() if line.startswith("kubectl="))


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    env = {
        **os.environ,
        "SLUICE_KIND_CLUSTER": "sluice-e2e",
        "SLUICE_NAMESPACE": "sluice",
        "KUBECONFIG": str(tmp_path_factory.mktemp("kind") / "kubeconfig"),
        "PYTHON": sys.executable,
        "SLUICE_KUBECTL": _kubectl_path(),
    }
    cluster = KindCluster(name="sluice-e2e", namespace="sluice", env=env)
    up = cluster.script("up")
    if up.returncode == NODE_IMAGE_UNAVAILABLE:
        reason = " ".join(line for line in up.stderr.splitlines() if line.startswith("kind.sh:"))
        pytest.skip(f"kind cannot create a cluster on this machine: {reason}")
    try:
        if up.returncode != 0:
            pytest.fail(f"scripts/kind.sh up failed (exit {up.returncode}):\n{up.stderr[-6000:]}")
        yield cluster
    finally:
        down = cluster.script("down")
        if down.returncode != 0:
            print(f"scripts/kind.sh down failed:\n{down.stderr}", file=sys.stderr)
