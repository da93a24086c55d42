"""``make bench`` / ``python -m sluice_local bench``: Sluice against the machine's limits, as ratios measured in one run.

On a real broker it starts, with one data set of pre-filled events (deterministic: the generator's seed 1, event
times 5 ms apart from 2024-01-01, 1 % malformed), it measures:

* **generator**: events/s of ``spark_jobs.generator --rate 0`` ÷ Kafka's ``ProducerPerformance`` with the same
  producer settings, on records of the same payloads; and the generator's CPU at 1,000 events/s;
* **job efficiency**: each job draining the data set (warm JVM, console off, available-now, start-up excluded) ÷
  Spark in batch with the same transforms on a Parquet copy of the same records; the windowed job also ÷ the plain
  10 s tumbling aggregation (parse + Spark's window()) in batch;
* **job vs raw consumer**: the same rate ÷ Kafka's ``ConsumerPerformance`` on the topic;
* **speed-up**: each job ÷ the same job before this change (the jobs of commit ``BASELINE_COMMIT``, one streaming
  query per output, from ``bench/baseline/``), and that baseline with Spark's RocksDB state store (changelog
  checkpointing) ÷ with its default state store;
* **CPU cost**: CPU-seconds per million events of each process, from ``/proc``;
* **latency**: the three jobs as in a pod, at a fixed rate: produce → output percentiles per output, over
  consecutive segments of the measured time (each segment a repeat);
* **peer**: Quix Streams (its own virtualenv) on the same tumbling aggregation of the same topic, its outputs first
  checked equal to Sluice's: events/s and CPU per event.

A first round warms the machine up and is discarded; then ``--repeats`` rounds, interleaving the pairs compared.
Every output a figure is computed from is checked (the jobs' against Spark in batch, the baseline's and the peer's
against the jobs'); a failed check fails the run. Writes ``report.md`` and ``results.json`` to ``--out``
(``bench/results/<UTC time>/``). ``--quick`` (20k events, one round, the drains two at a time, a short latency run) runs in ``make test``:
every figure must be there, and no timing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sluice_operator import components
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.artifacts import KAFKA_DIST, SPARK_VERSION, connector_jars, require_java, resolve
from sluice_local.bench import latency, report
from sluice_local.bench.kafka_tools import consumer_performance, producer_performance
from sluice_local.bench.proc import CpuTimes, load_average, processor, run_to_end
from sluice_local.bench.report import Figure
from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import read_all

ROOT = Path(__file__).resolve().parents[2]
#: The commit whose jobs are the baseline ("before this change"), archived in bench/baseline/.
BASELINE_COMMIT = "64b1be45f28f6a1af53638f95ef97d145251be43"
BASELINE_ARCHIVE = ROOT / "bench" / "baseline" / "spark_jobs-64b1be4.tar.gz"
QUIX_VERSION = "3.28.1"
JOBS = components.names(components.JOBS)
ROCKSDB = (
    "spark.sql.streaming.stateStore.providerClass="
    "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled=true",
)
#: Spark in batch runs with Spark's own default: adaptive query execution on (the jobs turn it off).
BATCH = ["--spark-conf", "spark.sql.adaptive.enabled=true"]
#: The drained events are dated from 2024-01-01 (fixed, so every run has the same windows) and produced now: the
#: jobs' bound on how far an event may be behind its Kafka timestamp stays on, wide enough for them, so the
#: check costs what it costs in a pipeline. The baseline (before the bounds existed) takes no such flag.
HISTORY = ["--max-event-behind", "1000000h"]
#: The generator's producer settings (spark_jobs.generator.producer.producer_settings) in Java's names.
JAVA_PRODUCER = {
    "acks": "all",
    "enable.idempotence": "true",
    "compression.type": "lz4",
    "linger.ms": "20",
    "batch.size": "1000000",
}
REL = 1e-9


class BenchError(RuntimeError):
    """The benchmark cannot go on (a process failed, an output check failed); the message says which."""


@dataclass(frozen=True)
class Plan:
    events: int
    repeats: int
    warmups: int
    latency_seconds: float
    latency_segments: int
    latency_warmup: float
    latency_rate: float
    cpu_seconds: float
    generator_events: int
    #: Extra options for the JVMs of every Spark process (the drains, the ceilings, the latency scenario's jobs).
    jvm_options: str = ""

    def spark_flags(self) -> list[str]:
        """The jobs' flags that pass :attr:`jvm_options` (a job puts its own JVM options before them)."""
        if not self.jvm_options:
            return []
        return ["--spark-conf", f"spark.driver.extraJavaOptions={self.jvm_options}"]


FULL = Plan(
    events=300_000,
    repeats=3,
    warmups=1,
    latency_seconds=120,
    latency_segments=3,
    latency_warmup=120,
    latency_rate=1000,
    cpu_seconds=20,
    generator_events=200_000,
)
QUICK = Plan(
    events=20_000,
    repeats=1,
    warmups=0,
    # Alerts close 30 s (the watermark) after their window, and the jobs' first micro-batch is slow in a cold JVM:
    # shorter, and the measured minute could see no alert.
    latency_seconds=60,
    latency_segments=1,
    latency_warmup=40,
    # Half the full run's rate: the quick run shares the cores with the other pytest lane (a kind cluster at times),
    # and three jobs in JVMs with the first compiler only fell 100 s behind 1,000 events/s there.
    latency_rate=500,
    cpu_seconds=5,
    generator_events=20_000,
    # HotSpot's first compiler only: a short-lived JVM spends about half its CPU in the optimising compiler
    # (measured here: a quick drain of the basic job 55-63 CPU s and 46-48 s with both, 28-33 CPU s and 33-37 s
    # with the first only). The plans, the code paths and the outputs checked stay the same; no quick figure is a
    # timing anyone compares.
    jvm_options="-XX:TieredStopAtLevel=1",
)


def _say(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


class Bench:
    def __init__(self, plan: Plan, out: Path, *, quick: bool) -> None:
        self.plan = plan
        self.out = out
        self.quick = quick
        self.work = out / "work"
        self.runs: list[dict] = []
        self.checks: list[dict] = []
        self.bootstrap = ""
        self.jars = ""
        self.invalid = 0
        self.spark_conf: dict = {}
        self.run_id = uuid.uuid4().hex[:8]  # in every topic name: runs can share a broker
        self.events_topic = self.topic("events")

    def topic(self, name: str) -> str:
        return f"bench-{self.run_id}-{name}"

    # --- processes -----------------------------------------------------------------------------------------

    def _python(self, args: list[str], *, timeout: float, pythonpath: Path | None = None) -> dict:
        """Run ``python <args>`` (a drain or the generator) from the work directory; its JSON result."""
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "TZ": "UTC"}
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        steal_before = CpuTimes.read()
        finished = run_to_end([sys.executable, *args], timeout=timeout, cwd=self.work, env=env)
        if finished.returncode != 0:
            raise BenchError(f"{' '.join(args[:4])} exited {finished.returncode}:\n{finished.output[-4000:]}")
        return {"steal": CpuTimes.read().steal_share_since(steal_before), "process_cpu": finished.cpu_seconds}

    def _drain(
        self,
        mode: str,
        job: str,
        *,
        label: str,
        extra: list[str] = (),
        flags: list[str] = (),
        pythonpath: Path | None = None,
        round_: int,
    ) -> dict:
        result_file = self.work / f"{label}-{job}-r{round_}.json"
        args = ["-m", "sluice_local.bench.drain", mode, "--job", job, "--result", str(result_file)]
        args += ["--warmups", str(self.plan.warmups), "--bootstrap", self.bootstrap]
        args += ["--work-dir", str(self.work / "drains"), *extra, "--", *self._job_flags(), *flags]
        info = self._python(args, timeout=3600, pythonpath=pythonpath)
        result = {**json.loads(result_file.read_text()), **info, "label": label, "round": round_}
        conf = result.pop("spark_conf", None)
        if label == "sluice" and conf and not self.spark_conf:
            self.spark_conf = conf
        # A drain reads every event once per query (four queries per job before this change): count events.
        result["events"] = self.plan.events
        self.runs.append(result)
        _say(
            f"round {round_}: {label} {job}: {_rate(result):,.0f} events/s, {result['cpu_seconds']:.1f} CPU s"
        )
        return result

    def _job_flags(self) -> list[str]:
        return [
            "--bootstrap-servers",
            self.bootstrap,
            "--source-topic",
            self.events_topic,
            "--trigger",
            "available-now",
            "--no-console",
            "--master",
            "local[2]",
            "--jars",
            self.jars,
            "--shuffle-partitions",
            "2",
            *self.plan.spark_flags(),
        ]

    # --- set-up --------------------------------------------------------------------------------------------

    def fill(self) -> None:
        ensure_topics(self.bootstrap, [DesiredTopic(self.events_topic, partitions=3)], timeout=30)
        summary = self._generator(self.events_topic, self.plan.events, start_time="2024-01-01T00:00:00Z")
        self.invalid = sum(summary["malformed"].values())
        dump = self.work / "events.parquet"
        args = [
            "-m",
            "sluice_local.bench.drain",
            "dump",
            "--job",
            "windowed",
            "--result",
            str(self.work / "dump.json"),
            "--events",
            str(dump),
            "--",
            *self._job_flags(),
        ]
        self._python(args, timeout=900)
        rows = json.loads((self.work / "dump.json").read_text())["input_rows"]
        if rows != self.plan.events:
            raise BenchError(f"the Parquet copy holds {rows} records, the topic {self.plan.events}")
        payloads = [m.value() for m in read_all(self.bootstrap, self.events_topic, timeout=300)]
        lines = [p for p in payloads if p and b"\n" not in p and p.startswith(b"{")]
        (self.work / "payloads.txt").write_bytes(b"\n".join(lines) + b"\n")
        _say(
            f"data set: {self.plan.events} events ({self.invalid} malformed) in {self.events_topic} and {dump.name}"
        )

    def baseline(self) -> Path:
        target = self.work / "baseline"
        with tarfile.open(BASELINE_ARCHIVE) as archive:
            archive.extractall(target, filter="data")
        return target

    def _generator(
        self,
        topic: str,
        count: int,
        *,
        rate: float = 0,
        start_time: str | None = None,
        duration: float | None = None,
    ) -> dict:
        args = ["-m", "spark_jobs.generator", "--bootstrap-servers", self.bootstrap, "--topic", topic]
        args += ["--seed", "1", "--devices", "10", "--malformed-fraction", "0.01", "--rate", str(rate)]
        args += ["--count", str(count)] if duration is None else ["--duration", str(duration)]
        if start_time:
            args += ["--start-time", start_time, "--interval-ms", "5"]
        summary_file = self.work / f"generator-{topic}.json"
        args += ["--summary-file", str(summary_file)]
        info = self._python(args, timeout=1800)
        summary = json.loads(summary_file.read_text())
        if summary["failed"]:
            raise BenchError(
                f"the generator failed to deliver {summary['failed']} messages: {summary['errors']}"
            )
        return {**summary, **info}

    # --- the rounds -----------------------------------------------------------------------------------------

    def round(self, round_: int, baseline: Path) -> None:
        flip = round_ % 2 == 1
        pair = [self._generator_round, self._producer_performance_round]
        for step in reversed(pair) if flip else pair:
            step(round_)
        consumer = consumer_performance(
            bootstrap=self.bootstrap, topic=self.events_topic, records=self.plan.events
        )
        self.runs.append(
            {
                "label": "consumer-performance",
                "round": round_,
                "seconds": consumer.seconds,
                "cpu_seconds": consumer.cpu_seconds,
                "events": consumer.records,
            }
        )
        _say(f"round {round_}: ConsumerPerformance: {consumer.rate:,.0f} records/s")
        drain = functools.partial(self._drain, round_=round_)
        rocks = [flag for setting in ROCKSDB for flag in ("--spark-conf", setting)]
        drains: list[Callable[[], dict]] = []
        for job in JOBS:
            now = functools.partial(drain, "job", job, label="sluice", flags=HISTORY)
            before = functools.partial(drain, "job", job, label="baseline", pythonpath=baseline)
            drains += [before, now] if flip else [now, before]
            drains.append(
                functools.partial(
                    drain, "job", job, label="baseline-rocksdb", flags=rocks, pythonpath=baseline
                )
            )
            expected = (
                ["--expected", str(self.work / f"expected-{job}.jsonl")] if round_ == self.first_round else []
            )
            events = [
                "--events",
                str(self.work / "events.parquet"),
                "--scratch",
                str(self.work / f"scratch-{job}"),
            ]
            drains.append(
                functools.partial(
                    drain,
                    "ceiling",
                    job,
                    label="ceiling",
                    extra=[*events, *expected],
                    flags=[*BATCH, *HISTORY],
                )
            )
        events = ["--events", str(self.work / "events.parquet"), "--kind", "tumbling"]
        drains.append(
            functools.partial(
                drain, "ceiling", "windowed", label="ceiling-tumbling", extra=events, flags=[*BATCH, *HISTORY]
            )
        )
        self._run_drains(drains)
        self._peer(round_)

    def _run_drains(self, drains: list[Callable[[], dict]]) -> None:
        """Each drain in turn; in quick mode two at a time. Two drains share the cores, which would skew a figure,
        but quick figures are never compared: they only prove each measurement runs (measured: 543 s for the quick
        run instead of 642 s, the drains being mostly JVM start-up on both cores). Every drain has its own
        checkpoint, output topics and result file; the outputs are checked after all of them."""
        if not self.quick:
            for drain in drains:
                drain()
            return
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(drain) for drain in drains]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the drains not started yet
                raise

    @property
    def first_round(self) -> int:
        return 0 if self.quick else 1

    def _generator_round(self, round_: int) -> None:
        topic = self.topic(f"gen-r{round_}")
        ensure_topics(self.bootstrap, [DesiredTopic(topic, partitions=3)], timeout=30)
        summary = self._generator(topic, self.plan.generator_events, start_time="2024-01-01T00:00:00Z")
        seconds = summary["duration_seconds"] + summary["flush_seconds"]
        self.runs.append(
            {
                "label": "generator",
                "round": round_,
                "seconds": seconds,
                "events": summary["produced"],
                "cpu_seconds": summary["cpu_seconds"],
                "steal": summary["steal"],
            }
        )
        _say(f"round {round_}: generator: {summary['produced'] / seconds:,.0f} events/s")

    def _producer_performance_round(self, round_: int) -> None:
        topic = self.topic(f"pp-r{round_}")
        ensure_topics(self.bootstrap, [DesiredTopic(topic, partitions=3)], timeout=30)
        steal = CpuTimes.read()
        run = producer_performance(
            bootstrap=self.bootstrap,
            topic=topic,
            payloads=self.work / "payloads.txt",
            records=self.plan.generator_events,
            producer_props=JAVA_PRODUCER,
        )
        self.runs.append(
            {
                "label": "producer-performance",
                "round": round_,
                "seconds": run.seconds,
                "events": run.records,
                "cpu_seconds": run.cpu_seconds,
                "steal": CpuTimes.read().steal_share_since(steal),
            }
        )
        _say(f"round {round_}: ProducerPerformance: {run.rate:,.0f} records/s")

    # --- the peer ------------------------------------------------------------------------------------------------

    def quix_python(self) -> Path:
        """The Python of Quix Streams' own virtualenv, made on first use (it pins an older confluent-kafka)."""
        from sluice_local.artifacts import cache_root

        venv = cache_root() / "bench" / f"quix-{QUIX_VERSION}"
        python = venv / "bin" / "python"
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", f"quixstreams=={QUIX_VERSION}"],
                check=True,
            )
            (venv / ".complete").write_text(QUIX_VERSION + "\n")
        return python

    def _peer(self, round_: int) -> None:
        output = self.topic(f"quix-r{round_}")
        # Quix stamps a window's record with the window's event time (2024 here): the broker's time-based retention
        # would delete them at its next check.
        ensure_topics(self.bootstrap, [DesiredTopic(output, config={"retention.ms": "-1"})], timeout=30)
        result_file = self.work / f"quix-r{round_}.json"
        script = Path(__file__).with_name("quix_tumbling.py")
        command = [
            str(self.quix_python()),
            str(script),
            "--bootstrap",
            self.bootstrap,
            "--topic",
            self.events_topic,
            "--output",
            output,
            "--group",
            self.topic(f"quix-r{round_}"),
            "--state-dir",
            str(self.work / f"quix-state-r{round_}"),
            "--result",
            str(result_file),
        ]
        steal = CpuTimes.read()
        finished = run_to_end(command, timeout=3600, cwd=self.work)
        if finished.returncode != 0:
            raise BenchError(f"the Quix Streams app exited {finished.returncode}:\n{finished.output[-4000:]}")
        result = json.loads(result_file.read_text())
        self.runs.append(
            {
                "label": "quix",
                "round": round_,
                **result,
                "events": result["records"],
                "output_topic": output,
                "steal": CpuTimes.read().steal_share_since(steal),
            }
        )
        _say(f"round {round_}: Quix Streams: {_rate(self.runs[-1]):,.0f} events/s")

    # --- checks -----------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Every output a figure comes from is right (or the run fails)."""
        for job in JOBS:
            expected = dict(
                json.loads(line) for line in (self.work / f"expected-{job}.jsonl").read_text().splitlines()
            )
            sluice = [r for r in self.runs if r["label"] == "sluice" and r["job"] == job]
            for run in sluice:
                got = self._records(run["output_topic"])
                self._compare(f"{job} (round {run['round']}) = Spark in batch", got, expected)
                letters = len(read_all(self.bootstrap, run["dead_letter_topic"], timeout=120))
                self._record(
                    f"{job} (round {run['round']}) dead letters = malformed records",
                    letters == self.invalid,
                    f"{letters} dead letters, {self.invalid} malformed",
                )
            for run in self.runs:
                if run.get("job") == job and run["label"].startswith("baseline"):
                    got = self._records(run["output_topic"])
                    self._compare(f"{job} {run['label']} (round {run['round']}) = Sluice", got, expected)
        tumbling = self._tumbling_windows(self._records(self._runs("sluice", "windowed")[-1]["output_topic"]))
        for run in self._runs("quix"):
            self._compare_peer(run, tumbling)
        failed = [c for c in self.checks if not c["passed"]]
        if failed:
            raise BenchError(
                "output checks failed:\n" + "\n".join(f"- {c['check']}: {c['detail']}" for c in failed)
            )

    def _runs(self, label: str, job: str | None = None) -> list[dict]:
        return [r for r in self.runs if r["label"] == label and (job is None or r.get("job") == job)]

    def _records(self, topic: str) -> dict[str, str]:
        messages = read_all(self.bootstrap, topic, timeout=300)
        return {m.key().decode(): m.value().decode() for m in messages}

    def _record(self, check: str, passed: bool, detail: str) -> None:
        self.checks.append({"check": check, "passed": bool(passed), "detail": detail})

    def _compare(self, what: str, got: dict[str, str], expected: dict[str, str]) -> None:
        missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
        differ = [
            k for k in expected.keys() & got.keys() if not _same(json.loads(got[k]), json.loads(expected[k]))
        ]
        detail = (
            f"{len(got)} records; {len(missing)} missing (e.g. {sorted(missing)[:2]}), {len(extra)} extra "
            f"(e.g. {sorted(extra)[:2]}), {len(differ)} differ (e.g. {sorted(differ)[:2]})"
        )
        self._record(what, expected and not missing and not extra and not differ, detail)

    @staticmethod
    def _tumbling_windows(records: dict[str, str]) -> dict[tuple[str, int], dict]:
        windows = {}
        for value in map(json.loads, records.values()):
            if value["aggregation"] == "tumbling":
                start = round(
                    datetime.fromisoformat(value["window_start"].replace("Z", "+00:00")).timestamp() * 1000
                )
                windows[(value["device_id"], start)] = {
                    k: value[k] for k in ("avg_value", "max_value", "min_value", "record_count")
                }
        return windows

    def _compare_peer(self, run: dict, sluice: dict[tuple[str, int], dict]) -> None:
        peer = {}
        for value in map(json.loads, self._records_list(run["output_topic"])):
            peer[(value["device_id"], value["start"])] = {
                k: value[k] for k in ("avg_value", "max_value", "min_value", "record_count")
            }
        # Both close a window 10 s of event time after its end; Quix per partition, Spark over the whole topic. On
        # the windows both have closed, they must agree.
        common_end = min(max(s for _, s in sluice), max(s for _, s in peer)) if sluice and peer else -1
        ours = {k: v for k, v in sluice.items() if k[1] <= common_end}
        theirs = {k: v for k, v in peer.items() if k[1] <= common_end}
        differ = [k for k in ours.keys() & theirs.keys() if not _same(ours[k], theirs[k])]
        passed = bool(ours) and ours.keys() == theirs.keys() and not differ and len(ours) >= 0.9 * len(sluice)
        self._record(
            f"Quix Streams (round {run['round']}) tumbling windows = Sluice's",
            passed,
            f"{len(theirs)} of Quix's and {len(ours)} of Sluice's {len(sluice)} windows compared, "
            f"{len(differ)} differ",
        )

    def _records_list(self, topic: str) -> list[str]:
        return [m.value().decode() for m in read_all(self.bootstrap, topic, timeout=300)]

    # --- figures -------------------------------------------------------------------------------------------------

    def figures(self, latency_result: dict, generator_cpu: dict) -> list[Figure]:
        measured = [r for r in self.runs if r["round"] >= self.first_round]
        rounds = sorted({r["round"] for r in measured})
        figures = []
        for ratio in RATIOS:
            values = [ratio.value(measured, r) for r in rounds]
            steal = [r.get("steal", 0.0) for r in measured if (r["label"], r.get("job")) in ratio.runs]
            passed = None if ratio.at_least is None else statistics.median(values) >= ratio.at_least
            target = None if ratio.at_least is None else f"≥ {ratio.at_least:g}"
            figures.append(Figure(ratio.name, ratio.what, values, steal=steal, target=target, passed=passed))
        cpu_share = generator_cpu["cpu_seconds"] / generator_cpu["duration_seconds"]
        figures.append(
            Figure(
                "generator CPU at 1,000 events/s",
                "CPU seconds per second of the producing phase",
                [cpu_share],
                unit="cores",
                target="≤ 0.1",
                passed=cpu_share <= 0.10,
            )
        )
        for label, job, what in _CPU_FIGURES:
            values = [_cpu_per_event(measured, label, job, r) * 1e6 for r in rounds]
            steal = [r.get("steal", 0.0) for r in measured if r["label"] == label and r.get("job") == job]
            figures.append(
                Figure(
                    f"CPU: {what}",
                    "CPU seconds per million events (from /proc)",
                    values,
                    unit="CPU s / M events",
                    steal=steal,
                )
            )
        for name, result in latency_result["outputs"].items():
            bound = result["bound_seconds"]
            for p in ("p50", "p95", "p99"):
                values = [segment[p] for segment in result["segments"] if p in segment]
                if not values:
                    continue
                checked = bound is not None and p == "p99"
                what = "produce → arrival at a fixed rate, " + (
                    "from the moment the window could close"
                    if bound
                    else "from the newest event of the window"
                )
                figures.append(
                    Figure(
                        f"latency {name} {p}",
                        what,
                        values,
                        unit="s",
                        target=f"≤ {bound:g} s" if checked else None,
                        passed=statistics.median(values) <= bound if checked else None,
                    )
                )
        return figures


@dataclass(frozen=True)
class Ratio:
    """A figure that divides the events/s (or the CPU per event) of two runs of the same round."""

    name: str
    what: str
    numerator: tuple[str, str | None]
    denominator: tuple[str, str | None]
    at_least: float | None = None
    cpu: bool = False

    @property
    def runs(self) -> tuple[tuple[str, str | None], ...]:
        return (self.numerator, self.denominator)

    def value(self, runs: list[dict], round_: int) -> float:
        if self.cpu:
            return _cpu_per_event(runs, *self.numerator, round_) / _cpu_per_event(
                runs, *self.denominator, round_
            )
        return _rate(_one(runs, *self.numerator, round_)) / _rate(_one(runs, *self.denominator, round_))


RATIOS = [
    Ratio(
        "generator ÷ ProducerPerformance",
        "events/s of the generator flat out ÷ Kafka's Java producer, same settings and payloads",
        ("generator", None),
        ("producer-performance", None),
        at_least=0.6,
    ),
    *[
        Ratio(
            f"{job} ÷ batch ceiling",
            "the job draining the data set ÷ Spark in batch, same transforms, from a local file",
            ("sluice", job),
            ("ceiling", job),
        )
        for job in JOBS
    ],
    Ratio(
        "windowed ÷ tumbling ceiling",
        "the windowed job (all three aggregations) ÷ Spark in batch parsing and "
        "computing the 10 s tumbling windows",
        ("sluice", "windowed"),
        ("ceiling-tumbling", "windowed"),
        at_least=0.5,
    ),
    *[
        Ratio(
            f"{job} ÷ ConsumerPerformance",
            "the job ÷ a plain Java consumer reading the topic",
            ("sluice", job),
            ("consumer-performance", None),
        )
        for job in JOBS
    ],
    *[
        Ratio(
            f"{job} ÷ before",
            "the job ÷ the same job before this change (one streaming query per output)",
            ("sluice", job),
            ("baseline", job),
            at_least=3.0,
        )
        for job in JOBS
    ],
    *[
        Ratio(
            f"{job} before: RocksDB ÷ default",
            "the job before this change with Spark's RocksDB state store "
            "(changelog checkpointing) ÷ with its default (HDFS-backed)",
            ("baseline-rocksdb", job),
            ("baseline", job),
        )
        for job in JOBS
    ],
    Ratio(
        "windowed ÷ Quix Streams",
        "events/s: Sluice's windowed job ÷ Quix Streams' tumbling aggregation, same topic",
        ("sluice", "windowed"),
        ("quix", None),
        at_least=5.0,
    ),
    Ratio(
        "Quix Streams ÷ windowed, CPU per event",
        "CPU seconds per event: Quix Streams' tumbling aggregation ÷ Sluice's windowed job",
        ("quix", None),
        ("sluice", "windowed"),
        cpu=True,
    ),
]


_CPU_FIGURES = [
    ("generator", None, "generator flat out"),
    ("producer-performance", None, "ProducerPerformance (whole JVM, start-up included)"),
    ("consumer-performance", None, "ConsumerPerformance (whole JVM, start-up included)"),
    *[("sluice", job, f"{job} job") for job in JOBS],
    *[("baseline", job, f"{job} job before this change") for job in JOBS],
    *[("ceiling", job, f"Spark in batch, {job} transforms") for job in JOBS],
    ("ceiling-tumbling", "windowed", "Spark in batch, parse + 10 s tumbling"),
    ("quix", None, "Quix Streams tumbling"),
]


def _one(runs: list[dict], label: str, job: str | None, round_: int) -> dict:
    (run,) = [r for r in runs if r["label"] == label and r.get("job") == job and r["round"] == round_]
    return run


def _rate(run: dict) -> float:
    """Events per second of a run (events of the data set, whatever the number of queries reading them)."""
    return run["events"] / run["seconds"]


def _cpu_per_event(runs: list[dict], label: str, job: str | None, round_: int) -> float:
    run = _one(runs, label, job, round_)
    return run["cpu_seconds"] / run["events"]


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=REL, abs_tol=REL)
    return a == b


def machine() -> dict:
    import confluent_kafka
    import pyspark

    java = subprocess.run([require_java(17), "-version"], capture_output=True, text=True, check=False)
    return {
        "cores": os.cpu_count(),
        "processor": processor(),
        "load_average": load_average(),
        "python": sys.version.split()[0],
        "pyspark": pyspark.__version__,
        "spark_connector": SPARK_VERSION,
        # The version line (a JVM started with JAVA_TOOL_OPTIONS says so on a line before it).
        "java": next(
            (line for line in (java.stderr + java.stdout).splitlines() if " version " in line), "unknown"
        ),
        "kafka": next((j.name for j in resolve(KAFKA_DIST) if j.name.startswith("kafka_2.13")), "unknown"),
        "confluent_kafka": confluent_kafka.__version__,
        "quixstreams": QUIX_VERSION,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice_local bench",
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring, or README.md (Performance).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20k events, one round, the drains two at a time, short latency run (tests)",
    )
    parser.add_argument("--events", type=int, help="events in the data set (default 300000; --quick 20000)")
    parser.add_argument("--repeats", type=int, help="measured rounds after the warm-up round (default 3)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/<UTC time>)")
    parser.add_argument(
        "--keep-work", action="store_true", help="keep checkpoints, logs and copies (out/work)"
    )
    parser.add_argument(
        "--bootstrap",
        help="use this running broker (host:port) instead of starting one; the run's topics are named "
        "bench-<run id>-*",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="write report.md again from a run's results.json (next to it), measuring nothing",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        figures = [report.Figure.from_dict(f) for f in results["figures"]]
        args.render.with_name("report.md").write_text(report.render(results, figures))
        return 0
    plan = QUICK if args.quick else FULL
    if args.events is not None or args.repeats is not None:
        plan = Plan(
            **{
                **plan.__dict__,
                **{k: v for k, v in {"events": args.events, "repeats": args.repeats}.items() if v},
            }
        )
    if plan.events < 1000 or plan.repeats < 1:
        parser.error(
            f"--events {plan.events} / --repeats {plan.repeats}: need at least 1000 events and 1 round"
        )
    out = args.out or ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y-%m-%dT%H%MZ")
    try:
        return run(plan, out.resolve(), quick=args.quick, keep_work=args.keep_work, bootstrap=args.bootstrap)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


def run(plan: Plan, out: Path, *, quick: bool, keep_work: bool, bootstrap: str | None = None) -> int:
    bench = Bench(plan, out, quick=quick)
    bench.work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    before = {"load_average": load_average(), "cpu": CpuTimes.read()}
    _say(f"bench: {plan.events} events, {plan.repeats} measured round(s); results in {out}")
    bench.jars = ",".join(str(j) for j in connector_jars())
    resolve(KAFKA_DIST)
    bench.quix_python()
    broker = (
        contextlib.nullcontext(bootstrap)
        if bootstrap
        else KafkaBroker(work_dir=bench.work / "kafka", heap="1g", log_file=bench.work / "kafka.log")
    )
    with broker as running:
        bench.bootstrap = running if isinstance(running, str) else running.bootstrap_servers
        bench.fill()
        baseline = bench.baseline()
        # A warm-up round first (not counted), but in quick mode.
        for round_ in range(plan.repeats + bench.first_round):
            _say(f"round {round_}{' (warm-up, not counted)' if round_ < bench.first_round else ''}")
            bench.round(round_, baseline)
        topic = bench.topic("gen-cpu")
        ensure_topics(bench.bootstrap, [DesiredTopic(topic, partitions=3)], timeout=30)
        generator_cpu = bench._generator(topic, 0, rate=1000, duration=plan.cpu_seconds)
        _say(
            f"generator at 1000/s: {generator_cpu['cpu_seconds'] / generator_cpu['duration_seconds']:.3f} cores"
        )
        (bench.work / "latency").mkdir(exist_ok=True)
        latency_result = latency.run(
            bootstrap=bench.bootstrap,
            work=bench.work / "latency",
            seconds=plan.latency_seconds,
            segments=plan.latency_segments,
            warmup=plan.latency_warmup,
            rate=plan.latency_rate,
            log=_say,
            job_args=plan.spark_flags(),
        )
        bench.check()
    figures = bench.figures(latency_result, generator_cpu)
    after_cpu = CpuTimes.read()
    machine_info = {
        **machine(),
        "load_before": before["load_average"],
        "load_after": load_average(),
        "steal_share": after_cpu.steal_share_since(before["cpu"]),
    }
    spark_conf = bench.spark_conf
    results = {
        "plan": plan.__dict__,
        "quick": quick,
        "machine": machine_info,
        "seconds": time.monotonic() - started,
        "figures": [f.as_dict() for f in figures],
        "latency": latency_result,
        "generator_cpu": generator_cpu,
        "checks": bench.checks,
        "runs": bench.runs,
        "spark_conf": spark_conf,
        "baseline_commit": BASELINE_COMMIT,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "report.md").write_text(report.render(results, figures))
    if not keep_work:
        shutil.rmtree(bench.work, ignore_errors=True)
    _say(f"bench: done in {results['seconds'] / 60:.1f} min: {out / 'report.md'}")
    return 0
