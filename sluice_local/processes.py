"""What the local runtime's child services share: free loopback ports, log tails, stopping a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


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
