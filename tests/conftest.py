"""Fixtures shared by every tier, each started on first use and shared by the test session: a local SparkSession
(UTC, with the Kafka connector), a real single-node Kafka broker, and a real control plane (etcd + kube-apiserver +
kube-controller-manager) with an admin API client."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes import client

    from sluice_local.control_plane import ControlPlane


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
