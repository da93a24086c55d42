"""End-to-end tier: Sluice installed on a real kind cluster by the same script as `make kind-up`.

The cluster is created once per test session (scripts/kind.sh up) and deleted afterwards. Its node image is the
one built here from package registries (SLUICE_KIND_NODE_IMAGE=offline: scripts/build-kind-node.sh), so the tier
needs no container registry; set SLUICE_KIND_NODE_IMAGE to a public image (kindest/node:v1.34.0) to run it on
kind's own node instead. A cluster that cannot be created or installed fails the tests, with kind's or helm's
error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from cluster import KEEP_CLUSTER_ENV, KindCluster, build_outputs

DEFAULT_NODE_IMAGE = "offline"
DEFAULT_CLUSTER = "sluice-e2e"
CLUSTER_ENV = "SLUICE_E2E_CLUSTER"
"""The cluster the tier creates (or reuses, when one of that name exists) and deletes."""


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    name = os.environ.get(CLUSTER_ENV) or DEFAULT_CLUSTER
    env = {
        **os.environ,
        "SLUICE_KIND_CLUSTER": name,
        "SLUICE_NAMESPACE": "sluice",
        "KUBECONFIG": str(tmp_path_factory.mktemp("kind") / "kubeconfig"),
        "PYTHON": sys.executable,
        "SLUICE_KUBECTL": build_outputs("build-kube.sh", "kubectl", timeout=900)["kubectl"],
        "SLUICE_KIND_NODE_IMAGE": os.environ.get("SLUICE_KIND_NODE_IMAGE") or DEFAULT_NODE_IMAGE,
    }
    images = build_outputs("build-images.sh", "spark-jobs", "operator", "kafka", timeout=1800)
    cluster = KindCluster(name=name, namespace="sluice", env=env, images=images)
    up = cluster.script("up")
    try:
        if up.returncode != 0:
            pytest.fail(f"scripts/kind.sh up failed (exit {up.returncode}):\n{up.stderr[-6000:]}")
        yield cluster
    finally:
        if os.environ.get(KEEP_CLUSTER_ENV) == "1":
            print(
                f"\nkeeping kind cluster {cluster.name} ({KEEP_CLUSTER_ENV}=1): KUBECONFIG={env['KUBECONFIG']}; "
                f"delete it with SLUICE_KIND_CLUSTER={cluster.name} make kind-down",
                file=sys.stderr,
            )
        else:
            down = cluster.script("down")
            if down.returncode != 0:
                print(f"scripts/kind.sh down failed:\n{down.stderr}", file=sys.stderr)
