"""The chaos tier's report: what each chaos test did (kills, restarts, records compared), printed after the run.

The counts are what the issue asks the suite to report; they come from what the tests observed (the checkpoint's
offset and commit logs at each kill, the records read back), never from a setting.
"""

from __future__ import annotations

import pytest

_REPORT: list[str] = []


@pytest.fixture
def chaos_report():
    """Append one line per fact to the session's chaos report (printed in pytest's terminal summary)."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("chaos report")
        for line in _REPORT:
            terminalreporter.write_line(line)
