"""End-to-end tier: Sluice installed on a real kind cluster by the same script as `make kind-up`.

The cluster (a control plane and two workers that share a directory of the host) is created once per test session
(scripts/kind.sh up) and deleted afterwards. Its node image is the
one built here from package registries (SLUICE_KIND_NODE_IMAGE=offline: scripts/build-kind-node.sh), so the tier
needs no container registry; set SLUICE_KIND_NODE_IMAGE to a public image (kindest/node:v1.34.0) to run it on
kind's own node instead. A cluster that cannot be created or installed fails the tests, with kind's or helm's
error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster import CLUSTER_PREFIX, ROOT, KindCluster, build_outputs, cluster_env, created

DEFAULT_CLUSTER = CLUSTER_PREFIX
CLUSTER_ENV = "SLUICE_E2E_CLUSTER"
"""The cluster the tier creates and deletes (one of that name left by an earlier session is deleted first)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test on the cluster gets the cluster's state in its report (KindCluster.diagnosis): pods, restarts,
    Warning events, the broker's log. A run on CI keeps nothing else once it ends."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("kind_cluster")
    if report.failed and isinstance(cluster, KindCluster):
        report.sections.append(("kind cluster at the failure", cluster.diagnosis()))
    return report


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    """A control plane and two workers sharing a host directory (k8s/kind-config-workers.yaml): the pipelines of
    every Spark mode run on it, the cluster-mode ones on the ReadWriteMany claim sluice-shared."""
    name = os.environ.get(CLUSTER_ENV) or DEFAULT_CLUSTER
    work = tmp_path_factory.mktemp("kind")
    env = cluster_env(
        name,
        kubeconfig=work / "kubeconfig",
        SLUICE_KIND_CONFIG=str(ROOT / "k8s" / "kind-config-workers.yaml"),
        SLUICE_KIND_SHARED_DIR=str(work / "shared"),
    )
    images = build_outputs("build-images.sh", "spark-jobs", "operator", "kafka", timeout=1800)
    cluster = KindCluster(name=name, namespace="sluice", env=env, images=images)
    with created(cluster, "up"):
        yield cluster
