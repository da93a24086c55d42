"""The benchmark's figures and report: spread and steal flags, the targets' verdicts and shortfalls."""

from __future__ import annotations

import pytest

from sluice_local.bench.report import Figure, render

pytestmark = pytest.mark.unit


def test_a_figure_flags_a_wide_spread_and_steal_and_survives_its_json_form():
    f = Figure("x ÷ y", "what", [1.0, 1.2, 0.9], steal=[0.01, 0.06])
    assert f.median == 1.0 and f.spread == pytest.approx(0.3)  # (1.2 - 0.9) / 1.0
    assert f.flags == ["spread 30%", "steal 6%"]
    assert Figure.from_dict(f.as_dict()) == f


def _results(*, load_before: float) -> dict:
    """A run's results as the report reads them, on a 2-core machine with that 1-minute load before the run."""
    return {
        "machine": {
            "cores": 2, "processor": "cpu", "load_before": [load_before], "load_after": [1.0], "steal_share": 0.01,
            "python": "3.11", "pyspark": "4.2.0", "java": "17", "kafka": "4.1.1", "confluent_kafka": "2.16.1",
            "quixstreams": "3.28.1",
        },
        "plan": {"events": 1000, "repeats": 3},
        "quick": False,
        "seconds": 60,
        "baseline_commit": "64b1be45f28f6a1af53638f95ef97d145251be43",
        "checks": [{"check": "c", "passed": True, "detail": "d"}],
        "runs": [],
        "spark_conf": {"spark.sql.session.timeZone": "UTC", "spark.jars": "x.jar"},
    }  # fmt: skip


def test_the_report_says_by_how_much_a_target_is_missed():
    figures = [
        Figure("a ÷ b", "ratio", [0.40, 0.44, 0.48], target="≥ 0.5", passed=False),
        Figure("lat p99", "latency", [36.0], unit="s", target="≤ 30 s", passed=False),
        Figure("c ÷ d", "ratio", [3.1], target="≥ 3", passed=True),
    ]
    text = render(_results(load_before=0.5), figures)
    # 0.44 is 12 % short of 0.5 (0.5 / 0.44 = 1.14); 36 s is 20 % over 30 s
    assert "- a ÷ b: 0.44 ×, target ≥ 0.5: missed, 12% short (× 1.14 needed)" in text
    assert "- lat p99: 36.0 s, target ≤ 30 s: missed, 20% over" in text
    assert "- c ÷ d: 3.10 ×, target ≥ 3: met" in text
    assert "`spark.sql.session.timeZone` = `UTC`" in text and "spark.jars" not in text
    assert "busy" not in text


def test_the_report_warns_when_the_machine_was_busy_as_the_run_started():
    figures = [Figure("c ÷ d", "ratio", [3.1], target="≥ 3", passed=True)]
    text = render(_results(load_before=2.51), figures)
    assert "The machine was busy when the run started** (load 2.51 on 2 cores)" in text
    assert "busy" not in render(_results(load_before=1.0), figures)  # half the cores: quiet enough
