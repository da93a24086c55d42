"""The operator's per-pipeline metrics follow what each pass writes to the status, and go with the pipeline."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sluice_operator import metrics

pytestmark = pytest.mark.unit


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _status(phase: str, lag: dict[str, int | None], *, ready: str, restarts: int = 0) -> dict:
    return {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": ready}, {"type": "Stalled", "status": "False"}],
        "components": {
            "generator": {"restarts": 0, "progress": None},
            **{
                job: {"restarts": restarts, "progress": None if n is None else {"lagRecords": n}}
                for job, n in lag.items()
            },
        },
    }


def test_a_pipelines_series_follow_its_status_and_disappear_with_it():
    ns, name = "metrics-test", "p1"
    metrics.observe(ns, name, _status("Running", {"basic": 0, "windowed": 120}, ready="True"))
    assert value("sluice_pipeline_phase", namespace=ns, pipeline=name, phase="Running") == 1
    assert value("sluice_pipeline_condition", namespace=ns, pipeline=name, condition="Ready") == 1
    assert value("sluice_pipeline_condition", namespace=ns, pipeline=name, condition="Stalled") == 0
    assert value("sluice_pipeline_lag_records", namespace=ns, pipeline=name, component="windowed") == 120
    running_before = value("sluice_pipelines", phase="Running")

    # the next pass: Degraded, windowed's progress not read, a restart
    metrics.observe(ns, name, _status("Degraded", {"basic": 5, "windowed": None}, ready="False", restarts=1))
    assert value("sluice_pipeline_phase", namespace=ns, pipeline=name, phase="Running") is None
    assert value("sluice_pipeline_phase", namespace=ns, pipeline=name, phase="Degraded") == 1
    assert value("sluice_pipeline_lag_records", namespace=ns, pipeline=name, component="windowed") is None
    assert value("sluice_pipeline_lag_records", namespace=ns, pipeline=name, component="basic") == 5
    assert value("sluice_pipeline_restarts", namespace=ns, pipeline=name, component="basic") == 1
    assert value("sluice_pipelines", phase="Running") == running_before - 1

    # a pass that wrote only the phase (Kafka unreachable) leaves the rest as it was
    metrics.observe(ns, name, {"phase": "Degraded"})
    assert value("sluice_pipeline_lag_records", namespace=ns, pipeline=name, component="basic") == 5

    degraded = value("sluice_pipelines", phase="Degraded")
    metrics.forget(ns, name)
    for metric, label in (
        ("sluice_pipeline_phase", {"phase": "Degraded"}),
        ("sluice_pipeline_condition", {"condition": "Ready"}),
        ("sluice_pipeline_lag_records", {"component": "basic"}),
        ("sluice_pipeline_restarts", {"component": "generator"}),
    ):
        assert value(metric, namespace=ns, pipeline=name, **label) is None, metric
    assert value("sluice_pipelines", phase="Degraded") == degraded - 1


def test_a_reconciliation_is_counted_and_timed_and_its_error_counted():
    count = value("sluice_reconcile_duration_seconds_count") or 0
    errors = value("sluice_reconcile_errors_total") or 0
    with metrics.reconciling():
        pass
    with pytest.raises(RuntimeError), metrics.reconciling():
        raise RuntimeError("boom")
    assert value("sluice_reconcile_duration_seconds_count") == count + 2
    assert value("sluice_reconcile_errors_total") == errors + 1


def test_a_pass_that_ends_after_its_pipeline_was_deleted_records_nothing():
    ns, name = "metrics-test", "p2"
    metrics.observe(ns, name, {"phase": "Running"}, uid="u-1")
    metrics.forget(ns, name, uid="u-1")
    metrics.observe(ns, name, {"phase": "Running"}, uid="u-1")  # a timer's pass, under way during the delete
    assert value("sluice_pipeline_phase", namespace=ns, pipeline=name, phase="Running") is None
    metrics.observe(ns, name, {"phase": "Pending"}, uid="u-2")  # a new pipeline of the same name
    assert value("sluice_pipeline_phase", namespace=ns, pipeline=name, phase="Pending") == 1
    metrics.forget(ns, name, uid="u-2")
