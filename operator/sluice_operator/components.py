"""The pipeline's components, declared once: the generator and the streaming jobs, in start order.

Everything that handles "each component" loops over :data:`COMPONENTS`: the pods the operator builds
(:mod:`sluice_operator.manifests`), their command lines (:mod:`sluice_operator.commands`), the status, the local
runtime and the benchmark. A component's settings are the part of the spec at :attr:`Component.settings_path`;
the fields of that part that carry a ``flag`` in their metadata become its flags, those that carry a
``fingerprint`` key enter its state fingerprint (see :func:`sluice_operator.spec.spec_field`).

Adding a job: its settings class in the spec (a field of :class:`sluice_operator.spec.Jobs`), its module in
``spark_jobs``, and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _part(spec: Any, path: str) -> Any:
    value = spec
    for name in path.split("."):
        value = getattr(value, name)
    return value


@dataclass(frozen=True)
class TopicFlag:
    """A topic of the pipeline (its role in ``spec.kafka.topics``) and the flag that passes its name."""

    role: str
    flag: str


@dataclass(frozen=True)
class Component:
    """One program of the pipeline and what the operator needs to know to run it."""

    name: str
    #: What ``python -m`` runs.
    module: str
    #: The part of the spec with its settings (its ``enabled`` and its flags), a dotted path: ``jobs.anomaly``.
    settings_path: str
    #: Whether it runs a Spark driver (Spark's master, configuration and the driver's resources apply).
    spark: bool
    #: Whether it keeps state in a checkpoint on the pipeline's volume (and so has a state fingerprint).
    stateful: bool
    #: Topics it is connected to, passed right after the bootstrap servers.
    topics: tuple[TopicFlag, ...]
    #: Topics its results go to, passed after its own settings.
    outputs: tuple[TopicFlag, ...] = ()
    #: Whether it also writes files to the pipeline's volume (``--output-dir``, per checkpoint generation).
    writes_files: bool = False
    #: The pod's resources when they do not come from ``spec.spark.driver``.
    resources: dict | None = None
    #: Parts of the spec it takes flags from besides its own, shared with other components: ``("input",)``.
    shared_paths: tuple[str, ...] = ()

    def settings(self, spec: Any) -> Any:
        """This component's part of a :class:`~sluice_operator.spec.PipelineSpec`."""
        return _part(spec, self.settings_path)

    def parts(self, spec: Any) -> list[Any]:
        """Every part of the spec whose flagged fields are this component's flags: its own, then the shared ones."""
        return [self.settings(spec), *(_part(spec, path) for path in self.shared_paths)]

    def enabled(self, spec: Any) -> bool:
        return bool(self.settings(spec).enabled)


#: What every job reads (the events) and writes besides its results (the records it cannot parse).
_JOB_TOPICS = (TopicFlag("source", "--source-topic"), TopicFlag("dead_letter", "--dead-letter-topic"))
#: What every job takes besides its own settings: the bounds of a valid event, the port of its metrics.
_JOB_SHARED = ("input", "monitoring")

COMPONENTS: tuple[Component, ...] = (
    Component(
        name="generator",
        module="spark_jobs.generator",
        settings_path="generator",
        spark=False,
        stateful=False,
        topics=(TopicFlag("source", "--topic"),),
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
    ),
    Component(
        name="basic",
        module="spark_jobs.basic",
        settings_path="jobs.basic",
        spark=True,
        stateful=True,
        topics=_JOB_TOPICS,
        outputs=(TopicFlag("processed", "--processed-topic"),),
        writes_files=True,
        shared_paths=_JOB_SHARED,
    ),
    Component(
        name="windowed",
        module="spark_jobs.windowed",
        settings_path="jobs.windowed",
        spark=True,
        stateful=True,
        topics=_JOB_TOPICS,
        outputs=(TopicFlag("windowed", "--windowed-topic"),),
        shared_paths=_JOB_SHARED,
    ),
    Component(
        name="anomaly",
        module="spark_jobs.anomaly",
        settings_path="jobs.anomaly",
        spark=True,
        stateful=True,
        topics=_JOB_TOPICS,
        outputs=(TopicFlag("alerts", "--alerts-topic"),),
        shared_paths=_JOB_SHARED,
    ),
)

#: The streaming jobs: the components with a checkpoint.
JOBS: tuple[Component, ...] = tuple(c for c in COMPONENTS if c.stateful)

BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}


def get(name: str) -> Component:
    """The component called ``name``; an unknown name raises, listing the components."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; the components are {', '.join(BY_NAME)}") from None


def names(components: tuple[Component, ...] = COMPONENTS) -> tuple[str, ...]:
    return tuple(c.name for c in components)


def enabled(spec: Any) -> list[Component]:
    """The components the spec turns on, in start order."""
    return [c for c in COMPONENTS if c.enabled(spec)]
