"""Prometheus metrics of the operator: reconciliations, their errors, and pipelines by phase."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, start_http_server

RECONCILES = Counter("sluice_reconciles_total", "Reconciliations of StreamingPipelines.")
ERRORS = Counter("sluice_reconcile_errors_total", "Reconciliations that raised an error (they are retried).")
PIPELINES = Gauge("sluice_pipelines", "StreamingPipelines by phase.", ["phase"])

_phases: dict[tuple[str, str], str] = {}
_guard = threading.Lock()
_served: list[int] = []


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0: not at all); once per process."""
    if port and not _served:
        start_http_server(port)
        _served.append(port)


@contextlib.contextmanager
def reconciling() -> Iterator[None]:
    """Count one reconciliation, and an error if it raises."""
    RECONCILES.inc()
    try:
        yield
    except Exception:
        ERRORS.inc()
        raise


def observe_phase(namespace: str, name: str, phase: str) -> None:
    """Record a pipeline's phase; the gauge counts pipelines per phase."""
    with _guard:
        _phases[(namespace, name)] = phase
        counts: dict[str, int] = {}
        for p in _phases.values():
            counts[p] = counts.get(p, 0) + 1
        for p in {*counts, *(s.labels["phase"] for s in _samples())}:
            PIPELINES.labels(phase=p).set(counts.get(p, 0))


def forget(namespace: str, name: str) -> None:
    """A pipeline is gone: stop counting it."""
    with _guard:
        _phases.pop((namespace, name), None)


def _samples():
    return [s for metric in PIPELINES.collect() for s in metric.samples]
