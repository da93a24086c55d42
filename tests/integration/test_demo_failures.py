"""The demo fails fast, with a message a user can act on, when the machine is not ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.demo


def run_demo(args: list[str], tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sluice_local", "demo", "--work-dir", str(tmp_path / "demo"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.mark.timeout(300)
def test_busy_kafka_port_is_reported(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_demo(["--kafka-port", str(port), "--duration", "1"], tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


@pytest.mark.timeout(300)
def test_missing_java_is_reported(tmp_path):
    # A PATH with no java on it (only what the demo may call besides: nothing), and no JAVA_HOME.
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(empty_bin)
    result = run_demo(["--duration", "1"], tmp_path, env=env)
    assert result.returncode == 1
    assert "Java >= 17 is needed but `java` is not on PATH" in result.stderr
    assert "apt-get install -y openjdk-17-jdk-headless" in result.stderr


@pytest.mark.timeout(60)
def test_bad_demo_flags_exit_2(tmp_path):
    result = run_demo(["--duration", "0"], tmp_path)
    assert result.returncode == 2
    assert "--duration: 0 is not accepted; use a number of seconds greater than 0" in result.stderr
    result = run_demo(["--late-fraction", "1.5"], tmp_path)
    assert result.returncode == 2
    assert "--late-fraction: 1.5 is not accepted; use between 0 and 1" in result.stderr
