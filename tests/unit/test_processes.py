"""The process lifecycle shared by the Kafka broker and the test control plane, and the demo's echoed children,
on real short-lived Python children: readiness, failing fast with the log's tail, SIGTERM then SIGKILL of the whole
process group, clean-up at interpreter exit, and nothing left behind."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice_local.processes import (
    LOOPBACK,
    EchoedProcess,
    ManagedProcesses,
    free_ports,
    port_is_free,
    stop_echoed,
)

pytestmark = pytest.mark.unit

HERE = Path(__file__).resolve().parent

# A child that says what it does on stdout (its log), then, depending on its mode: exits at once with code 3
# ("crash"), never gets ready ("slow"), ignores SIGTERM ("stubborn"), starts a grandchild in its own process group
# ("family"), or just gets ready ("serve"). Ready means: the file named by its second argument exists.
SERVICE = """
import pathlib, signal, subprocess, sys, time
mode, ready = sys.argv[1], pathlib.Path(sys.argv[2])
print("starting in mode", mode, flush=True)
if mode == "crash":
    print("fatal: the configuration is broken", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "family":
    print("grandchild", subprocess.Popen(["sleep", "600"]).pid, flush=True)
if mode != "slow":
    ready.touch()
time.sleep(600)
"""


class ToyError(RuntimeError):
    pass


class Toy(ManagedProcesses):
    """One ``python -c SERVICE`` child, ready once it has made its file; ``port`` is only allocated."""

    what = "toy service"
    error = ToyError
    ready_timeout = 30.0
    stop_timeout = 10.0
    temp_prefix = "sluice-test-toy-"

    def __init__(self, mode: str = "serve", *, work_dir: Path | None = None, port: int | None = None) -> None:
        super().__init__(work_dir=work_dir)
        self.mode = mode
        self._requested_port = port
        self.port: int | None = None

    def stop(self) -> None:
        super().stop()
        self.port = None

    def _address(self) -> str | None:
        return f"{LOOPBACK}:{self.port}" if self.port is not None else None

    def _start_processes(self, deadline: float) -> None:
        work_dir = self._prepare_work_dir()
        (self.port,) = self._ports(1, self._requested_port)
        ready = work_dir / "ready"
        ready.unlink(missing_ok=True)  # from an earlier start in a kept work dir
        child = self._launch(
            "toy", [sys.executable, "-c", SERVICE, self.mode, str(ready)], log_file=work_dir / "toy.log"
        )
        self._wait_until_ready(child, deadline, lambda: None if ready.exists() else "no ready file yet")


def gone(pid: int, *, within: float = 5.0) -> bool:
    """Whether process ``pid`` no longer runs (a zombie counts as gone), waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rpartition(")")[2].split()[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def grandchild_pid(log: Path) -> int:
    """The pid a "family" child logged for its grandchild."""
    for _ in range(100):
        for line in log.read_text().splitlines():
            if line.startswith("grandchild "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no grandchild in {log}:\n{log.read_text()}")


# -- ManagedProcesses ----------------------------------------------------------------------------------------


def test_start_waits_for_readiness_and_stop_ends_the_process_and_the_temp_dir() -> None:
    toy = Toy()
    with toy:
        assert toy.is_running() and toy.exited() is None
        assert toy.startup_seconds is not None and toy.startup_seconds < Toy.ready_timeout
        pid = toy.pids["toy"]
        assert os.getpgid(pid) == pid  # its own process group
        work_dir = toy.work_dir
        assert work_dir is not None and (work_dir / "ready").is_file()
        assert "starting in mode serve" in (work_dir / "toy.log").read_text()
        assert repr(toy) == f"<Toy running at 127.0.0.1:{toy.port}>"
        with pytest.raises(ToyError, match=r"the toy service is already started at 127\.0\.0\.1:\d+"):
            toy.start()
    assert gone(pid)
    assert not work_dir.exists()
    assert not toy.is_running() and toy.pids == {} and toy.work_dir is None
    assert repr(toy) == "<Toy stopped>"
    toy.stop()  # idempotent


def test_a_given_work_dir_is_kept_and_a_service_can_start_again(tmp_path: Path) -> None:
    toy = Toy(work_dir=tmp_path / "work")
    for _ in range(2):
        with toy:
            pid = toy.pids["toy"]
            assert toy.work_dir == (tmp_path / "work").resolve()
        assert gone(pid)
        assert toy.work_dir == (tmp_path / "work").resolve()
    # Both runs appended to the same log.
    assert (tmp_path / "work" / "toy.log").read_text().count("starting in mode serve") == 2


def test_a_process_that_exits_during_startup_fails_at_once_with_its_log(tmp_path: Path) -> None:
    toy = Toy("crash", work_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(ToyError) as failure:
        toy.start()
    assert time.monotonic() - started < Toy.ready_timeout / 2  # not the whole readiness timeout
    message = str(failure.value)
    assert message.startswith("toy exited during startup with code 3; last 40 lines of ")
    assert str(tmp_path / "toy.log") in message
    assert message.endswith("starting in mode crash\nfatal: the configuration is broken")
    assert not toy.is_running() and toy.pids == {}


class SlowToy(Toy):
    ready_timeout = 1.0


def test_a_process_never_ready_is_stopped_after_the_timeout_with_its_log() -> None:
    toy = SlowToy("slow")
    with pytest.raises(ToyError) as failure:
        toy.start()
    message = str(failure.value)
    assert message.startswith("toy not ready within 1 s of starting the toy service (no ready file yet); ")
    assert message.endswith("starting in mode slow")
    # start() stopped what it had started and removed its temp dir.
    log = Path(message.split(" lines of ", 1)[1].split(":\n", 1)[0])
    assert not log.parent.exists()
    assert toy.pids == {}


class StubbornToy(Toy):
    stop_timeout = 0.5


def test_stop_escalates_to_sigkill_of_the_whole_group(caplog: pytest.LogCaptureFixture) -> None:
    toy = StubbornToy("stubborn").start()
    pid = toy.pids["toy"]
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    toy.stop()
    assert time.monotonic() - started < 5
    assert gone(pid)
    assert f"toy (pid {pid}) did not exit within 0.5 s of SIGTERM" in caplog.text


def test_stop_ends_what_the_process_started_in_its_group() -> None:
    toy = Toy("family").start()
    assert toy.work_dir is not None
    grandchild = grandchild_pid(toy.work_dir / "toy.log")
    assert os.getpgid(grandchild) == toy.pids["toy"]
    toy.stop()
    assert gone(grandchild)


def test_exited_reports_a_process_that_died_after_start() -> None:
    with Toy() as toy:
        pid = toy.pids["toy"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while (report := toy.exited()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report is not None
        assert report.startswith(f"toy exited with code {-signal.SIGKILL}; last 40 lines of ")
        assert report.endswith("starting in mode serve")
        assert not toy.is_running()


def test_a_requested_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_is_free(port)
        toy = Toy(port=port)
        with pytest.raises(ToyError, match=rf"port {port} on 127\.0\.0\.1 is in use; stop what holds it"):
            toy.start()
        assert toy.pids == {} and toy.work_dir is None


def test_a_free_requested_port_is_used() -> None:
    (port,) = free_ports(1)
    with Toy(port=port) as toy:
        assert toy.port == port


def _run_python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r})\n{code}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_interpreter_exit_stops_a_forgotten_service() -> None:
    child = _run_python("from test_processes import Toy\nprint(Toy().start().pids['toy'], flush=True)")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert gone(int(out))


def test_sigterm_to_a_cli_that_asks_for_it_stops_its_services() -> None:
    code = (
        "import time\n"
        "from sluice_local.processes import interrupt_on_sigterm\n"
        "from test_processes import Toy\n"
        "interrupt_on_sigterm()\n"
        "toy = Toy().start()\n"
        "print(toy.pids['toy'], flush=True)\n"
        "time.sleep(600)\n"
    )
    child = _run_python(code)
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
        assert "KeyboardInterrupt" in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert gone(pid)


# -- EchoedProcess -------------------------------------------------------------------------------------------


def test_an_echoed_child_shows_and_keeps_its_stdout_and_logs_its_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "import sys; print('one'); print('two', flush=True); print('oops', file=sys.stderr)"
    log = tmp_path / "child.log"
    child = EchoedProcess.spawn("kid", [sys.executable, "-c", code], log=log, quiet=False, prefix_width=6)
    assert child.process.wait(30) == 0
    assert child.reader is not None
    child.reader.join(10)
    assert child.lines == ["one", "two"]
    assert capsys.readouterr().out == "kid   | one\nkid   | two\n"
    assert child.log_tail() == "oops"


def test_a_quiet_echoed_child_keeps_its_stdout_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = EchoedProcess.spawn(
        "kid", [sys.executable, "-c", "print('hush')"], log=tmp_path / "log", quiet=True, prefix_width=6
    )
    child.process.wait(30)
    assert child.reader is not None
    child.reader.join(10)
    assert child.lines == ["hush"]
    assert capsys.readouterr().out == ""


GRACEFUL = """
import signal, sys, time
def bye(signum, frame):
    print("bye", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(600)
"""

STUBBORN = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("grandchild", subprocess.Popen(["sleep", "600"]).pid, flush=True)
print("ready", flush=True)
time.sleep(600)
"""


def test_stop_echoed_terminates_gracefully_then_kills_each_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    children = [
        EchoedProcess.spawn(
            name, [sys.executable, "-c", code], log=tmp_path / f"{name}.log", quiet=True, prefix_width=9
        )
        for name, code in (("graceful", GRACEFUL), ("stubborn", STUBBORN))
    ]
    deadline = time.monotonic() + 30
    while not all("ready" in child.lines for child in children):
        assert time.monotonic() < deadline, [child.lines for child in children]
        time.sleep(0.05)
    graceful, stubborn = children
    grandchild = int(stubborn.lines[0].split()[1])
    assert os.getsid(stubborn.process.pid) == stubborn.process.pid  # its own session
    assert os.getpgid(grandchild) == stubborn.process.pid

    stop_echoed(children, 1.0)

    assert graceful.process.returncode == 0 and graceful.lines[-1] == "bye"
    assert stubborn.process.returncode == -signal.SIGKILL
    assert gone(grandchild)
    assert capsys.readouterr().err == "stubborn did not stop within 1 s; killing it\n"
    assert all(child.reader is not None and not child.reader.is_alive() for child in children)
    stop_echoed(children, 1.0)  # again, as the demo's `finally` does: nothing left to do
