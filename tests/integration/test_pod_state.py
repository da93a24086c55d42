"""The operator's job pod, run for real: its state files land on the pipeline's volume and survive a restart.

The pod spec comes from the operator's own builder (``sluice_operator.manifests.pod_plan``) for the default
``spark.mode: local``. Its container command runs here as a process, the volume mount path mapped to a temp
directory (the "PVC"), against the session's real Kafka broker. Two things differ from the pod and are said here:
``python3`` is this interpreter, and ``--jars`` adds the connector jars that the job image bakes into pyspark. The
test checks that the job's checkpoint and its window snapshots are on the volume, and that after SIGTERM and a
restart the job resumes from them: no batch run twice, no window emitted twice.
"""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sluice_operator import components, kafka_admin
from sluice_operator.checkpoints import STATE_MOUNT
from sluice_operator.manifests import pod_plan
from sluice_operator.spec import parse_spec
from support.kubelet import run_container
from support.lab_pipeline import produce_events
from support.prometheus import scraped

from sluice_local.checkpoints import committed_offsets
from sluice_local.processes import free_ports
from sluice_local.topics import read_all

pytestmark = pytest.mark.integration


def pod_process(plan, volume: Path, log: Path) -> subprocess.Popen:
    (container,) = plan.manifest["spec"]["containers"]
    return run_container(container, volume, log)


def snapshots(query: Path) -> dict[int, Path]:
    """The job's window snapshots (open windows and watermark after a micro-batch), by batch id."""
    return {int(p.stem): p for p in (query / "windows").glob("*.json")}


def wait_until(check, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the job exited early:\n{log.read_text()[-3000:]}"
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.timeout(600)
def test_job_state_lands_on_the_volume_and_survives_a_restart(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    suffix = str(int(time.time() * 1000))[-8:]
    (metrics_port,) = free_ports(1)
    spec = parse_spec(
        {
            "kafka": {
                "bootstrapServers": bootstrap,
                "topics": {
                    r: {"name": f"pod-{r}-{suffix}"}
                    for r in ("source", "processed", "windowed", "alerts", "deadLetter")
                },
            },
            "jobs": {"windowed": {"trigger": "2s", "statusWindow": "1m"}},
            "input": {"maxEventBehind": "none"},  # the events are dated 2024-05-01 and produced now
            "spark": {"driver": {"cores": 2, "memory": "1g"}},
            "monitoring": {"metricsPort": metrics_port},
        }
    )
    topics = [
        kafka_admin.DesiredTopic(t.name, t.partitions, t.replication_factor, dict(t.config))
        for _, t in spec.kafka.topics.all()
    ]
    kafka_admin.ensure_topics(bootstrap, topics)
    source, output = spec.kafka.topics.source.name, spec.kafka.topics.windowed.name
    plan = pod_plan(
        pipeline="lab", namespace="team", spec=spec, component=components.get("windowed"), generation=0
    )
    volume = tmp_path / "pvc"
    volume.mkdir()
    log = tmp_path / "windowed.log"
    checkpoint = volume / "checkpoints" / "windowed" / "g0" / "windowed"
    assert plan.checkpoint_path == f"{STATE_MOUNT}/checkpoints/windowed/g0"

    # Run 1: 60 s of event time (1200 events); stop with SIGTERM, as the kubelet stops a pod.
    produce_events(bootstrap, source, datetime(2024, 5, 1, tzinfo=UTC), 1200, seed=3)
    job = pod_process(plan, volume, log)
    try:
        wait_until(
            lambda: (
                committed_offsets(checkpoint).get(source)
                and sum(committed_offsets(checkpoint)[source].values()) >= 1200
            ),
            240,
            "run 1 to commit every record",
            job,
            log,
        )
        # The pod's declared metrics port serves the job's metrics, and its consumer group (the operator's name
        # for it) is where the operator reads its progress: every record the producer wrote is processed.
        (port,) = plan.manifest["spec"]["containers"][0]["ports"]
        assert (port["name"], port["containerPort"]) == ("metrics", metrics_port)
        wait_until(
            lambda: scraped(metrics_port, "sluice_job_input_rows_total") >= 1200,
            60,
            "the metrics to count the micro-batches' rows",
            job,
            log,
        )
        assert scraped(metrics_port, "sluice_job_input_rows_total") == 1200  # what the producer wrote
        group = "sluice.team.lab.windowed"
        assert f"--consumer-group {group}" in " ".join(plan.manifest["spec"]["containers"][0]["args"])
        wait_until(
            lambda: (
                kafka_admin.read_progress(bootstrap, source, [group], now=datetime.now(UTC))[group].lag == 0
            ),
            60,
            "the job's consumer group to be at lag 0",
            job,
            log,
        )
    finally:
        job.send_signal(signal.SIGTERM)
        assert job.wait(120) == 0, log.read_text()[-3000:]
    first_state = snapshots(checkpoint)
    assert first_state, "the job's window snapshots are not on the volume"
    assert all((p.with_suffix("")).is_dir() for p in first_state.values()), "a snapshot without its windows"
    first_batches = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    emitted_first = [m.key() for m in read_all(bootstrap, output)]
    assert emitted_first, "run 1 should have closed some windows"

    # Run 2 on the same volume: more events, later in event time.
    produce_events(bootstrap, source, datetime(2024, 5, 1, 0, 1, tzinfo=UTC), 1200, seed=3)
    job = pod_process(plan, volume, log)
    try:
        wait_until(
            lambda: sum(committed_offsets(checkpoint).get(source, {}).values()) >= 2400,
            240,
            "run 2 to commit every record",
            job,
            log,
        )
    finally:
        job.send_signal(signal.SIGTERM)
        assert job.wait(120) == 0, log.read_text()[-3000:]
    batches = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    # resumed: batch ids continue from run 1 (no batch was run again from scratch)
    assert batches[: len(first_batches)] == first_batches and batches[-1] > first_batches[-1]
    # run 2 went on from run 1's last snapshot: its snapshots are of the batches after it
    later_state = snapshots(checkpoint)
    assert max(later_state) > max(first_state) and max(first_state) in later_state
    keys = [m.key() for m in read_all(bootstrap, output)]
    assert len(keys) == len(set(keys)), "a window was emitted twice"
    assert len(keys) > len(emitted_first)
