"""The broker restarted while the generator and the three jobs run: nothing is lost, nothing duplicated, the jobs
ride it out by themselves and their outputs equal the reference.

A broker of its own (this test stops it; the session's broker stays up for the other tests), on a fixed port and
data directory so that it comes back as the same broker with the same topics. The generator and the jobs run as
their pods run them (``python -m ...`` with the flags :func:`sluice_operator.commands.arguments` gives for a parsed
spec). Ten seconds into the generator's run the broker is stopped, kept down for 10–30 s (random) and started
again. Then:
- the source topic holds every sequence number the generator produced exactly once (its idempotent producer
  retried what the broker had not acknowledged), and the generator counted no failed delivery;
- no job stopped: each was still running when the test stopped it (SIGTERM) after it had read everything;
- each output equals the reference computed from the source topic read back, cut into the micro-batches each job
  actually ran (the ends Spark logged in its checkpoint's offset log): events that arrived late because of the
  outage are dropped from closed windows exactly as the watermark rules say, and nowhere else;
- the file sink holds every valid event once, and the dead letters hold every invalid record of every job.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import reference as ref
from pyspark.sql import SparkSession
from sluice_operator.spec import PipelineSpec
from support.lab_pipeline import (
    JOBS,
    batch_ends,
    create_topics,
    dead_letters_of,
    event_files,
    expected_outputs,
    lab_spec,
    spawn,
)
from support.outputs import assert_same_records, one_value_per_key

from sluice_local.kafka_broker import KafkaBroker
from sluice_local.processes import free_ports
from sluice_local.topics import end_offsets, read_all
from spark_jobs.generator.model import HEADER_SEQ

pytestmark = pytest.mark.chaos

SEED = 53
RATE, DURATION_S = 300, 50
DOWN_AFTER_S = 10
DRAIN_TIMEOUT_S = 300


def _spec(bootstrap: str, topics: dict[str, str]) -> PipelineSpec:
    """The pipeline under test: the generator at 300 events/s, 2 % malformed; micro-batches every 2 s."""
    generator = {"devices": 8, "rate": RATE, "seed": SEED, "malformedFraction": 0.02}
    return lab_spec(bootstrap, topics, generator=generator, every_job={"trigger": "2s"})


@pytest.mark.timeout(900)
def test_a_broker_restart_loses_nothing_and_the_jobs_ride_it_out(
    spark: SparkSession, tmp_path: Path, chaos_report
) -> None:
    rng = random.Random(SEED)
    down_s = rng.uniform(10, 30)
    broker = KafkaBroker(
        port=free_ports(1)[0], work_dir=tmp_path / "broker", log_file=tmp_path / "broker.log"
    )
    broker.start()
    processes: dict[str, subprocess.Popen] = {}
    try:
        bootstrap = broker.bootstrap_servers
        topics = create_topics(bootstrap, "restart")
        spec = _spec(bootstrap, topics)
        work = tmp_path / "state"
        for job in JOBS:
            processes[job] = spawn(spec, job, work, tmp_path / f"{job}.log")
        deadline = time.monotonic() + 180
        while not all("started 1 queries" in (tmp_path / f"{j}.log").read_text() for j in JOBS):
            assert time.monotonic() < deadline, "the jobs did not start their queries within 180 s"
            assert all(p.poll() is None for p in processes.values()), "a job stopped while starting"
            time.sleep(0.5)

        summary_file = tmp_path / "generator-summary.json"
        processes["generator"] = spawn(
            spec,
            "generator",
            work,
            tmp_path / "generator.log",
            *("--duration", str(DURATION_S), "--summary-file", str(summary_file)),
        )
        time.sleep(DOWN_AFTER_S)
        broker.stop()
        stopped = time.monotonic()
        time.sleep(down_s)
        broker.start()
        down = time.monotonic() - stopped
        # The same port: clients reconnect to the address they know.
        assert broker.bootstrap_servers == bootstrap

        assert processes["generator"].wait(DURATION_S + 300) == 0, (tmp_path / "generator.log").read_text()[
            -3000:
        ]
        generated = json.loads(summary_file.read_text())
        ends = end_offsets(bootstrap, topics["source"], timeout=30)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        for job in JOBS:
            while not (done := batch_ends(work, job, topics["source"])) or done[-1] != ends:
                assert processes[job].poll() is None, (
                    f"{job} stopped (exit {processes[job].returncode}):\n"
                    + (tmp_path / f"{job}.log").read_text()[-3000:]
                )
                assert time.monotonic() < deadline, (
                    f"{job} did not read everything within {DRAIN_TIMEOUT_S} s"
                )
                time.sleep(1)
        for job in JOBS:  # all still running: none stopped on the outage
            assert processes[job].poll() is None, f"{job} stopped (exit {processes[job].returncode})"
            processes[job].send_signal(signal.SIGTERM)
        for job in JOBS:
            assert processes[job].wait(120) == 0, (tmp_path / f"{job}.log").read_text()[-3000:]

        messages = read_all(bootstrap, topics["source"], timeout=120)
        outputs = {r: read_all(bootstrap, topics[r], timeout=60) for r in ("processed", "windowed", "alerts")}
        letters = read_all(bootstrap, topics["deadLetter"], timeout=60)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(30)
        broker.stop()

    # The generator: every message once.
    sequence = Counter(int(dict(m.headers())[HEADER_SEQ]) for m in messages)
    assert generated["failed"] == 0, generated
    assert sorted(sequence) == list(range(generated["produced"])), "sequence numbers missing"
    assert [s for s, n in sequence.items() if n > 1] == [], "sequence numbers written twice"

    # The jobs: each output as the reference computes it from the batches the job ran.
    parsed = {(m.partition(), m.offset()): ref.parse_record(m.value()) for m in messages}
    events_at = {p: r.event for p, r in parsed.items() if r.event is not None}
    invalid = {p: r.error_code for p, r in parsed.items() if r.event is None}
    compared = 0
    for job in JOBS:
        batches = ref.split_batches(events_at, batch_ends(work, job, topics["source"]))
        for topic, want in expected_outputs(job, batches).items():
            assert_same_records(one_value_per_key(outputs[topic], topic), want, f"{job} → {topic}")
            compared += len(want)
        assert dead_letters_of(letters, job) == invalid, (
            f"{job}: dead letters differ from the invalid records"
        )
    assert event_files(spark, work) == Counter(events_at.values())
    chaos_report(
        f"broker restarted: down {down:.0f} s while the generator produced {generated['produced']} events "
        f"(0 failed, 0 duplicated) and the jobs ran on (0 stopped); {compared} output records and "
        f"{len(invalid)} dead letters per job compared with the reference"
    )


@pytest.mark.timeout(120)
def test_a_broker_down_longer_than_the_message_timeout_fails_the_generator_loudly(tmp_path: Path) -> None:
    """What the generator cannot deliver within ``--message-timeout-ms`` is counted as failed, in its summary, and
    it exits 1: the loss is reported, never silent."""
    nowhere = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    summary_file = tmp_path / "summary.json"
    log = tmp_path / "generator.log"
    flags = (
        "--count",
        "25",
        "--rate",
        "0",
        "--message-timeout-ms",
        "2000",
        "--summary-file",
        str(summary_file),
    )
    generator = spawn(_spec(nowhere, {"source": "events"}), "generator", tmp_path, log, *flags)
    assert generator.wait(90) == 1, log.read_text()[-2000:]
    summary = json.loads(summary_file.read_text())
    assert (summary["produced"], summary["delivered"], summary["failed"]) == (25, 0, 25), summary
