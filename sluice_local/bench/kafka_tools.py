"""Kafka's own performance tools (``kafka-tools``, from the pinned Kafka jars) as the benchmark's references: how fast
a Java producer with the generator's settings sends the same records, and how fast a plain consumer reads the
topic the jobs read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sluice_local.artifacts import KAFKA_DIST, require_java, resolve
from sluice_local.bench.proc import run_to_end

_TIMEOUT_S = 600


class ToolError(RuntimeError):
    """A Kafka tool failed; the message holds its command and output."""


@dataclass(frozen=True)
class ToolRun:
    """One run of a tool: records, seconds of its own measurement, and the CPU seconds of its process."""

    records: int
    seconds: float
    cpu_seconds: float
    output: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _run(main_class: str, args: list[str]) -> tuple[str, float]:
    classpath = ":".join(str(jar) for jar in resolve(KAFKA_DIST))
    command = [require_java(17), "-Xmx512m", "-cp", classpath, main_class, *args]
    finished = run_to_end(command, timeout=_TIMEOUT_S)
    if finished.returncode != 0:
        raise ToolError(f"{main_class} exited {finished.returncode}:\n{finished.output[-3000:]}")
    return finished.output, finished.cpu_seconds


def producer_performance(
    *, bootstrap: str, topic: str, payloads: Path, records: int, producer_props: dict[str, str]
) -> ToolRun:
    """``ProducerPerformance`` sending ``records`` records drawn from the lines of ``payloads`` as fast as it can."""
    props = [f"{k}={v}" for k, v in producer_props.items()]
    output, cpu = _run(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic", topic,
            "--num-records", str(records),
            "--throughput", "-1",
            "--payload-file", str(payloads),
            "--producer-props", f"bootstrap.servers={bootstrap}", *props,
        ],
    )  # fmt: skip
    # The final line: "N records sent, R records/sec (M MB/sec), ..."
    match = re.search(r"^(\d+) records sent, ([\d.]+) records/sec", output, re.M)
    if match is None:
        raise ToolError(f"ProducerPerformance printed no summary:\n{output[-2000:]}")
    sent, rate = int(match.group(1)), float(match.group(2))
    return ToolRun(sent, sent / rate if rate else 0.0, cpu, output)


def consumer_performance(*, bootstrap: str, topic: str, records: int) -> ToolRun:
    """``ConsumerPerformance`` reading ``records`` records of ``topic`` from the beginning; its fetch time (the
    group's join excluded) is the time."""
    output, cpu = _run(
        "org.apache.kafka.tools.ConsumerPerformance",
        ["--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(records), "--timeout", "60000"],
    )
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms,
    # fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    rows = [line.split(", ") for line in output.splitlines() if re.match(r"^\d{4}-\d\d-\d\d", line)]
    if not rows or len(rows[-1]) < 10:
        raise ToolError(f"ConsumerPerformance printed no summary:\n{output[-2000:]}")
    last = rows[-1]
    consumed, fetch_ms = int(last[4]), float(last[7])
    return ToolRun(consumed, fetch_ms / 1000, cpu, output)
