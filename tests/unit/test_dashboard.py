"""The Grafana dashboard of the sluice-operator chart (charts/sluice-operator/dashboards/sluice-pipelines.json):
valid JSON, its variables and panels, and only metrics that the operator or the jobs really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "sluice-operator" / "dashboards" / "sluice-pipelines.json"
METRIC_NAME = re.compile(r"\bsluice_[a-z_]+\b")


def _names(registry: CollectorRegistry) -> set[str]:
    """Each family's name and each of its samples' (``_total``, ``_bucket``, ``_count``, ``_sum``...)."""
    return {
        name for family in registry.collect() for name in (family.name, *(s.name for s in family.samples))
    }


def _operator_metrics() -> set[str]:
    from prometheus_client import REGISTRY
    from sluice_operator import metrics  # noqa: F401  (registers the operator's metrics)

    return _names(REGISTRY)


def _job_metrics() -> set[str]:
    """A job's metrics, each with one labelled child so that its samples appear."""
    from prometheus_client.metrics import MetricWrapperBase

    from spark_jobs.progress import JobMetrics

    job = JobMetrics("basic", registry=CollectorRegistry())
    for metric in vars(job).values():
        if isinstance(metric, MetricWrapperBase):
            # Every job metric is labelled `component`, the source offsets also `partition`.
            metric.labels(**{label: "basic" if label == "component" else "0" for label in metric._labelnames})
    return _names(job.registry)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    return [p for top in dashboard["panels"] for p in (top, *top.get("panels", [])) if p["type"] != "row"]


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p["targets"]]


def test_dashboard_is_a_grafana_dashboard(dashboard):
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    assert "__inputs" not in dashboard  # loaded by Grafana's sidecar as is: the data source is a variable


def test_variables_pick_data_source_namespace_and_pipeline(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "pipeline"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    queries = {name: variables[name]["query"]["query"] for name in ("namespace", "pipeline")}
    assert queries == {
        "namespace": "label_values(sluice_pipeline_phase, namespace)",
        "pipeline": 'label_values(sluice_pipeline_phase{namespace=~"$namespace"}, pipeline)',
    }
    for name in ("namespace", "pipeline"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_panel_queries_the_chosen_prometheus(dashboard):
    panels = _panels(dashboard)
    assert {p["title"] for p in panels} == {
        "Pipeline state",
        "Records behind (lag) per job",
        "Restarts",
        "Input rate",
        "Processed rate",
        "Batch duration p50/p95",
        "Watermark delay (s)",
        "Dead letters / s",
        "Reconcile duration p95",
    }
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty expr"


def test_panels_query_what_they_say(dashboard):
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in _panels(dashboard)}
    assert exprs["Records behind (lag) per job"] == [
        'sluice_pipeline_lag_records{namespace=~"$namespace",pipeline=~"$pipeline"}'
    ]
    assert exprs["Watermark delay (s)"] == [
        'time() - sluice_job_watermark_timestamp_seconds{namespace=~"$namespace",pipeline=~"$pipeline"}'
    ]
    assert exprs["Reconcile duration p95"] == [
        "histogram_quantile(0.95, sum by (le) (rate(sluice_reconcile_duration_seconds_bucket[5m])))"
    ]
    assert [e.split(",")[0] for e in exprs["Batch duration p50/p95"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
    ]


def test_every_metric_in_the_dashboard_is_exported(dashboard):
    exported = _operator_metrics() | _job_metrics()
    queries = _exprs(dashboard) + [
        v["definition"] for v in dashboard["templating"]["list"] if "definition" in v
    ]
    used = {name for q in queries for name in METRIC_NAME.findall(q)}
    assert used == {
        "sluice_pipeline_phase",
        "sluice_pipeline_condition",
        "sluice_pipeline_lag_records",
        "sluice_pipeline_restarts",
        "sluice_job_input_rows_per_second",
        "sluice_job_processed_rows_per_second",
        "sluice_job_batch_duration_seconds_bucket",
        "sluice_job_watermark_timestamp_seconds",
        "sluice_job_dead_letters_total",
        "sluice_reconcile_duration_seconds_bucket",
    }
    assert not used - exported, f"not exported by the operator nor the jobs: {sorted(used - exported)}"


def test_the_exported_sets_are_the_ones_meant():
    """A guard on the test's own collection: sample names are there, not only family names."""
    assert {
        "sluice_reconcile_errors_total",
        "sluice_reconcile_duration_seconds_bucket",
    } <= _operator_metrics()
    assert {
        "sluice_job_dead_letters_total",
        "sluice_job_batch_duration_seconds_bucket",
        "sluice_job_source_latest_offset",
    } <= _job_metrics()
