"""Fixtures shared by every tier, each started on first use and shared by the test session: a local SparkSession
(UTC, with the Kafka connector), a real single-node Kafka broker, and a real control plane (etcd + kube-apiserver +
kube-controller-manager) with an admin API client."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes import client

    from sluice_local.control_plane import ControlPlane


RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
"""PodSecurity labels of every test namespace: pods must meet the "restricted" standard, as in production."""

DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession with the pinned Kafka connector jars on its class path.

    One JVM serves the whole test session; the connector jars come from the project's cache (resolved from Maven
    Central on first use), so the same session serves unit tests and Kafka-backed integration tests.
    """
    from pyspark.sql import SparkSession

    from sluice_local.artifacts import connector_jars

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-tests")
        .config("spark.jars", ",".join(str(j) for j in connector_jars()))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):
    """A started single-node KRaft broker, shared by the session; its log is kept in pytest's temp dir."""
    log_file = tmp_path_factory.mktemp("kafka-broker") / "broker.log"
    from sluice_local.kafka_broker import KafkaBroker

    with KafkaBroker(log_file=log_file) as broker:
        yield broker


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ControlPlane]:
    """A started etcd + kube-apiserver + kube-controller-manager, shared by the session.

    The first run on a machine builds the binaries (minutes; see scripts/build-kube.sh). The components' logs
    are kept in pytest's temp dir, and their tails are part of any startup error.
    """
    from sluice_local.control_plane import ControlPlane, ensure_binaries

    binaries = ensure_binaries(progress=_terminal_printer(request.config))
    log_dir = tmp_path_factory.mktemp("control-plane-logs")
    with ControlPlane(log_dir=log_dir, binaries=binaries) as plane:
        yield plane


def _terminal_printer(config: pytest.Config) -> Callable[[str], None]:
    """Show lines on the terminal while output is captured: a first build runs minutes and should say so."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def show(line: str) -> None:
        if capture is None or reporter is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return show


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An admin (``system:masters``) API client of the session's control plane."""
    with control_plane.api_client() as api:
        yield api


def _namespace_name(test_name: str) -> str:
    """A DNS-1123 label from a test's name plus a random suffix, so reruns and parametrizations never clash."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:48].rstrip("-") or "test"
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(
    control_plane: ControlPlane, k8s_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A new namespace that enforces PodSecurity "restricted", with its ``default`` ServiceAccount present.

    Pods are only admitted once that ServiceAccount exists, so the fixture waits for the controller to make it.
    The namespace is deleted afterwards without waiting for the namespace controller to empty it.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s_api)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED_LABELS))
    )
    try:
        deadline = time.monotonic() + DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                break
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ServiceAccount default not created in namespace {name} within "
                    f"{DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S:.0f} s; see kube-controller-manager.log in "
                    f"{control_plane.log_dir}"
                )
            time.sleep(0.1)
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
