"""The benchmark's figures from its runs, and ``report.md``: every figure with its minimum, median and maximum over
the repeats, flagged when its spread is over 15 % or a run it came from saw over 5 % CPU steal."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

SPREAD_LIMIT = 0.15
STEAL_LIMIT = 0.05


@dataclass
class Figure:
    """One figure over the repeats (a ratio, or an absolute value with its unit)."""

    name: str
    what: str
    values: list[float]
    unit: str = "×"
    steal: list[float] = field(default_factory=list)
    target: str | None = None
    passed: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> float:
        if len(self.values) < 2 or not self.median:
            return 0.0
        return (max(self.values) - min(self.values)) / abs(self.median)

    @property
    def flags(self) -> list[str]:
        flags = []
        if self.spread > SPREAD_LIMIT:
            flags.append(f"spread {self.spread:.0%}")
        if self.steal and max(self.steal) > STEAL_LIMIT:
            flags.append(f"steal {max(self.steal):.0%}")
        return flags

    @classmethod
    def from_dict(cls, data: dict) -> Figure:
        """The figure :meth:`as_dict` wrote (its derived keys dropped)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def as_dict(self) -> dict:
        data = asdict(self)
        values = self.values or [float("nan")]
        data.update(
            min=min(values), median=self.median, max=max(values), spread=self.spread, flags=self.flags
        )
        return data


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "—"
    if unit == "×":
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | what it compares | min | median | max | unit | target | flags |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for f in figures:
        values = f.values or [float("nan")]
        verdict = "" if f.target is None else f"{f.target}: {'met' if f.passed else 'missed'}"
        lines.append(
            f"| {f.name} | {f.what} | {_number(min(values), f.unit)} | {_number(f.median, f.unit)} | "
            f"{_number(max(values), f.unit)} | {f.unit} | {verdict} | {', '.join(f.flags)} |"
        )
    return "\n".join(lines)


def render(results: dict, figures: list[Figure]) -> str:
    m, plan = results["machine"], results["plan"]
    quick = (
        " (quick mode: no warm-up round, the JVMs with the first compiler only; no figure here is a timing to "
        "compare)"
        if results["quick"]
        else ""
    )
    lines = [
        "# Sluice benchmark",
        "",
        f"Data set: {plan['events']:,} events (1 % malformed), {plan['repeats']} measured round(s) after a warm-up "
        f"round{quick}; each figure's min / median / max over the rounds. Took {results['seconds'] / 60:.1f} min.",
        "",
        f"Machine: {m['cores']} cores ({m['processor']}); load {m['load_before'][0]:.2f} before, "
        f"{m['load_after'][0]:.2f} after; CPU steal {m['steal_share']:.1%} over the run. Python {m['python']}, "
        f"pyspark {m['pyspark']}, {m['java']}, {m['kafka']}, confluent-kafka {m['confluent_kafka']}, Quix Streams "
        f"{m['quixstreams']}. Baseline: the jobs of commit {results['baseline_commit'][:12]}.",
        "",
        *_busy(m),
        table(figures),
        "",
        *_targets(figures),
        *_steps(results),
        "## Checks of the outputs the figures come from",
        "",
        *[f"- {'ok' if c['passed'] else 'FAILED'}: {c['check']} ({c['detail']})" for c in results["checks"]],
        "",
        "## Effective Spark settings of the jobs",
        "",
        *[f"- `{k}` = `{v}`" for k, v in _settings(results["spark_conf"]).items()],
        "",
    ]
    return "\n".join(lines)


#: Settings of the run, not of the jobs (paths, ports, ids).
_RUN_SETTINGS = ("spark.driver.host", "spark.driver.port", "spark.executor.id", "spark.sql.warehouse.dir")


def _settings(conf: dict) -> dict:
    """The Spark settings worth reading: without the jar lists and the run's own, and the JVM options without
    the module openings every Spark JVM gets."""
    shown = {}
    for key, value in conf.items():
        if key.startswith(("spark.jars", "spark.repl.local.jars")) or key in _RUN_SETTINGS:
            continue
        if key.endswith("extraJavaOptions"):
            shown[key] = " ".join(t for t in value.split() if not t.startswith(("--add-", "-Djava.net.")))
        else:
            shown[key] = value
    return shown


#: A 1-minute load average above this share of the cores when the run starts means something else was running.
BUSY_LOAD_SHARE = 0.5


def _busy(m: dict) -> list[str]:
    """A warning when the machine was busy as the run started: every figure shares its cores with that work."""
    if m["load_before"][0] <= BUSY_LOAD_SHARE * m["cores"]:
        return []
    return [
        f"**The machine was busy when the run started** (load {m['load_before'][0]:.2f} on {m['cores']} cores): "
        "the figures shared the cores with other work; compare them with a run on a quiet machine.",
        "",
    ]


def _targets(figures: Sequence[Figure]) -> list[str]:
    """Each target with its median and, when missed, by how much."""
    lines = ["## Targets", ""]
    for f in figures:
        if f.target is None:
            continue
        goal = float(f.target.split()[1])
        if f.passed:
            lines.append(f"- {f.name}: {_number(f.median, f.unit)} {f.unit}, target {f.target}: met")
        elif f.target.startswith("≥"):
            short = 1 - f.median / goal
            lines.append(
                f"- {f.name}: {_number(f.median, f.unit)} {f.unit}, target {f.target}: missed, {short:.0%} short "
                f"(× {goal / f.median:.2f} needed)"
            )
        else:
            lines.append(
                f"- {f.name}: {_number(f.median, f.unit)} {f.unit}, target {f.target}: missed, "
                f"{f.median / goal - 1:.0%} over"
            )
    return [
        *lines,
        "",
        "README.md (Performance) says why each missed target is missed and what would close it.",
        "",
    ]


def _steps(results: dict) -> list[str]:
    """Where the time of each job's drain goes: seconds per step (Spark's phases, then the job's own, inside
    ``spark.addBatch``), the median over the measured rounds."""
    first = 0 if results["quick"] else 1
    runs = [r for r in results["runs"] if r["label"] == "sluice" and r["round"] >= first and r.get("steps")]
    jobs = sorted({r["job"] for r in runs})
    if not jobs:
        return []
    by_job = {job: [r["steps"] for r in runs if r["job"] == job] for job in jobs}
    names = sorted({name for steps in by_job.values() for one in steps for name in one})
    lines = [
        "## Where the jobs' time goes",
        "",
        "Seconds per step of draining the data set (median over the rounds); `spark.*` are Spark's phases of the",
        "micro-batches, the others the job's own steps inside `spark.addBatch` (spark_jobs/micro_batch.py).",
        "",
        f"| step | {' | '.join(jobs)} |",
        f"| --- |{' ---: |' * len(jobs)}",
    ]
    for name in names:
        cells = []
        for job in jobs:
            values = [one[name] for one in by_job[job] if name in one]
            cells.append(f"{statistics.median(values):.2f}" if values else "—")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return [*lines, ""]
