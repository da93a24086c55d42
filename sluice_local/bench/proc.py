"""What the benchmark reads from ``/proc``: CPU seconds of a process and its descendants, the machine's load and
CPU steal, and its processor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1]: the parent's pid
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (threads included), from ``/proc``.

    Descendants that already exited and were reaped count in their parent's ``cutime``/``cstime``, so a Spark JVM
    started by a Python driver is counted while it runs and after it ends.
    """
    tree = _children()
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the pid and name are cut off
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        stack.extend(tree.get(current, []))
    return total / _TICKS


@dataclass(frozen=True)
class CpuTimes:
    """The machine-wide CPU counters of ``/proc/stat`` (ticks)."""

    busy: int
    steal: int
    total: int

    @classmethod
    def read(cls) -> CpuTimes:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
        values = [int(v) for v in line[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
        return cls(busy=user + nice + system + irq + softirq, steal=steal, total=sum(values[:8]))

    def steal_share_since(self, earlier: CpuTimes) -> float:
        """The share of CPU time stolen by the hypervisor between ``earlier`` and this reading."""
        elapsed = self.total - earlier.total
        return (self.steal - earlier.steal) / elapsed if elapsed > 0 else 0.0


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def processor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass(frozen=True)
class Finished:
    """A child process run to its end: exit code, output, wall and CPU seconds (its threads and children)."""

    returncode: int
    output: str
    seconds: float
    cpu_seconds: float


def run_to_end(command: list[str], *, timeout: float, **popen) -> Finished:
    """Run ``command`` to its end; its CPU seconds come from the kernel's accounting of reaped children
    (``RUSAGE_CHILDREN``), so nothing it did is missed. Children run one at a time for this to hold."""
    import resource
    import subprocess
    import time

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **popen,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{command[0]} ran over {timeout:g} s: {' '.join(command)}") from exc
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Finished(result.returncode, result.stdout, seconds, cpu)
