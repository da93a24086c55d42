"""Prometheus metrics of the operator: its reconciliations (count, errors, duration) and, per pipeline, its phase,
conditions, each job's lag and each component's restarts, read from the status each pass writes.

A pipeline's series exist while the pipeline does: :func:`forget` removes every one of them when it is deleted, and
``sluice_pipelines`` (pipelines per phase) stops counting it.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("sluice_reconciles_total", "Reconciliations of StreamingPipelines.")
ERRORS = Counter("sluice_reconcile_errors_total", "Reconciliations that raised an error (they are retried).")
DURATION = Histogram(
    "sluice_reconcile_duration_seconds",
    "Time one reconciliation of a pipeline took (reading Kafka and the cluster, acting, writing the status).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PIPELINES = Gauge("sluice_pipelines", "StreamingPipelines by phase.", ["phase"])
PHASE = Gauge(
    "sluice_pipeline_phase", "1 for the phase each pipeline is in.", ["namespace", "pipeline", "phase"]
)
CONDITION = Gauge(
    "sluice_pipeline_condition",
    "1 when a pipeline's condition (Ready, Progressing, Stalled, Lagging...) is True, 0 when False or Unknown.",
    ["namespace", "pipeline", "condition"],
)
LAG = Gauge(
    "sluice_pipeline_lag_records",
    "Records of the source topic a job has not processed yet (status.components.<job>.progress.lagRecords).",
    ["namespace", "pipeline", "component"],
)
RESTARTS = Gauge(
    "sluice_pipeline_restarts",
    "Times the operator recreated a component's pod within the restart window (status.components.<c>.restarts).",
    ["namespace", "pipeline", "component"],
)
_PER_PIPELINE = (PHASE, CONDITION, LAG, RESTARTS)

#: Pipelines deleted (by uid): a pass that was under way when its pipeline was deleted records nothing after it.
_gone: collections.OrderedDict[str, None] = collections.OrderedDict()
_GONE_KEPT = 10_000
_phases: dict[tuple[str, str], str] = {}
#: The label values each pipeline has set, per gauge: what :func:`forget` removes.
_series: dict[tuple[str, str], dict[Gauge, set[tuple[str, ...]]]] = {}
_guard = threading.Lock()
_served: list[int] = []


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0: not at all); once per process."""
    if port and not _served:
        start_http_server(port)
        _served.append(port)


@contextlib.contextmanager
def reconciling() -> Iterator[None]:
    """Count one reconciliation and time it, and count an error if it raises."""
    RECONCILES.inc()
    started = time.monotonic()
    try:
        yield
    except Exception:
        ERRORS.inc()
        raise
    finally:
        DURATION.observe(time.monotonic() - started)


def observe(namespace: str, name: str, status: Mapping, *, uid: str = "") -> None:
    """Record what a pass wrote to a pipeline's status (a pass that did not write a part leaves its series);
    nothing for a pipeline already deleted (``uid``)."""
    key = (namespace, name)
    with _guard:
        if uid and uid in _gone:
            return
        series = _series.setdefault(key, {})
        phase = status.get("phase")
        if phase:
            _phases[key] = phase
            _replace(series, PHASE, {(namespace, name, phase): 1.0})
            _count_phases()
        conditions = status.get("conditions")
        if conditions is not None:
            values = {
                (namespace, name, c["type"]): 1.0 if c.get("status") == "True" else 0.0 for c in conditions
            }
            _replace(series, CONDITION, values)
        components = status.get("components")
        if components is not None:
            lags = {
                (namespace, name, job): float(progress["lagRecords"])
                for job, entry in components.items()
                if (progress := (entry or {}).get("progress")) and progress.get("lagRecords") is not None
            }
            _replace(series, LAG, lags)
            restarts = {
                (namespace, name, component): float((entry or {}).get("restarts") or 0)
                for component, entry in components.items()
            }
            _replace(series, RESTARTS, restarts)


def forget(namespace: str, name: str, *, uid: str = "") -> None:
    """A pipeline is gone: remove its series and stop counting it."""
    key = (namespace, name)
    with _guard:
        if uid:
            _gone[uid] = None
            while len(_gone) > _GONE_KEPT:
                _gone.popitem(last=False)
        _phases.pop(key, None)
        for gauge, labels in _series.pop(key, {}).items():
            for values in labels:
                gauge.remove(*values)
        _count_phases()


def _replace(
    series: dict[Gauge, set[tuple[str, ...]]], gauge: Gauge, values: Mapping[tuple[str, ...], float]
) -> None:
    """Set ``gauge``'s series of one pipeline to ``values``, removing those it had and has no more."""
    for gone in series.get(gauge, set()) - set(values):
        gauge.remove(*gone)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    series[gauge] = set(values)


def _count_phases() -> None:
    counts: dict[str, int] = {}
    for p in _phases.values():
        counts[p] = counts.get(p, 0) + 1
    for p in {*counts, *(s.labels["phase"] for m in PIPELINES.collect() for s in m.samples)}:
        PIPELINES.labels(phase=p).set(counts.get(p, 0))
