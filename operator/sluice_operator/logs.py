"""The operator's log: quiet while nothing happens.

kopf logs every handler's success at INFO ("Timer 'on_timer' succeeded.", "Handler 'on_change' succeeded.",
"Updating is processed: 1 succeeded; 0 failed."): with a timer per pipeline every few seconds that is hundreds of
lines a minute that say nothing. :class:`QuietSuccess` lowers those to DEBUG, so that at INFO a steady pipeline logs
nothing and what is left is what a person should read (failures, retries, and the operator starting and stopping);
``--verbose`` shows them again.
"""

from __future__ import annotations

import logging
import re

#: kopf's per-object logger (handlers, timers, the processing summary).
KOPF_OBJECTS = "kopf.objects"
_ROUTINE = (
    re.compile(r"^(Handler|Timer|Daemon) '.*' succeeded\.$"),
    re.compile(r"^[A-Z][a-z]+ is processed: \d+ succeeded; 0 failed\.$"),
)


def routine(message: str) -> bool:
    """Whether a kopf message only says that a handler did its work."""
    return any(p.match(message) for p in _ROUTINE)


class QuietSuccess(logging.Filter):
    """Lowers kopf's routine success messages to DEBUG (they pass only where DEBUG is wanted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and routine(record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_success() -> None:
    """Install :class:`QuietSuccess` on kopf's per-object logger (once)."""
    logger = logging.getLogger(KOPF_OBJECTS)
    if not any(isinstance(f, QuietSuccess) for f in logger.filters):
        logger.addFilter(QuietSuccess())
