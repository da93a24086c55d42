"""Jobs killed with SIGKILL at random points and restarted on the same checkpoint lose nothing and never change an
output.

Each job runs as a pod runs it: ``python -m spark_jobs.<job>`` with the flags the operator gives its pod
(:func:`sluice_operator.commands.arguments` for a parsed ``StreamingPipeline`` spec), here with a small
``maxOffsetsPerTrigger`` so the source is read in many micro-batches. While it works through them it is killed
(SIGKILL to its process group: the Python driver and Spark's JVM, as when a container is killed) at a random
moment after its query started, and started again on the same checkpoint, ``SLUICE_CHAOS_KILLS`` times (5 here,
20 in ``make chaos``); then it runs to the end (``--trigger available-now`` added to the pod's flags, so that the
last run ends; it reads what is left in one micro-batch). What each kill interrupted is read from the checkpoint
right after it: a micro-batch whose offsets were logged but not committed ("mid-batch": its output partly written,
its state-store files partly uploaded, or the recovery of the batch the kill before interrupted), or nothing
("between batches").

Then, against the reference computed independently from the source topic read back (``reference.py``), cut into
the micro-batches each job ran (the ends Spark logged in its checkpoint's offset log; a batch run again after a kill
reads what its first run had logged):
- every window the reference has is in the output with the reference's values, and no other key is;
- no key was ever written with two different values (a batch run again after a kill rewrites the same records:
  at-least-once, under the same key and value);
- the file sink holds every valid event exactly once (its own log makes it exactly-once);
- every invalid record is in the dead letters of every job, with its code.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import reference as ref
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pyspark.sql import SparkSession
from reference import Event
from sluice_operator.spec import PipelineSpec
from support.lab_pipeline import (
    JOBS,
    OUTPUT_TOPIC,
    batch_ends,
    create_topics,
    dead_letters_of,
    event_files,
    expected_outputs,
    lab_spec,
    query_dir,
    spawn,
)
from support.outputs import assert_same_records, one_value_per_key

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.topics import read_all
from spark_jobs.generator.model import EventFactory, GeneratorConfig

KILLS = int(os.environ.get("SLUICE_CHAOS_KILLS", "5"))
"""Kills per job: at least 5 in `make test`, 20 in the soak (`make chaos`)."""

# The module's runs happen in the first test's set-up (a module fixture): their time grows with the kills (a run
# takes up to ~90 s on a busy 2-core machine, three jobs at once).
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600 + 120 * KILLS)]
PER_TRIGGER = 1200
BATCHES = 2 * KILLS + 3
"""Micro-batches of data per job: a killed run plans at most two new ones, so the last run still has some."""
EVENTS = PER_TRIGGER * BATCHES
KILL_WITHIN_S = 25.0
KILL_AFTER_COMMIT_S = 8.0
"""A run killed "during recovery" dies within 25 s of its query's start, one killed "after progress" within 8 s of
its first commit: Spark's first micro-batch in a new process takes ~12 s on an idle machine (~30 s with three jobs
at once), the next ones ~3 s (~10 s)."""
QUERY_STARTED = "started 1 queries"
SEED = 31
RUN_TIMEOUT_S = 600


def _spec(bootstrap: str, topics: dict[str, str]) -> PipelineSpec:
    """The pipeline under test: no generator (the events are made before), micro-batches as fast as they go, at
    most ``PER_TRIGGER`` records each."""
    return lab_spec(
        bootstrap,
        topics,
        generator={"enabled": False},
        every_job={"trigger": "0s", "maxOffsetsPerTrigger": PER_TRIGGER},
    )


def _produce(bootstrap: str, topic: str, start: datetime) -> None:
    """The real generator's events in time order, 50 ms apart, 2 % of them malformed, keyed by device."""
    factory = EventFactory(
        GeneratorConfig(seed=SEED, devices=8, start_time=start, interval_ms=50, malformed_fraction=0.02)
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    errors: list = []
    for seq in range(EVENTS):
        m = factory.message(seq, start)
        producer.produce(
            topic,
            key=m.key,
            value=m.value,
            headers=m.headers,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:3]


@dataclass
class Kill:
    mode: str  # "after progress" or "during recovery"
    planned: int  # the last micro-batch in the offset log when killed
    committed: int  # the last one in the commit log
    progress: int  # micro-batches the killed run committed

    @property
    def mid_batch(self) -> bool:
        return self.planned > self.committed


@dataclass
class Chaos:
    job: str
    kills: list[Kill] = field(default_factory=list)
    runs: int = 0
    seconds: float = 0.0


def _last(directory: Path) -> int:
    """The last micro-batch in a checkpoint's offset or commit log (-1: none)."""
    ids = [int(p.name) for p in directory.glob("*") if p.name.isdigit()] if directory.is_dir() else []
    return max(ids, default=-1)


def _running(process: subprocess.Popen, until: Callable[[], bool], what: str) -> bool:
    """Wait while ``process`` runs and ``until()`` is false; whether it still runs."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not until() and process.poll() is None:
        assert time.monotonic() < deadline, f"stuck for {RUN_TIMEOUT_S} s: {what}"
        time.sleep(0.02)
    return process.poll() is None


class _TopicSize:
    """How many records a topic holds (the sum of its partitions' end offsets), asked of the broker each call."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"}
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in partitions]

    def __call__(self) -> int:
        return sum(self._consumer.get_watermark_offsets(p, timeout=10)[1] for p in self._partitions)

    def close(self) -> None:
        self._consumer.close()


def _kill_at_random(
    process: subprocess.Popen,
    mode: str,
    query: Path,
    log: Path,
    run: int,
    rng: random.Random,
    written: Callable[[], int],
) -> Kill | None:
    """Kill the run ``process`` (the ``run``-th of its job) as ``mode`` says; None if it ended first.
    ``written()`` counts the records in the job's output topic (every micro-batch but the first writes some)."""
    offsets, commits = query / "offsets", query / "commits"
    planned, committed = _last(offsets), _last(commits)
    if mode == "after its writes":
        # As soon as this run's first micro-batch has written, before (with luck) it commits: "mid-commit".
        before = written()
        ok = _running(process, lambda: written() > before, mode)
    else:
        if mode == "during recovery":
            ok = _running(process, lambda: log.read_text(errors="replace").count(QUERY_STARTED) >= run, mode)
            within = KILL_WITHIN_S
        else:
            ok = _running(process, lambda: _last(commits) > committed, mode)
            within = KILL_AFTER_COMMIT_S
        if ok:
            at = time.monotonic() + rng.uniform(0.0, within)
            ok = _running(process, lambda: time.monotonic() >= at or _last(offsets) >= planned + 2, mode)
    if not ok:
        return None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(60)
    return Kill(mode, _last(offsets), _last(commits), _last(commits) - committed)


def _run_with_kills(
    job: str, spec: PipelineSpec, work: Path, kills: int, rng: random.Random, written: Callable[[], int]
) -> Chaos:
    """Run ``job`` until it ends by itself, killing it ``kills`` times on the way; each run resumes from the
    checkpoint the one before left. A quarter of the runs (at least one) are killed the moment their output topic
    grows, between a micro-batch's writes and its commit when the timing allows ("after its writes": the batch is
    then written again); of the others, half (the first run among them) after they have committed a micro-batch,
    at a random moment of the next one ("after progress"), and the rest at a random moment of their first
    ``KILL_WITHIN_S`` seconds after the query started, mostly while recovering the batch the kill before interrupted
    ("during recovery"). A run killed at a random moment plans at most two new micro-batches first, so the data
    outlasts the kills; the last run reads the rest at once."""
    query = query_dir(work, job)
    writes = max(1, kills // 4)
    progress = (kills - writes + 1) // 2
    rest = (
        ["after its writes"] * writes
        + ["after progress"] * (progress - 1)
        + ["during recovery"] * (kills - writes - progress)
    )
    modes = ["after progress", *rng.sample(rest, len(rest))]
    chaos, started = Chaos(job), time.monotonic()
    log = work / f"{job}.log"
    while True:
        chaos.runs += 1
        with log.open("a") as out:
            out.write(f"\n===== run {chaos.runs} =====\n")
            out.flush()
        # The pod's flags, and available-now (the CRD has no such trigger: a pod runs for good): the last run ends.
        # The last run (after Spark runs again the batch the last kill interrupted, as logged) reads the rest at once.
        drain = () if modes else ("--max-offsets-per-trigger", str(EVENTS))
        process = spawn(spec, job, work, log, "--trigger", "available-now", *drain)
        try:
            if modes:
                kill = _kill_at_random(process, modes.pop(0), query, log, chaos.runs, rng, written)
                if kill is not None:
                    chaos.kills.append(kill)
                    continue
                assert process.returncode == 0, f"{job} failed (exit {process.returncode}):\n{_tail(log)}"
                pytest.fail(
                    f"{job} read everything after {len(chaos.kills)} kills: {EVENTS} events are too few"
                )
            code = process.wait(RUN_TIMEOUT_S)
            assert code == 0, f"{job} failed (exit {code}) after {len(chaos.kills)} kills:\n{_tail(log)}"
            chaos.seconds = time.monotonic() - started
            return chaos
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(60)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


@dataclass
class ChaosRun:
    chaos: dict[str, Chaos]
    batches: dict[str, list[list[Event]]]  # the valid events, cut into the micro-batches each job ran
    invalid: dict[
        tuple[int, int], str
    ]  # (partition, offset) -> error code, of every record the reference rejects
    outputs: dict[str, list[Message]]
    letters: list[Message]
    files: Counter


@pytest.fixture(scope="module")
def chaos_run(spark: SparkSession, kafka_broker: KafkaBroker, tmp_path_factory) -> ChaosRun:
    bootstrap = kafka_broker.bootstrap_servers
    topics = create_topics(bootstrap, "chaos")
    # Whole minutes, within the jobs' default event-time bounds.
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    _produce(bootstrap, topics["source"], start)
    spec = _spec(bootstrap, topics)
    work = tmp_path_factory.mktemp("chaos")

    found: dict[str, Chaos] = {}
    failures: list[BaseException] = []

    def run(job: str, seed: int) -> None:
        try:
            written = _TopicSize(bootstrap, topics[OUTPUT_TOPIC[job]])
            try:
                found[job] = _run_with_kills(job, spec, work, KILLS, random.Random(seed), written)
            finally:
                written.close()
        except BaseException as exc:  # re-raised in the test's thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job, SEED + i)) for i, job in enumerate(JOBS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]

    messages = read_all(bootstrap, topics["source"], timeout=120)
    parsed = {(m.partition(), m.offset()): ref.parse_record(m.value()) for m in messages}
    events_at = {position: p.event for position, p in parsed.items() if p.event is not None}
    return ChaosRun(
        found,
        {job: ref.split_batches(events_at, batch_ends(work, job, topics["source"])) for job in JOBS},
        {position: p.error_code for position, p in parsed.items() if p.event is None},
        {r: read_all(bootstrap, topics[r], timeout=60) for r in OUTPUT_TOPIC.values()},
        read_all(bootstrap, topics["deadLetter"], timeout=60),
        event_files(spark, work),
    )


def test_every_job_was_killed_mid_work_and_ran_to_the_end(chaos_run: ChaosRun, chaos_report) -> None:
    for job, chaos in chaos_run.chaos.items():
        assert len(chaos.kills) >= KILLS and chaos.runs == len(chaos.kills) + 1
        mid = sum(k.mid_batch for k in chaos.kills)
        progressed = [k for k in chaos.kills if k.mode == "after progress"]
        assert progressed and all(k.progress > 0 for k in progressed)
        modes = Counter(k.mode for k in chaos.kills)
        chaos_report(
            f"jobs SIGKILLed: {job}: {len(chaos.kills)} kills ({mid} mid-batch, {len(chaos.kills) - mid} between "
            f"batches; {', '.join(f'{n} {m}' for m, n in sorted(modes.items()))}; at batches "
            f"{[k.planned for k in chaos.kills]} of {BATCHES + 1}), {chaos.runs} runs, {chaos.seconds:.0f} s"
        )
    # Kills at random moments of a job that is mostly working land in a batch; all between batches would mean the
    # test is not exercising recovery of a batch in flight.
    assert sum(k.mid_batch for c in chaos_run.chaos.values() for k in c.kills) > 0


def test_outputs_equal_the_reference_and_no_key_changed_value(chaos_run: ChaosRun, chaos_report) -> None:
    for job in JOBS:
        for topic, want in expected_outputs(job, chaos_run.batches[job]).items():
            messages = chaos_run.outputs[topic]
            assert_same_records(one_value_per_key(messages, topic), want, f"{job} → {topic}")
            assert len(want) > 100
            chaos_report(
                f"jobs SIGKILLed: {topic}: {len(want)} reference records all present and equal; {len(messages)} "
                f"written ({len(messages) - len(want)} rewrites of a replayed batch, same key and value)"
            )


def test_the_file_sink_holds_every_valid_event_once(chaos_run: ChaosRun) -> None:
    assert chaos_run.files == Counter(e for batch in chaos_run.batches["basic"] for e in batch)


def test_the_dead_letters_hold_every_invalid_record_for_every_job(chaos_run: ChaosRun, chaos_report) -> None:
    assert len(chaos_run.invalid) > 100
    for job in JOBS:
        found = dead_letters_of(chaos_run.letters, job)
        assert found == chaos_run.invalid, (
            f"{job}: {len(chaos_run.invalid.keys() - found.keys())} invalid records missing from the dead letters, "
            f"{len(found.keys() - chaos_run.invalid.keys())} valid ones there, "
            f"{sum(found.get(p, c) != c for p, c in chaos_run.invalid.items())} with another code"
        )
        written = sum(dict(m.headers())["sluice.dlq.job"] == job.encode() for m in chaos_run.letters)
        chaos_report(
            f"jobs SIGKILLed: {job} dead letters: all {len(chaos_run.invalid)} invalid records with their codes, "
            f"{written} written"
        )
