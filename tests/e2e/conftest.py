"""End-to-end tier: Sluice installed on a real kind cluster by the same script as `make kind-up`.

The cluster is created once per test session (scripts/kind.sh up) and deleted afterwards. Its node image is the
one built here from package registries (SLUICE_KIND_NODE_IMAGE=offline: scripts/build-kind-node.sh), so the tier
needs no container registry; set SLUICE_KIND_NODE_IMAGE to a public image (kindest/node:v1.34.0) to run it on
kind's own node instead. A cluster that cannot be created or installed fails the tests, with kind's or helm's
error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster import CLUSTER_PREFIX, KindCluster, build_outputs, cluster_env, created

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
    name = os.environ.get(CLUSTER_ENV) or DEFAULT_CLUSTER
    env = cluster_env(name, kubeconfig=tmp_path_factory.mktemp("kind") / "kubeconfig")
    images = build_outputs("build-images.sh", "spark-jobs", "operator", "kafka", timeout=1800)
    cluster = KindCluster(name=name, namespace="sluice", env=env, images=images)
    with created(cluster, "up"):
        yield cluster
