"""``make demo``: the whole pipeline on one machine — a real Kafka broker, the generator, and the three Spark jobs
in local mode — for a bounded time, then a summary of what went where.

The demo runs a :class:`~sluice_operator.spec.PipelineSpec`, the one a user would apply with the demo's settings
(:func:`pipeline_spec`): its topics are created by the operator's topic reconciler
(:func:`sluice_operator.kafka_admin.ensure_topics`), and each component runs with the flags the operator gives its
pod (:func:`sluice_operator.commands.arguments`), its state under the work directory instead of the volume. So the
demo is also a live check of what the operator builds.

Steps: check Java, fetch the pinned jars (cached), start a KRaft broker on a free loopback port, create the topics,
start the jobs (``python -m spark_jobs.<job>``, each one streaming query), run the generator for ``--duration``
seconds, wait until every query has committed every produced record, stop the jobs gracefully (SIGTERM), read the
output topics, print the summary and write it to ``<work dir>/summary.json``. Ctrl-C stops the generator early and goes
straight to the drain and summary; a second Ctrl-C tears everything down at once. No process is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from sluice_operator import commands, components, kafka_admin
from sluice_operator.checkpoints import checkpoint_root, output_dir
from sluice_operator.spec import PipelineSpec, SpecError, camel, parse_spec

from sluice_local.artifacts import ArtifactError, broker_jars, connector_jars, require_java
from sluice_local.checkpoints import queries_behind
from sluice_local.job_process import job_environment, local_command
from sluice_local.kafka_broker import BrokerError, KafkaBroker
from sluice_local.processes import EchoedProcess, stop_echoed
from sluice_local.topics import end_offsets, read_all
from spark_jobs.events import DLQ_HEADER_PREFIX

#: The flags the demo adds to the jobs' (printing each micro-batch's rows) and the generator's (a bounded run).
_JOB_FLAGS = ["--console", "--console-rows", "8"]
_STOP_GRACE_S = 90
_PREFIX_WIDTH = 9


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what failed and where the logs are."""


def pipeline_spec(args: argparse.Namespace, bootstrap: str) -> PipelineSpec:
    """The pipeline the demo runs: the defaults a user gets from a minimal ``StreamingPipeline`` (the lab's topics,
    windows and thresholds, Spark local mode on the driver's 2 cores), on the demo's broker, with the generator's
    settings and the jobs' trigger from the demo's flags, and no metrics port."""
    generator = {
        "devices": args.devices,
        "rate": args.rate,
        "malformedFraction": args.malformed_fraction,
        "lateFraction": args.late_fraction,
    }
    if args.seed is not None:
        generator["seed"] = args.seed
    # The three jobs share this machine: a pod's metrics port would be taken three times, so none is served.
    raw: dict = {
        "kafka": {"bootstrapServers": bootstrap},
        "generator": generator,
        "monitoring": {"metricsPort": 0},
    }
    for job in components.JOBS:
        *parents, last = [camel(part) for part in job.settings_path.split(".")]
        section = raw
        for part in parents:
            section = section.setdefault(part, {})
        section[last] = {"trigger": args.trigger}
    return parse_spec(raw)


def _query_checkpoint(work: Path, job: str) -> Path:
    """Where a job's streaming query keeps its checkpoint (the job's ``--checkpoint-root``, then its name)."""
    return Path(checkpoint_root(root=str(work), job=job, generation=0)) / job


def _event_files(work: Path) -> Path:
    return Path(output_dir(root=str(work), generation=0)) / "events"


def _count_headers(records, header: str) -> Counter:
    counts: Counter = Counter()
    for record in records:
        for key, value in record.headers() or []:
            if key == header:
                counts[value.decode()] += 1
    return counts


def _count_field(records, name: str) -> Counter:
    return Counter(json.loads(r.value())[name] for r in records)


def _files(directory: Path) -> tuple[int, int]:
    files = [p for p in directory.rglob("*") if p.is_file() and p.suffix in {".parquet", ".json"}]
    return len(files), sum(p.stat().st_size for p in files)


def summarize(spec: PipelineSpec, work: Path, generated: dict) -> dict:
    """Read the output topics and the file sink and put the figures of the run together."""
    bootstrap, topics = spec.kafka.bootstrap_servers, spec.kafka.topics
    dlq = read_all(bootstrap, topics.dead_letter.name, timeout=60)
    processed = read_all(bootstrap, topics.processed.name, timeout=60)
    windowed = read_all(bootstrap, topics.windowed.name, timeout=60)
    alerts = read_all(bootstrap, topics.alerts.name, timeout=60)
    files, size = _files(_event_files(work))
    return {
        "events_produced": generated.get("produced", 0),
        "events_delivered": generated.get("delivered", 0),
        "valid_events": generated.get("valid_events", 0),
        "malformed_produced": sum(generated.get("malformed", {}).values()),
        "malformed_by_kind": generated.get("malformed", {}),
        "anomalies_injected": generated.get("anomalies", 0),
        "late_events": generated.get("late", 0),
        "dead_letters_by_job": dict(_count_headers(dlq, DLQ_HEADER_PREFIX + "job")),
        "dead_letters_by_code": dict(_count_headers(dlq, DLQ_HEADER_PREFIX + "error_code")),
        "windows": {
            "basic/device_windows": len(processed),
            **{f"windowed/{k}": v for k, v in sorted(_count_field(windowed, "aggregation").items())},
        },
        "alerts": dict(_count_field(alerts, "anomaly_type")),
        "alerts_total": len(alerts),
        "event_files": files,
        "event_file_bytes": size,
        "outputs": {
            "kafka": bootstrap + " (stopped at the end of the demo)",
            "topics": [t.name for _, t in topics.all()],
            "event_files": str(_event_files(work)),
            "checkpoints": str(work / "checkpoints"),
            "logs": str(work / "logs"),
            "summary": str(work / "summary.json"),
        },
    }


def print_summary(summary: dict) -> None:
    w = summary["windows"]
    lines = [
        "",
        "==================== Sluice demo summary ====================",
        f"events produced         {summary['events_produced']} (delivered {summary['events_delivered']}, "
        f"{summary['anomalies_injected']} injected anomalies, {summary['late_events']} late)",
        f"malformed -> DLQ        {summary['malformed_produced']} produced; dead letters per job: "
        + (", ".join(f"{j} {n}" for j, n in sorted(summary["dead_letters_by_job"].items())) or "none"),
        "windows emitted         " + ", ".join(f"{k} {v}" for k, v in w.items()),
        f"alerts raised           {summary['alerts_total']} "
        + "("
        + (", ".join(f"{k} {v}" for k, v in sorted(summary["alerts"].items())) or "none")
        + ")",
        f"event files written     {summary['event_files']} files, {summary['event_file_bytes']} bytes",
        "where outputs live",
        *[f"  {k:<21} {v}" for k, v in summary["outputs"].items() if k != "topics"],
        "  topics                " + ", ".join(summary["outputs"]["topics"]),
        "Windows are emitted once final (append mode): a window closes when the watermark passes its end, so the",
        "hourly status windows of a short run stay open and are not written.",
        "=============================================================",
    ]
    print("\n".join(lines), flush=True)


def run_demo(args: argparse.Namespace) -> int:
    work = Path(args.work_dir).resolve()
    interrupted: list[int] = []

    def on_sigint(_sig, _frame) -> None:
        interrupted.append(1)
        if len(interrupted) == 1:
            print("\nStopping: the generator ends now, then the jobs drain and stop (Ctrl-C again to abort).")
        else:
            raise KeyboardInterrupt

    say = print
    say(
        f"Sluice demo: {args.duration:g} s of events at {args.rate}/s from {args.devices} devices; work dir {work}"
    )
    java = require_java(17)
    say(f"- Java: {java}")
    say("- Fetching the Kafka broker and Spark connector jars (cached after the first run)...")
    broker_jars()
    connector_jars()
    if work.exists():
        shutil.rmtree(work)  # checkpoints of an earlier run point at a broker that no longer exists
    (work / "logs").mkdir(parents=True)
    previous = signal.signal(signal.SIGINT, on_sigint)
    broker = KafkaBroker(port=args.kafka_port, log_file=work / "logs" / "kafka.log")
    children: list[EchoedProcess] = []
    try:
        broker.start()
        bootstrap = broker.bootstrap_servers
        say(f"- Kafka {bootstrap} ready in {broker.startup_seconds:.1f} s (log: {broker.log_file})")
        spec = pipeline_spec(args, bootstrap)
        kafka_admin.ensure_topics(bootstrap, kafka_admin.desired_topics(spec.kafka.topics), timeout=30)
        say(f"- Topics: {', '.join(t.name for _, t in spec.kafka.topics.all())}")
        env = job_environment()
        jobs = {
            job.name: EchoedProcess.spawn(
                job.name,
                local_command(
                    job, [*commands.arguments(spec=spec, component=job, root=str(work)), *_JOB_FLAGS]
                ),
                log=work / "logs" / f"{job.name}.log",
                quiet=args.quiet,
                prefix_width=_PREFIX_WIDTH,
                env=env,
            )
            for job in components.JOBS
        }
        children.extend(jobs.values())
        say(
            f"- Jobs starting in Spark local mode (python -m spark_jobs.<job> --master {commands.master(spec)}): "
            + ", ".join(jobs)
        )
        _await_started(jobs, timeout=args.startup_timeout)
        summary_file = work / "generator-summary.json"
        producer = components.get("generator")
        generator = EchoedProcess.spawn(
            producer.name,
            local_command(
                producer,
                [
                    *commands.arguments(spec=spec, component=producer),
                    *("--duration", str(args.duration), "--summary-file", str(summary_file)),
                ],
            ),
            log=work / "logs" / f"{producer.name}.log",
            quiet=True,
            prefix_width=_PREFIX_WIDTH,
        )
        children.append(generator)
        say(f"- Generator running for {args.duration:g} s")
        while generator.alive():
            if interrupted:
                os.killpg(generator.process.pid, signal.SIGTERM)
                generator.process.wait(30)
                break
            _check_jobs(jobs)
            time.sleep(0.5)
        if not summary_file.exists():
            raise DemoError(f"the generator ended without a summary:\n{generator.log_tail()}")
        generated = json.loads(summary_file.read_text())
        say(f"- Generator done: {generated['produced']} produced, {generated['failed']} failed")
        _await_drained(jobs, spec, work, timeout=args.drain_timeout)
        say("- Every query has committed every record; stopping the jobs")
        stop_echoed(list(jobs.values()), _STOP_GRACE_S)
        for name, child in jobs.items():
            if child.process.returncode != 0:
                raise DemoError(f"job {name} exited with {child.process.returncode}:\n{child.log_tail()}")
        summary = summarize(spec, work, generated)
        (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary)
        return 0 if generated.get("failed", 0) == 0 else 1
    finally:
        stop_echoed(children, 30)
        broker.stop()
        signal.signal(signal.SIGINT, previous)


def _await_started(jobs: dict[str, EchoedProcess], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(jobs)
    while pending:
        _check_jobs(jobs)
        for name in list(pending):
            if any(": started " in line for line in jobs[name].lines):
                pending.discard(name)
        if time.monotonic() > deadline:
            raise DemoError(f"jobs not started within {timeout:g} s: {', '.join(sorted(pending))}")
        time.sleep(0.3)


def _check_jobs(jobs: dict[str, EchoedProcess]) -> None:
    for name, child in jobs.items():
        if not child.alive():
            raise DemoError(
                f"job {name} stopped unexpectedly (exit {child.process.returncode}); "
                f"last lines of {child.log}:\n{child.log_tail()}"
            )


def _await_drained(jobs: dict[str, EchoedProcess], spec: PipelineSpec, work: Path, *, timeout: float) -> None:
    source = spec.kafka.topics.source.name
    ends = end_offsets(spec.kafka.bootstrap_servers, source)
    deadline = time.monotonic() + timeout
    checkpoints = [_query_checkpoint(work, job) for job in jobs]  # one streaming query per job
    while True:
        _check_jobs(jobs)
        behind = queries_behind(checkpoints, source, ends)
        if not behind:
            return
        if time.monotonic() > deadline:
            raise DemoError(
                f"queries still behind the end of the source after {timeout:g} s: {', '.join(behind)}"
            )
        time.sleep(1)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="sluice-local demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=90.0, help="seconds the generator runs (default 90)")
    p.add_argument("--rate", type=int, default=200, help="events per second, all devices together")
    p.add_argument("--devices", type=int, default=10, help="number of simulated devices")
    p.add_argument("--malformed-fraction", type=float, default=0.01, help="share of malformed messages")
    p.add_argument("--late-fraction", type=float, default=0.02, help="share of late, out-of-order events")
    p.add_argument("--seed", type=int, default=None, help="random seed of the generator")
    p.add_argument("--trigger", default="5s", help="micro-batch interval of the jobs")
    p.add_argument("--kafka-port", type=int, default=None, help="broker port (default: a free one)")
    p.add_argument("--work-dir", default=".sluice/demo", help="checkpoints, files, logs and summary go here")
    p.add_argument(
        "--startup-timeout", type=float, default=240.0, help="seconds to wait for the jobs to start"
    )
    p.add_argument(
        "--drain-timeout", type=float, default=240.0, help="seconds to wait for the jobs to catch up"
    )
    p.add_argument("--quiet", action="store_true", help="do not echo the jobs' console output")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    checks = [
        ("--duration", args.duration, args.duration > 0, "a number of seconds greater than 0"),
        ("--rate", args.rate, args.rate >= 1, "a whole number of events per second, at least 1"),
        ("--devices", args.devices, args.devices >= 1, "a whole number, at least 1"),
        (
            "--malformed-fraction",
            args.malformed_fraction,
            0 <= args.malformed_fraction <= 1,
            "between 0 and 1",
        ),
        ("--late-fraction", args.late_fraction, 0 <= args.late_fraction <= 1, "between 0 and 1"),
    ]
    for flag, value, ok, accepted in checks:
        if not ok:
            parser.error(f"{flag}: {value:g} is not accepted; use {accepted}")
    try:
        pipeline_spec(
            args, "localhost:9092"
        )  # the broker's address comes later; the other settings are checked now
    except SpecError as exc:
        parser.error(f"the flags make a pipeline the operator would refuse: {exc}")
    try:
        return run_demo(args)
    except (
        ArtifactError,
        BrokerError,
        DemoError,
        kafka_admin.KafkaUnavailable,
        kafka_admin.KafkaAdminError,
    ) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
