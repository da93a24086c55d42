"""What the local runtime's child processes share.

* Helpers: free loopback ports, log tails, signalling and stopping a process group, SIGTERM as Ctrl-C in a CLI.
* ``ManagedProcesses``: the lifecycle of a local service made of child processes (the Kafka broker, the test
  control plane): each started in its own process group with a log file, awaited until ready or failed fast with
  its log's tail, stopped with SIGTERM then SIGKILL of its group, and stopped at interpreter exit if forgotten.
* ``EchoedProcess``: a child whose output is shown on the terminal with its name (the demo's jobs), and
  ``stop_echoed`` to stop a list of them.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TypeVar

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 40
"""Lines of a child's log shown in an error about it."""
POLL_INTERVAL_S = 0.2

_T = TypeVar("_T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` of the loopback address now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Servers (Java, Go) listen with SO_REUSEADDR, so a port held only by TIME_WAIT connections counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def log_tail(path: Path | None, lines: int) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group ``process`` leads (gone already is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def stop_group(process: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM the process group, SIGKILL it if the leader is still there after ``timeout`` seconds, then reap
    whatever else the leader left in its group. False when SIGTERM was not enough."""
    graceful = True
    if process.poll() is None:
        kill_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            graceful = False
            kill_group(process)
            process.wait(timeout=timeout)
    kill_group(process)
    return graceful


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a CLI leaves the same way as on Ctrl-C: through its ``finally``."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)


# -- a local service of child processes ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoggedProcess:
    """A started child process leading its own process group, its stdout and stderr appended to ``log_file``."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def exit_report(self) -> str | None:
        """None while the process runs; else its name, exit code and the tail of its log."""
        code = self.process.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; {self.log_report()}"

    def log_report(self) -> str:
        """Where the process's log is, and its last lines."""
        return f"last {LOG_TAIL_LINES} lines of {self.log_file}:\n{log_tail(self.log_file, LOG_TAIL_LINES)}"


# Services still running, stopped at interpreter exit in case the caller forgot (or an exception skipped it).
_live: set[ManagedProcesses] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        services = list(_live)
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()


class ManagedProcesses:
    """Base of a local service made of child processes; a context manager.

    ``start()`` times the start, runs the subclass's ``_start_processes(deadline)`` and stops everything if that
    fails; ``stop()`` stops the processes in reverse order of start (SIGTERM to each process group, SIGKILL after
    ``stop_timeout``) and removes the work dir if it is a temp dir. A subclass launches each process with
    ``_launch()``, waits for it with ``_wait_until_ready()`` (which fails as soon as the process exits, with its
    log's tail), and raises its own ``error`` type. Started services are stopped at interpreter exit; a CLI also
    calls ``interrupt_on_sigterm()`` so that SIGTERM stops them too.
    """

    what: ClassVar[str]
    """What the service is, in messages: "Kafka broker", "control plane"."""
    error: ClassVar[type[Exception]] = RuntimeError
    """Raised when the service cannot start or is used before it has."""
    ready_timeout: ClassVar[float]
    """Seconds from ``start()`` (after ``_prerequisites()``) until every process must be ready."""
    stop_timeout: ClassVar[float]
    """Seconds each process group gets between SIGTERM and SIGKILL."""
    temp_prefix: ClassVar[str] = "sluice-"
    """Name prefix of the temp work dir made when no ``work_dir`` is given."""

    def __init__(self, *, work_dir: Path | None = None) -> None:
        self._given_work_dir = Path(work_dir) if work_dir is not None else None
        self._work_dir: Path | None = None
        self._processes: list[LoggedProcess] = []
        self.startup_seconds: float | None = None
        """Seconds from ``start()`` to a ready service, for reporting."""

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path | None:
        """The service's working directory (absolute), once started; a given one is kept after ``stop()``."""
        return self._work_dir

    @property
    def pids(self) -> dict[str, int]:
        """PID of each started process (also its process group id), by name."""
        return {p.name: p.process.pid for p in self._processes}

    def is_running(self) -> bool:
        """Whether the service is started and every one of its processes is alive."""
        return bool(self._processes) and self.exited() is None

    def exited(self) -> str | None:
        """None while every started process is alive; else which one exited, with its exit code and log tail."""
        for process in self._processes:
            report = process.exit_report()
            if report is not None:
                return report
        return None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start every process and wait until the service is ready; on any failure stop what was started.

        Raises ``error`` (with the relevant log's tail) when a process exits early or is not ready in time.
        """
        if self._processes:
            raise self.error(f"the {self.what} is already started at {self._address()}")
        self._prerequisites()
        started = time.monotonic()
        try:
            self._start_processes(started + self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        logging.getLogger(type(self).__module__).info(
            "%s ready at %s in %.1f s", self.what, self._address(), self.startup_seconds
        )
        return self

    def stop(self) -> None:
        """Stop the processes, last started first; remove a temp work dir. Idempotent.

        A subclass that overrides it calls ``super().stop()`` first, then forgets its own state.
        """
        processes, self._processes = self._processes, []
        with _live_lock:
            _live.discard(self)
        log = logging.getLogger(type(self).__module__)
        for process in reversed(processes):
            if not stop_group(process.process, self.stop_timeout):
                log.warning(
                    "%s (pid %d) did not exit within %g s of SIGTERM",
                    process.name,
                    process.process.pid,
                    self.stop_timeout,
                )
        if self._given_work_dir is None and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self._address()}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {state}>"

    # -- for subclasses --------------------------------------------------------------------------------------

    def _prerequisites(self) -> None:
        """What must be there before the start is timed (e.g. built binaries); nothing by default."""

    def _start_processes(self, deadline: float) -> None:
        """Launch the processes and wait until each is ready, by ``deadline`` (``time.monotonic()``)."""
        raise NotImplementedError

    def _address(self) -> str | None:
        """Where clients reach the service, for messages; None before start."""
        raise NotImplementedError

    def _require(self, value: _T | None) -> _T:
        """``value``, which a started service has; raises ``error`` before start."""
        if value is None:
            raise self.error(f"the {self.what} is not started: call start() or use it as a context manager")
        return value

    def _prepare_work_dir(self) -> Path:
        """Make the work dir (the given one, or a new temp dir), remember it and return it, absolute."""
        if self._given_work_dir is not None:
            self._given_work_dir.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._given_work_dir.resolve()
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix=self.temp_prefix))
        return self._work_dir

    def _check_port(self, port: int) -> None:
        """Raise ``error`` if ``port`` (a requested one) is in use on the loopback address."""
        if not port_is_free(port):
            raise self.error(
                f"port {port} on {LOOPBACK} is in use; stop what holds it or omit the port to pick a free one"
            )

    def _ports(self, count: int, requested: int | None = None) -> list[int]:
        """``count`` distinct free loopback ports; the first is ``requested`` when given (checked free)."""
        if requested is None:
            return free_ports(count)
        self._check_port(requested)
        others = [port for port in free_ports(count) if port != requested]
        return [requested, *others[: count - 1]]

    def _launch(self, name: str, command: Sequence[str], *, log_file: Path) -> LoggedProcess:
        """Start ``command`` in the work dir, in its own process group (``stop()`` signals it and all it
        spawns), appending its output to ``log_file``."""
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                list(command),
                cwd=self._work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = LoggedProcess(name, popen, log_file)
        self._processes.append(process)
        with _live_lock:
            _live.add(self)
        return process

    def _wait_until_ready(
        self, process: LoggedProcess, deadline: float, probe: Callable[[], str | None]
    ) -> None:
        """Poll ``probe`` until it returns None (ready); it otherwise says what is missing. Raises ``error`` as
        soon as ``process`` exits, or once ``deadline`` has passed, with the tail of the process's log."""
        while True:
            code = process.process.poll()
            if code is not None:
                raise self.error(
                    f"{process.name} exited during startup with code {code}; {process.log_report()}"
                )
            problem = probe()
            if problem is None:
                return
            if time.monotonic() >= deadline:
                since = "" if process.name == self.what else f" of starting the {self.what}"
                raise self.error(
                    f"{process.name} not ready within {self.ready_timeout:.0f} s{since} ({problem}); "
                    f"{process.log_report()}"
                )
            time.sleep(POLL_INTERVAL_S)


# -- children echoed on the terminal ---------------------------------------------------------------------------


@dataclasses.dataclass
class EchoedProcess:
    """A child process in its own session whose stdout is echoed line by line with a name prefix, and kept in
    ``lines``; its stderr goes to ``log``."""

    name: str
    process: subprocess.Popen[str]
    log: Path
    lines: list[str] = dataclasses.field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def spawn(
        cls,
        name: str,
        command: Sequence[str],
        *,
        log: Path,
        quiet: bool,
        prefix_width: int,
        env: Mapping[str, str] | None = None,
    ) -> EchoedProcess:
        """Start ``command``; unless ``quiet``, print each line of its stdout as ``<name padded>| <line>``."""
        with log.open("w") as stderr:
            # A new session: Ctrl-C reaches the parent only, which then stops its children in order.
            process = subprocess.Popen(
                list(command),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                start_new_session=True,
            )
        child = cls(name, process, log)
        child.reader = threading.Thread(
            target=child._pump, args=(quiet, prefix_width), name=f"echo-{name}", daemon=True
        )
        child.reader.start()
        return child

    def _pump(self, quiet: bool, prefix_width: int) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if not quiet:
                print(f"{self.name:<{prefix_width}}| {line}", flush=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the child's stderr log."""
        return log_tail(self.log, lines)


def stop_echoed(children: Sequence[EchoedProcess], grace: float) -> None:
    """SIGTERM each child's own process (a job driver then stops its queries between batches), wait up to
    ``grace`` seconds for them all, then SIGKILL each process group, so that nothing a child started (Spark's
    JVM, Python workers) outlives it. Children that did not stop in time are named on stderr."""
    for child in children:
        if child.alive():
            child.process.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop within {grace:g} s; killing it", file=sys.stderr)
    for child in children:
        kill_group(child.process)
        child.process.wait()
        if child.reader is not None:
            child.reader.join(timeout=5)
