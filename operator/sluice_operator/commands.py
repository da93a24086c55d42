"""A component's command line, built from the spec (pure): what its pod runs and what the local runtime runs.

The flags come from the component's declaration (:mod:`sluice_operator.components`: its topics, whether it runs
Spark and keeps a checkpoint) and from the fields of its spec part that name a ``flag``, in field order within
their ``flag_group``. The groups keep the order of Sluice 0.2's command lines, so that the pods of a running
pipeline stay byte-identical (their config hash) across operator upgrades:

    --bootstrap-servers, the component's topics, --checkpoint-root     (where it reads, where its state is, and
    --previous-checkpoint-root                                          where a fresh checkpoint starts from)
    group "query"                                                      (trigger, output mode)
    --master, --shuffle-partitions                                     (Spark components)
    group "source", --dead-letter-max-bytes                            (what a micro-batch reads and accepts)
    --consumer-group                                                   (where a job reports its progress)
    --spark-conf KEY=VALUE...                                          (Spark components)
    group "settings"                                                   (the component's own: windows, rates...)
    its output topics, --output-dir, group "output"                    (where and how its results go)
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sluice_operator.checkpoints import STATE_MOUNT, checkpoint_root, output_dir
from sluice_operator.components import Component, TopicFlag
from sluice_operator.spec import PipelineSpec


def flag_value(value: Any) -> str:
    """A spec value as a flag's argument: numbers as Python writes them (``2.5``, ``200.0``), strings as they are."""
    return repr(value) if isinstance(value, float) else str(value)


def _field_flags(parts: list[Any], group: str) -> list[str]:
    args: list[str] = []
    for settings in parts:
        for f in fields(settings):
            flag = f.metadata.get("flag")
            value = getattr(settings, f.name)
            if not flag or f.metadata["flag_group"] != group or value is None:
                continue
            if isinstance(value, bool):  # a --x / --no-x switch
                args.append(flag if value else "--no-" + flag.removeprefix("--"))
            else:
                args += [flag, flag_value(value)]
    return args


#: Kafka's default ``max.message.bytes`` is a little above this; the producer's ``max.request.size`` is this.
_PRODUCER_MAX_REQUEST_BYTES = 1_048_576


def dead_letter_max_bytes(spec: PipelineSpec) -> int:
    """The largest record the dead-letter topic takes: its ``max.message.bytes`` when the spec sets it, capped by
    what the jobs' producer sends (1 MiB); a dead letter that would be larger is cut to fit."""
    configured = spec.kafka.topics.dead_letter.config.get("max.message.bytes")
    if configured is None or not configured.strip().isdigit():
        return _PRODUCER_MAX_REQUEST_BYTES
    return min(int(configured), _PRODUCER_MAX_REQUEST_BYTES)


def _topic_flags(spec: PipelineSpec, topics: tuple[TopicFlag, ...]) -> list[str]:
    args: list[str] = []
    for topic in topics:
        args += [topic.flag, getattr(spec.kafka.topics, topic.role).name]
    return args


#: The master of kubernetes mode: the API server of the cluster the driver's pod runs in.
KUBERNETES_MASTER = "k8s://https://kubernetes.default.svc"


def master(spec: PipelineSpec) -> str:
    """The Spark master of the jobs: the driver's cores in local mode, the cluster's master otherwise."""
    s = spec.spark
    return {"local": f"local[{s.driver.cores}]", "kubernetes": KUBERNETES_MASTER}.get(s.mode, s.master)


def executor_cores(spec: PipelineSpec) -> int:
    """The most cores a job's executors hold at once: its driver's in local mode; in the cluster modes, ``cores``
    times ``instances`` (``maxExecutors`` under dynamic allocation)."""
    s = spec.spark
    if s.mode == "local":
        return s.driver.cores
    e = s.executor
    return e.cores * (e.dynamic_allocation.max_executors if e.dynamic_allocation.enabled else e.instances)


def shuffle_partitions(spec: PipelineSpec) -> int:
    """Partitions of a job's shuffles and state stores: one per core it runs on, at least 2 (4 in the cluster
    modes, where executors come and go). A checkpoint keeps the number it started with."""
    return max(2 if spec.spark.mode == "local" else 4, executor_cores(spec))


def _executor_conf(spec: PipelineSpec) -> list[tuple[str, str]]:
    """The executors' sizing in the cluster modes: how many, how big; standalone caps a job's share of the
    cluster's cores (spark.cores.max), kubernetes asks for that many pods."""
    s = spec.spark
    e = s.executor
    conf = [("spark.executor.memory", e.memory), ("spark.executor.cores", str(e.cores))]
    if s.mode == "standalone":
        conf.append(("spark.cores.max", str(executor_cores(spec))))
    else:
        conf.append(("spark.executor.instances", str(e.instances)))
        if e.memory_overhead:
            conf.append(("spark.executor.memoryOverhead", e.memory_overhead))
        if e.cpu_request:
            conf.append(("spark.kubernetes.executor.request.cores", e.cpu_request))
    dynamic = e.dynamic_allocation
    if dynamic.enabled:
        conf += [
            ("spark.dynamicAllocation.enabled", "true"),
            ("spark.dynamicAllocation.initialExecutors", str(e.instances)),
            ("spark.dynamicAllocation.minExecutors", str(dynamic.min_executors)),
            ("spark.dynamicAllocation.maxExecutors", str(dynamic.max_executors)),
            ("spark.dynamicAllocation.shuffleTracking.enabled", str(dynamic.shuffle_tracking).lower()),
        ]
    return conf


def spark_conf(spec: PipelineSpec) -> list[tuple[str, str]]:
    """The Spark settings of every job: the driver's memory, the executors' in the cluster modes, then the
    spec's. (What ties a kubernetes-mode driver to its pod, namespace and Service: :mod:`sluice_operator.manifests`.)"""
    s = spec.spark
    conf = [("spark.driver.memory", s.driver.memory)]
    if s.mode != "local":
        conf += _executor_conf(spec)
        # Executors reach the driver at its address (manifests: the pod IP, or its Service), whatever it binds.
        conf.append(("spark.driver.bindAddress", "0.0.0.0"))
    conf += sorted(s.conf.items())
    return conf


def arguments(
    *,
    spec: PipelineSpec,
    component: Component,
    generation: int = 0,
    root: str = STATE_MOUNT,
    consumer_group: str | None = None,
) -> list[str]:
    """The flags of ``python -m <component.module>`` for this spec; ``root`` is the pipeline's state directory
    (:func:`sluice_operator.checkpoints.state_root`), ``generation`` the job's checkpoint generation and
    ``consumer_group`` the group a job reports its progress to (None: the job's own default)."""
    settings = component.parts(spec)
    args = ["--bootstrap-servers", spec.kafka.bootstrap_servers, *_topic_flags(spec, component.topics)]
    if component.stateful:
        args += ["--checkpoint-root", checkpoint_root(root=root, job=component.name, generation=generation)]
        if generation > 0 and spec.checkpoints.on_reset == "Resume":
            previous = checkpoint_root(root=root, job=component.name, generation=generation - 1)
            args += ["--previous-checkpoint-root", previous]
    args += _field_flags(settings, "query")
    if component.spark:
        args += ["--master", master(spec), "--shuffle-partitions", str(shuffle_partitions(spec))]
    args += _field_flags(settings, "source")
    if any(topic.role == "dead_letter" for topic in component.topics):
        args += ["--dead-letter-max-bytes", str(dead_letter_max_bytes(spec))]
    if consumer_group is not None and component.stateful:
        args += ["--consumer-group", consumer_group]
    if component.spark:
        for key, value in spark_conf(spec):
            args += ["--spark-conf", f"{key}={value}"]
    args += _field_flags(settings, "settings")
    args += _topic_flags(spec, component.outputs)
    if component.writes_files:
        args += ["--output-dir", output_dir(root=root, generation=generation)]
    args += _field_flags(settings, "output")
    return args


def command(component: Component) -> list[str]:
    """What runs the component in its pod (the image's Python); the local runtime uses its own interpreter."""
    return ["python3", "-m", component.module]
