"""Fixtures shared by every tier, each started on first use and shared by the test session: a local SparkSession
(UTC, with the Kafka connector), a real single-node Kafka broker, a real control plane (etcd + kube-apiserver +
kube-controller-manager) with an admin API client, and the real helm binary rendering the charts."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from kubernetes import client
    from support.control_plane import ControlPlane


ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "charts"
DEPLOY_TOOLS_SCRIPT = ROOT / "scripts" / "build-deploy-tools.sh"

TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
"""HotSpot's first compiler only, in every JVM the tests start: the Spark sessions and job processes, the Kafka
brokers, and the containers of the images tier (tests/images/containers.py passes it on). A test's JVM lives for
seconds to minutes, and such a JVM spends about half its CPU in the optimising compiler (the benchmark's quick mode
measured a short job run at 28-33 CPU s with the first compiler only, 55-63 with both); on two cores shared by two
pytest lanes that is time every other test waits for. The code paths and the outputs are the same: no test asserts
a timing. Set JAVA_TOOL_OPTIONS (even empty) to run the tests with your own JVM options instead; each JVM prints
"Picked up JAVA_TOOL_OPTIONS" on its stderr."""
os.environ.setdefault("JAVA_TOOL_OPTIONS", TEST_JVM_OPTIONS)

RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
"""PodSecurity labels of every test namespace: pods must meet the "restricted" standard, as in production."""

DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S = 30.0


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM leaves a test session the way Ctrl-C does: through pytest's teardown, so the brokers, control planes,
    Spark sessions and kind clusters its fixtures started (each leading a process group of its own) are stopped, not
    left running. scripts/pytest-lanes.sh stops the lanes running in the background this way when the run is
    interrupted, and a CI runner's timeout sends SIGTERM too."""
    from sluice_local.processes import interrupt_on_sigterm

    interrupt_on_sigterm()


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
    from support.control_plane import ControlPlane, ensure_binaries

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


@contextlib.contextmanager
def _restricted_namespace(control_plane: ControlPlane, k8s_api: client.ApiClient, name: str) -> Iterator[str]:
    """A new namespace ``name`` that enforces PodSecurity "restricted", with its ``default`` ServiceAccount present.

    Pods are only admitted once that ServiceAccount exists, so this waits for the controller to make it. The
    namespace is deleted afterwards without waiting for the namespace controller to empty it.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s_api)
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


@pytest.fixture
def namespace(
    control_plane: ControlPlane, k8s_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A new namespace for the test (see :func:`_restricted_namespace`)."""
    with _restricted_namespace(control_plane, k8s_api, _namespace_name(request.node.name)) as name:
        yield name


@pytest.fixture(scope="module")
def module_namespace(
    control_plane: ControlPlane, k8s_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A new namespace shared by a module's tests (see :func:`_restricted_namespace`)."""
    with _restricted_namespace(
        control_plane, k8s_api, _namespace_name(request.module.__name__.split(".")[-1])
    ) as name:
        yield name


# --- Helm ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    """The helm binary, run with no repositories or plugins of the user's (a private config and cache dir)."""

    binary: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
        return result

    def template(
        self, chart: str, values: dict | None = None, *, release: str = "t", namespace: str = "sluice"
    ) -> subprocess.CompletedProcess[str]:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            yaml.safe_dump(values or {}, file)
            file.flush()
            return self.run(
                "template",
                release,
                str(CHARTS / chart),
                "--namespace",
                namespace,
                "--include-crds",
                "--values",
                file.name,
                check=False,
            )


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    result = subprocess.run(
        ["bash", str(DEPLOY_TOOLS_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{DEPLOY_TOOLS_SCRIPT} failed (exit {result.returncode}):\n{result.stderr}")
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    helm = Helm(binary=Path(paths["helm"]), home=tmp_path_factory.mktemp("helm-home"))
    # The umbrella chart packs the component charts beside it.
    helm.run("dependency", "build", str(CHARTS / "sluice"))
    return helm


Objects = list[dict]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., Objects]:
    """render(chart, values=None, release="t", namespace="sluice") -> the rendered objects (test hooks included)."""

    def _render(chart: str, values: dict | None = None, **kwargs: str) -> Objects:
        result = helm.template(chart, values, **kwargs)
        if result.returncode != 0:
            pytest.fail(f"helm template {chart} with {values} failed:\n{result.stderr}")
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def render_error(helm: Helm) -> Callable[..., str]:
    """render_error(chart, values) -> helm's error message; fails the test if the chart renders."""

    def _render_error(chart: str, values: dict) -> str:
        result = helm.template(chart, values)
        if result.returncode == 0:
            pytest.fail(f"helm template {chart} accepted {values}")
        return result.stderr

    return _render_error
