"""Running the project's images in tests: containers that are always removed, and whose logs travel with a failure."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

LOG_TAIL_LINES = 80


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI, capturing its output; a failure names the command and shows what it printed."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"`docker {' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass(frozen=True)
class Container:
    """A started container, known by its unique name."""

    name: str

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of its stdout and stderr, interleaved."""
        result = docker("logs", "--tail", str(lines), self.name, check=False)
        return result.stdout + result.stderr

    def state(self, field: str) -> str:
        """A field of ``.State`` (``Running``, ``ExitCode``...), as text."""
        return docker("inspect", "-f", f"{{{{ .State.{field} }}}}", self.name).stdout.strip()

    def running(self) -> bool:
        return self.state("Running") == "true"

    def wait(self, timeout: float) -> int:
        """Wait until it exits and return its exit code; fail after ``timeout`` seconds."""
        try:
            return int(docker("wait", self.name, timeout=timeout).stdout.strip())
        except subprocess.TimeoutExpired:
            pytest.fail(f"container {self.name} still running after {timeout:.0f} s")

    def stop(self, grace: int) -> tuple[int, float]:
        """``docker stop`` (SIGTERM, then SIGKILL after ``grace`` seconds): the exit code and how long it took."""
        started = time.monotonic()
        docker("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return int(self.state("ExitCode")), time.monotonic() - started


@contextlib.contextmanager
def started(image: str, *command: str, options: Sequence[str] = ()) -> Iterator[Container]:
    """Start ``image`` detached with docker ``options``; on leaving, remove the container, and if the block
    raised, add the container's log tail to the failure."""
    name = f"sluice-test-{uuid.uuid4().hex[:10]}"
    # The JVM options the test session gives its own JVMs (tests/conftest.py), to the JVMs in the container too.
    jvm = os.environ.get("JAVA_TOOL_OPTIONS")
    options = (*([f"--env=JAVA_TOOL_OPTIONS={jvm}"] if jvm else []), *options)
    docker("run", "--detach", "--name", name, *options, image, *command)
    container = Container(name)
    try:
        yield container
    except BaseException as exc:
        exc.add_note(
            f"--- last {LOG_TAIL_LINES} log lines of container {name} ({image}) ---\n{container.logs()}"
        )
        raise
    finally:
        docker("rm", "--force", "--volumes", name, check=False)


def run_to_end(image: str, *command: str, options: Sequence[str] = (), timeout: float) -> tuple[int, str]:
    """Run ``image`` until it exits; its exit code and full output (stdout, then stderr)."""
    with started(image, *command, options=options) as container:
        code = container.wait(timeout)
        logs = docker("logs", container.name)
        return code, logs.stdout + logs.stderr


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET; (0, reason) when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def wait_for(check: Callable[[], object], *, timeout: float, what: str, container: Container | None = None):
    """Poll ``check`` until it returns something truthy and return that; fail after ``timeout`` seconds, or
    as soon as ``container`` has exited."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        if container is not None and not container.running():
            pytest.fail(f"container {container.name} exited ({container.state('ExitCode')}) before {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
