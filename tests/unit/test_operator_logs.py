"""The operator's log stays quiet while nothing happens: kopf's routine successes drop below INFO, the rest stays."""

from __future__ import annotations

import logging

import pytest
from sluice_operator import logs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "message",
    [
        "Timer 'on_timer' succeeded.",
        "Handler 'on_change' succeeded.",
        "Updating is processed: 1 succeeded; 0 failed.",
        "Resuming is processed: 1 succeeded; 0 failed.",
    ],
)
def test_routine_successes_are_recognised(message):
    assert logs.routine(message)


@pytest.mark.parametrize(
    "message",
    [
        "Timer 'on_timer' failed with an exception. Will retry.",
        "Updating is processed: 0 succeeded; 1 failed.",
        "Handler 'on_delete' failed temporarily: deleting topics: Kafka is unreachable",
        "Signal SIGTERM is received. Operator is stopping.",
    ],
)
def test_what_a_person_should_read_is_not(message):
    assert not logs.routine(message)


def test_the_filter_keeps_routine_lines_out_of_an_info_log_and_lets_the_others_through(caplog):
    logger = logging.getLogger(logs.KOPF_OBJECTS)
    logs.quiet_success()
    logs.quiet_success()  # once is enough: installed once
    assert sum(isinstance(f, logs.QuietSuccess) for f in logger.filters) == 1
    try:
        with caplog.at_level(logging.INFO, logger=logs.KOPF_OBJECTS):
            logger.info("Timer 'on_timer' succeeded.")
            logger.info("Updating is processed: 1 succeeded; 0 failed.")
            logger.warning("Timer 'on_timer' failed temporarily: Kafka is unreachable")
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("WARNING", "Timer 'on_timer' failed temporarily: Kafka is unreachable")
        ]
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=logs.KOPF_OBJECTS):
            logger.info("Timer 'on_timer' succeeded.")
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("DEBUG", "Timer 'on_timer' succeeded.")
        ]
    finally:
        for f in [f for f in logger.filters if isinstance(f, logs.QuietSuccess)]:
            logger.removeFilter(f)
