"""One measured process of the benchmark: a job draining pre-filled events, or Spark in batch on the same events.

``python -m sluice_local.bench.drain job --job windowed --result FILE ... -- <the job's own flags>`` builds the job's
options with its own parser and its SparkSession with its own builder, as ``python -m spark_jobs.<job>`` does, then
drains the source topic ``--warmups`` times (to warm the JVM up; discarded) and once more, measured. Each drain
starts on a fresh checkpoint and writes to fresh output topics, with the trigger ``available-now``. Measured: the
span from the first micro-batch's start to the last one's end (start-up excluded), and the CPU seconds of this
process and its JVM over the drain.

It only uses what every version of the jobs has (the flags, ``start`` and ``spark_jobs.session``), so the same
runner measures the jobs before this change, checked out with ``git archive`` and put first on ``PYTHONPATH``: their
options are parsed by the job's own ``build_parser`` and ``options_from`` where it has them (the baseline), else by
the parser generated from its options class.

``... drain ceiling --kind job|tumbling --events FILE ...`` runs the same transforms as a job (or the plain 10 s
tumbling aggregation) as one batch job over a Parquet copy of the source topic, and writes the records the job must
have written (its windows the final watermark closed) for the benchmark's output checks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import typing
import uuid
from datetime import datetime
from pathlib import Path

from sluice_operator import components
from sluice_operator.kafka_admin import DesiredTopic, ensure_topics

from sluice_local.bench.proc import tree_cpu_seconds

#: Per job: the flag naming its output topic.
OUTPUT_FLAGS = {job.name: job.outputs[0].flag for job in components.JOBS}


def job_options(module, flags: list[str]):
    """The job's options from its flags, parsed as ``python -m spark_jobs.<job>`` parses them: by the job's own
    ``build_parser`` and ``options_from`` where it has them (the baseline), else by the parser generated from the
    options class its ``start`` takes."""
    if hasattr(module, "options_from"):  # the jobs before their parsers were generated (the baseline)
        return module.options_from(module.build_parser().parse_args(flags))
    from spark_jobs.options import parse_options

    return parse_options(typing.get_type_hints(module.start)["opts"], flags)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _span(queries) -> tuple[float, int, int]:
    """Seconds from the first micro-batch's start to the last one's end, over ``queries``; the input rows they
    read; the micro-batches."""
    starts, ends, rows, batches = [], [], 0, 0
    for query in queries:
        progress = query.recentProgress
        if not progress:
            continue
        starts.append(_timestamp(progress[0]["timestamp"]))
        last = progress[-1]
        ends.append(_timestamp(last["timestamp"]) + last["durationMs"]["triggerExecution"] / 1000)
        rows += sum(p["numInputRows"] for p in progress)
        batches += len(progress)
    return (max(ends) - min(starts)) if starts else 0.0, rows, batches


def _drain(job: str, module, base_flags: list[str], *, work: Path, bootstrap: str, name: str, spark) -> dict:
    """One drain on a fresh checkpoint, into fresh topics: its figures and where its outputs are."""
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    output, dead = f"bench-{job}-out-{suffix}", f"bench-{job}-dlq-{suffix}"
    ensure_topics(bootstrap, [DesiredTopic(output), DesiredTopic(dead)], timeout=30)
    flags = [
        *base_flags,
        "--checkpoint-root", str(work / suffix / "checkpoints"),
        OUTPUT_FLAGS[job], output,
        "--dead-letter-topic", dead,
        "--query-prefix", f"{suffix}-",
    ]  # fmt: skip
    if components.get(job).writes_files:
        flags += ["--output-dir", str(work / suffix / "output")]
    opts = job_options(module, flags)
    cpu_before = tree_cpu_seconds(os.getpid())
    started = module.start(spark, opts)
    queries = started if isinstance(started, list) else [started]
    try:
        for query in queries:
            query.awaitTermination()
            if query.exception() is not None:
                raise RuntimeError(f"query {query.name} failed: {query.exception()}")
    finally:
        for query in queries:
            query.stop()
    cpu = tree_cpu_seconds(os.getpid()) - cpu_before
    seconds, rows, batches = _span(queries)
    steps: dict[str, float] = {}
    for (
        query
    ) in queries:  # Spark's own phases of each micro-batch (latestOffset, queryPlanning, addBatch, ...)
        for progress in query.recentProgress:
            for phase, ms in progress["durationMs"].items():
                steps[f"spark.{phase}"] = steps.get(f"spark.{phase}", 0.0) + ms / 1000
    for query in queries:  # the jobs since Sluice 0.2 report the seconds of each step of their micro-batches
        for report in getattr(getattr(query, "handler", None), "reports", []):
            for step, spent in report.seconds.items():
                steps[step] = steps.get(step, 0.0) + spent
    return {
        "steps": steps,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "input_rows": rows,
        "batches": batches,
        "queries": len(queries),
        "output_topic": output,
        "dead_letter_topic": dead,
    }


def _session(module, base_flags: list[str], app_name: str):
    from spark_jobs.session import build_session

    opts = job_options(module, base_flags)
    spark = build_session(app_name, opts.common)
    return spark


def run_job(args: argparse.Namespace) -> dict:
    module = importlib.import_module(f"spark_jobs.{args.job}")
    work = Path(args.work_dir)
    spark = _session(module, args.flags, f"bench-{args.job}")
    warmups = [
        _drain(args.job, module, args.flags, work=work, bootstrap=args.bootstrap, name=f"w{i}", spark=spark)
        for i in range(args.warmups)
    ]
    measured = _drain(
        args.job, module, args.flags, work=work, bootstrap=args.bootstrap, name="m", spark=spark
    )
    conf = dict(spark.sparkContext.getConf().getAll())
    spark.stop()
    return {
        "kind": "job",
        "job": args.job,
        "code": str(Path(module.__file__).parent),
        "warmup_seconds": [w["seconds"] for w in warmups],
        **measured,
        "spark_conf": {k: v for k, v in sorted(conf.items()) if not k.startswith("spark.app.")},
    }


def run_ceiling(args: argparse.Namespace) -> dict:
    """Spark in batch: the job's transforms (or the plain tumbling aggregation) over the Parquet copy."""
    from pyspark.sql import functions as F

    from sluice_local.bench.ceiling import expected_records, job_files, job_records, tumbling_rows

    module = importlib.import_module(f"spark_jobs.{args.job}")
    spark = _session(module, args.flags, f"bench-ceiling-{args.job}")
    opts = job_options(module, args.flags)
    raw = spark.read.parquet(args.events)

    def run_once() -> None:
        if args.kind == "tumbling":
            tumbling_rows(raw, opts).write.format("noop").mode("overwrite").save()
            return
        job_records(module, opts, raw).write.format("noop").mode("overwrite").save()
        files = job_files(module, opts, raw)
        if files is not None:  # the basic job writes its events as files, so its ceiling does too
            files.write.mode("overwrite").partitionBy("event_date").parquet(args.scratch)

    timings = []
    for _ in range(args.warmups + 1):
        cpu_before, started = tree_cpu_seconds(os.getpid()), time.monotonic()
        run_once()
        timings.append((time.monotonic() - started, tree_cpu_seconds(os.getpid()) - cpu_before))
    result = {
        "kind": f"ceiling-{args.kind}",
        "job": args.job,
        "warmup_seconds": [t for t, _ in timings[:-1]],
        "seconds": timings[-1][0],
        "cpu_seconds": timings[-1][1],
        "input_rows": raw.count(),
    }
    if args.expected:
        from spark_jobs.events import parse_events
        from spark_jobs.micro_batch import input_limits

        result["dead_letters"] = (
            parse_events(raw, input_limits(opts.common)).where(F.col("error_code").isNotNull()).count()
        )
        records = expected_records(module, opts, raw)
        rows = records.select(F.col("key").cast("string"), F.col("value").cast("string")).collect()
        Path(args.expected).write_text("".join(json.dumps([r.key, r.value]) + "\n" for r in rows))
        result["expected_records"] = len(rows)
    spark.stop()
    return result


def run_dump(args: argparse.Namespace) -> dict:
    """Copy the source topic, as Spark's Kafka source reads it (headers included), into a Parquet file."""
    module = importlib.import_module(f"spark_jobs.{args.job}")
    spark = _session(module, args.flags, "bench-dump")
    opts = job_options(module, args.flags)
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", opts.common.bootstrap_servers)
        .option("subscribe", opts.common.source_topic)
        .option("includeHeaders", "true")
        .load()
    )
    raw.write.mode("overwrite").parquet(args.events)
    rows = spark.read.parquet(args.events).count()
    spark.stop()
    return {"kind": "dump", "input_rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice_local.bench.drain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("mode", choices=["job", "ceiling", "dump"])
    parser.add_argument("--job", required=True, choices=sorted(OUTPUT_FLAGS))
    parser.add_argument("--result", required=True, help="write the figures here (JSON)")
    parser.add_argument(
        "--warmups", type=int, default=2, help="drains (or batch runs) before the measured one"
    )
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (job mode: where output topics are made)"
    )
    parser.add_argument("--work-dir", help="checkpoints and event files go under here (job mode)")
    parser.add_argument(
        "--kind", choices=["job", "tumbling"], default="job", help="ceiling mode: what to run"
    )
    parser.add_argument("--events", help="ceiling and dump modes: the Parquet copy of the source topic")
    parser.add_argument("--expected", help="ceiling mode: write the job's expected records here (JSON lines)")
    parser.add_argument("--scratch", help="ceiling mode: where the basic job's files are written")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.flags = argv[split + 1 :]  # the job's own flags, after --
    result = {"job": run_job, "ceiling": run_ceiling, "dump": run_dump}[args.mode](args)
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
