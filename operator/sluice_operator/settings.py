"""Operator-wide settings, all from environment variables, read once at start-up.

Each setting's docstring says what it does; a bad value stops the operator with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use."""


@dataclass(frozen=True)
class Settings:
    watch_namespace: str = ""
    """SLUICE_WATCH_NAMESPACE: the one namespace to watch; empty watches every namespace."""
    reconcile_interval: float = 10.0
    """SLUICE_RECONCILE_INTERVAL: seconds between two reconciliations of a pipeline (pod states, restarts)."""
    kafka_timeout: float = 15.0
    """SLUICE_KAFKA_TIMEOUT: seconds a Kafka admin call may take before Kafka counts as unreachable."""
    kafka_retry_delay: float = 15.0
    """SLUICE_KAFKA_RETRY_DELAY: first delay before retrying when Kafka is unreachable (doubles, max 5 min)."""
    delete_attempts: int = 5
    """SLUICE_DELETE_ATTEMPTS: tries at deleting a pipeline's topics before letting the pipeline go anyway."""
    delete_retry_delay: float = 5.0
    """SLUICE_DELETE_RETRY_DELAY: seconds between those tries."""
    metrics_port: int = 9090
    """SLUICE_METRICS_PORT: port of the Prometheus /metrics endpoint; 0 turns it off."""
    namespace: str = "sluice-system"
    """SLUICE_NAMESPACE: the operator's own namespace, where it keeps which pipeline owns which topic (the chart sets
    it to the release's namespace)."""


_ENV = {
    "watch_namespace": "SLUICE_WATCH_NAMESPACE",
    "reconcile_interval": "SLUICE_RECONCILE_INTERVAL",
    "kafka_timeout": "SLUICE_KAFKA_TIMEOUT",
    "kafka_retry_delay": "SLUICE_KAFKA_RETRY_DELAY",
    "delete_attempts": "SLUICE_DELETE_ATTEMPTS",
    "delete_retry_delay": "SLUICE_DELETE_RETRY_DELAY",
    "metrics_port": "SLUICE_METRICS_PORT",
    "namespace": "SLUICE_NAMESPACE",
}


def _number(name: str, text: str, kind: type, low: float) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(
            f"{name}={text!r} is not a {'whole number' if kind is int else 'number'}"
        ) from None
    if value < low:
        raise SettingsError(f"{name}={text!r} must be at least {low}")
    return value


def from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read :class:`Settings` from ``environ`` (unset variables keep their defaults)."""
    values: dict = {}
    for attr, name in _ENV.items():
        text = environ.get(name)
        if text is None or text == "":
            continue
        if attr in {"watch_namespace", "namespace"}:
            values[attr] = text
        elif attr in {"delete_attempts", "metrics_port"}:
            values[attr] = int(_number(name, text, int, 0 if attr == "metrics_port" else 1))
        else:
            values[attr] = float(_number(name, text, float, 0.1))
    return Settings(**values)
