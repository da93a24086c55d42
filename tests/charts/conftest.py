"""Chart-tier fixtures: the real helm binary (built from its pinned Go module by scripts/build-deploy-tools.sh)
and helpers that render a chart into Kubernetes objects."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
BUILD_SCRIPT = ROOT / "scripts" / "build-deploy-tools.sh"


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
        ["bash", str(BUILD_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} failed (exit {result.returncode}):\n{result.stderr}")
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
