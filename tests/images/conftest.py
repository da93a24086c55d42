"""Images-tier fixtures: the project's images, built (or found up to date) by scripts/build-images.sh.

The script starts the Docker engine itself (scripts/ensure-docker.sh installs and starts it when needed), so these
tests never skip: without an engine they fail, saying why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """``{"spark-jobs": tag, "operator": tag, "kafka": tag}``: the first run on a machine builds them (minutes), later runs
    find them up to date (about a second)."""
    try:
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-images.sh")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/build-images.sh did not finish within {BUILD_TIMEOUT_S} s:\n{exc.stderr}")
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-60:])
        pytest.fail(f"scripts/build-images.sh exited {result.returncode}; the last lines it printed:\n{tail}")
    tags = dict(line.split("=", 1) for line in result.stdout.split())
    assert set(tags) == {"spark-jobs", "operator", "kafka"}, result.stdout
    return tags
