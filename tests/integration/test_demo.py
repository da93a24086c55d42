"""The README's first command, end to end: ``python -m sluice_local demo`` with a short duration.

The demo starts its own broker and job processes; this test checks its exit code, that its summary agrees with
what the generator produced, that the event files hold every valid event (read back independently with Spark),
and that no process is left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.demo

JOBS = ("basic", "windowed", "anomaly")


def processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


@pytest.mark.timeout(900)
def test_demo_runs_and_its_summary_matches_what_was_produced(tmp_path, spark):
    work = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice_local",
            "demo",
            "--duration",
            "25",
            "--rate",
            "100",
            "--seed",
            "11",
            "--malformed-fraction",
            "0.02",
            "--trigger",
            "3s",
            "--work-dir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Sluice demo summary" in result.stdout
    # the jobs' console output is shown, prefixed by job
    assert "basic    | " in result.stdout and "windowed | " in result.stdout

    summary = json.loads((work / "summary.json").read_text())
    produced, malformed = summary["events_produced"], summary["malformed_produced"]
    assert 2000 <= produced <= 2500 + 1  # 25 s at 100/s, less what startup pacing allows
    assert summary["events_delivered"] == produced
    assert malformed > 0 and summary["valid_events"] == produced - malformed
    # every malformed record reached the dead letters once per job, and nothing else did
    assert summary["dead_letters_by_job"] == dict.fromkeys(JOBS, malformed)
    assert sum(summary["dead_letters_by_code"].values()) == 3 * malformed
    windows = summary["windows"]
    assert windows["basic/device_windows"] > 0
    assert windows["windowed/tumbling"] > 0 and windows["windowed/sliding"] > 0

    # the file sink holds every valid event exactly once: read the files back independently
    events = spark.read.parquet(summary["outputs"]["event_files"])
    assert events.count() == summary["valid_events"]
    assert summary["event_files"] > 0

    assert processes_mentioning(str(work)) == []
