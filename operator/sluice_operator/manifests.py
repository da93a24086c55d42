"""Pure builders of the pipeline's children: the checkpoint PVC and one pod per enabled component.

Every builder is keyword-only, takes no client and returns plain dicts; the handlers adopt and apply them. Pods run
``python -m spark_jobs.<job>`` (or the generator) with flags built from the spec — the jobs never read the cluster —
and meet PodSecurity ``restricted``. Checkpoint layout on the volume (mounted at :data:`STATE_MOUNT`)::

    [<namespace>/<name>/]checkpoints/<job>/g<generation>/<job>/    the job's query: offsets, commits, windows/
    [<namespace>/<name>/]output/g<generation>/events/              the basic job's event files

(the bracketed prefix on a shared claim, see :func:`state_root`).

A job whose state becomes incompatible with a spec change (its windows or its source) moves to the next generation;
the old directory stays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sluice_operator.spec import GROUP, DriverResources, PipelineSpec

COMPONENTS = ("generator", "basic", "windowed", "anomaly")
JOBS = ("basic", "windowed", "anomaly")

STATE_MOUNT = "/var/lib/sluice"
STATE_VOLUME = "state"
TMP_MOUNT = "/tmp"
#: The uid/gid of the project's Spark image (non-root).
RUN_AS_USER = 185

LABEL_PIPELINE = f"{GROUP}/pipeline"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_CHECKPOINT = f"{GROUP}/checkpoint-path"


def labels(*, pipeline: str, component: str) -> dict[str, str]:
    """The labels of every child: the recommended app.kubernetes.io set plus the pipeline's name."""
    return {
        "app.kubernetes.io/name": "sluice",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "sluice",
        "app.kubernetes.io/managed-by": "sluice-operator",
        LABEL_PIPELINE: pipeline,
    }


def selector(*, pipeline: str) -> str:
    """Label selector of all of a pipeline's children."""
    return f"{LABEL_PIPELINE}={pipeline}"


def claim_name(*, pipeline: str, spec: PipelineSpec) -> str:
    """The PVC holding the checkpoints: the spec's existing claim, or ``<pipeline>-checkpoints``."""
    return spec.checkpoints.existing_claim or f"{pipeline}-checkpoints"


def checkpoint_pvc(*, pipeline: str, namespace: str, spec: PipelineSpec) -> dict | None:
    """The checkpoint PVC to create, or None when the spec names an existing claim."""
    c = spec.checkpoints
    if c.existing_claim:
        return None
    pvc_spec: dict = {"accessModes": list(c.access_modes), "resources": {"requests": {"storage": c.size}}}
    if c.storage_class_name:
        pvc_spec["storageClassName"] = c.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(pipeline=pipeline, spec=spec),
            "namespace": namespace,
            "labels": labels(pipeline=pipeline, component="checkpoints"),
        },
        "spec": pvc_spec,
    }


# --- what a job's state depends on -------------------------------------------------------------------------------


#: The jobs' checkpoint layout. 2: one streaming query per job with its window snapshots (Sluice 0.2); the
#: layout before it (one query per output) had no number. Part of every state fingerprint.
CHECKPOINT_LAYOUT = 2


def state_fingerprint(*, spec: PipelineSpec, job: str) -> str:
    """``l<layout>-<hash>``: the jobs' checkpoint layout and a short hash of the settings a job's checkpointed state
    depends on, its source topic and its windows.

    When it changes, the state on the volume cannot be reused (the job refuses window state of other windows, or
    would resume offsets of another topic, or cannot read the layout), so the job starts on a fresh checkpoint
    generation. Thresholds, watermarks, triggers, output modes and resources do not enter it: the job resumes
    from its checkpoint.
    """
    j = getattr(spec.jobs, job)
    shape: dict = {"source": spec.kafka.topics.source.name}
    if job == "basic":
        shape.update(window=j.window, slide=j.slide)
    elif job == "windowed":
        shape.update(
            tumbling=j.tumbling_window,
            sliding=j.sliding_window,
            slide=j.sliding_slide,
            status=j.status_window,
        )
    else:
        shape.update(window=j.window, slide=j.slide)
    return f"l{CHECKPOINT_LAYOUT}-{_short_hash(shape)}"


def layout_changed(old_fingerprint: str) -> bool:
    """Whether a job's earlier fingerprint was taken under another checkpoint layout than today's."""
    return not old_fingerprint.startswith(f"l{CHECKPOINT_LAYOUT}-")


def checkpoint_reset_message(*, job: str, earlier_fingerprint: str | None, old_checkpoint: str) -> str:
    """What the operator tells the user when ``job`` moves to a fresh checkpoint generation, and why."""
    why = (
        "Sluice's checkpoint layout changed (one streaming query per job since Sluice 0.2)"
        if earlier_fingerprint and layout_changed(earlier_fingerprint)
        else "its windows or source changed"
    )
    return (
        f"{job}: {why}, so its state cannot be reused; it starts on a fresh checkpoint from the earliest offsets "
        f"(the old one stays at {old_checkpoint})"
    )


def state_root(*, spec: PipelineSpec, namespace: str, pipeline: str) -> str:
    """The pipeline's directory on its volume, inside the pod.

    A volume of its own is the pipeline's whole: the mount point. On a shared claim (standalone mode) the pipeline
    uses ``<namespace>/<name>/`` of it, in the path rather than as a mount sub-path, so that the Spark workers,
    which mount the whole claim at the same mount point, write the executors' state stores to the same files.
    """
    if spec.checkpoints.existing_claim:
        return f"{STATE_MOUNT}/{namespace}/{pipeline}"
    return STATE_MOUNT


def checkpoint_root(*, root: str, job: str, generation: int) -> str:
    """Where a job keeps its checkpoints, inside the pod (``root`` from :func:`state_root`)."""
    return f"{root}/checkpoints/{job}/g{generation}"


def _short_hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


# --- command lines ---------------------------------------------------------------------------------------------------


def _memory_mib(spark_memory: str) -> int:
    number, unit = (
        (spark_memory[:-1], spark_memory[-1]) if spark_memory[-1].isalpha() else (spark_memory, "m")
    )
    return int(int(number) * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[unit])


def _spark_conf(spec: PipelineSpec) -> list[tuple[str, str]]:
    s = spec.spark
    conf = [("spark.driver.memory", s.driver.memory)]
    if s.mode == "standalone":
        conf += [
            ("spark.executor.memory", s.executor.memory),
            ("spark.executor.cores", str(s.executor.cores)),
            # Executors on the workers reach the driver at its pod IP (SPARK_DRIVER_HOST, from the downward API).
            ("spark.driver.bindAddress", "0.0.0.0"),
        ]
    conf += sorted(s.conf.items())
    return conf


def job_args(*, spec: PipelineSpec, job: str, generation: int, root: str = STATE_MOUNT) -> list[str]:
    """The flags of ``python -m spark_jobs.<job>`` for this spec (see the job modules for each flag)."""
    t = spec.kafka.topics
    j = getattr(spec.jobs, job)
    master = f"local[{spec.spark.driver.cores}]" if spec.spark.mode == "local" else spec.spark.master
    args = [
        "--bootstrap-servers", spec.kafka.bootstrap_servers,
        "--source-topic", t.source.name,
        "--dead-letter-topic", t.dead_letter.name,
        "--checkpoint-root", checkpoint_root(root=root, job=job, generation=generation),
        "--trigger", j.trigger,
        "--output-mode", j.output_mode,
        "--master", master,
        "--shuffle-partitions", str(max(2, spec.spark.driver.cores if spec.spark.mode == "local" else 4)),
    ]  # fmt: skip
    if j.max_offsets_per_trigger is not None:
        args += ["--max-offsets-per-trigger", str(j.max_offsets_per_trigger)]
    for key, value in _spark_conf(spec):
        args += ["--spark-conf", f"{key}={value}"]
    if job == "basic":
        args += [
            "--window", j.window, "--slide", j.slide, "--watermark", j.watermark,
            "--processed-topic", t.processed.name,
            # Per generation: Spark's file sink log counts batches, and a fresh checkpoint counts from 0 again.
            "--output-dir", f"{root}/output/g{generation}",
            "--file-format", j.file_format,
        ]  # fmt: skip
    elif job == "windowed":
        args += [
            "--tumbling-window", j.tumbling_window,
            "--sliding-window", j.sliding_window, "--sliding-slide", j.sliding_slide,
            "--status-window", j.status_window,
            "--watermark", j.watermark,
            "--windowed-topic", t.windowed.name,
        ]  # fmt: skip
    else:
        args += [
            "--window", j.window, "--slide", j.slide, "--watermark", j.watermark,
            "--threshold", repr(j.threshold), "--stddev-floor", repr(j.stddev_floor),
            "--alerts-topic", t.alerts.name,
        ]  # fmt: skip
    return args


def generator_args(*, spec: PipelineSpec) -> list[str]:
    """The flags of ``python -m spark_jobs.generator`` for this spec (runs until the pod is stopped)."""
    g = spec.generator
    args = [
        "--bootstrap-servers", spec.kafka.bootstrap_servers,
        "--topic", spec.kafka.topics.source.name,
        "--devices", str(g.devices),
        "--rate", repr(g.rate),
        "--anomaly-probability", repr(g.anomaly_probability),
        "--malformed-fraction", repr(g.malformed_fraction),
        "--late-fraction", repr(g.late_fraction),
    ]  # fmt: skip
    if g.seed is not None:
        args += ["--seed", str(g.seed)]
    return args


# --- pods ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodPlan:
    """A component's desired pod and the facts the handlers compare against the running one."""

    component: str
    manifest: dict
    config_hash: str
    checkpoint_path: str | None


def _resources(res: DriverResources, *, overhead_mib: int) -> dict:
    memory = f"{_memory_mib(res.memory) + overhead_mib}Mi"
    cpu = res.cpu_request or str(res.cores)
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def _pod(
    *,
    pipeline: str,
    namespace: str,
    component: str,
    spec: PipelineSpec,
    command: list[str],
    args: list[str],
    resources: dict,
    mount_state: bool,
) -> dict:
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict] = [{"name": "tmp", "mountPath": TMP_MOUNT}]
    if mount_state:
        volumes.append(
            {
                "name": STATE_VOLUME,
                "persistentVolumeClaim": {"claimName": claim_name(pipeline=pipeline, spec=spec)},
            }
        )
        mounts.append({"name": STATE_VOLUME, "mountPath": STATE_MOUNT})
    env = [
        {"name": "TZ", "value": "UTC"},
        {"name": "HOME", "value": TMP_MOUNT},
        {"name": "PYSPARK_PYTHON", "value": "python3"},
        {"name": "SPARK_LOCAL_DIRS", "value": f"{TMP_MOUNT}/spark"},
    ]
    if spec.spark.mode == "standalone" and component in JOBS:
        env.append({"name": "SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        args = [*args, "--spark-conf", "spark.driver.host=$(SPARK_DRIVER_HOST)"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{pipeline}-{component}",
            "namespace": namespace,
            "labels": labels(pipeline=pipeline, component=component),
            "annotations": {},
        },
        "spec": {
            # The operator restarts failed pods itself, with backoff and a limit (spec.restartPolicy).
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,  # a job stops its queries between micro-batches on SIGTERM
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": component,
                    "image": spec.spark.image,
                    "imagePullPolicy": spec.spark.image_pull_policy,
                    # No `command`: the image's entrypoint (tini in the project's image) stays PID 1, forwards
                    # SIGTERM to the program and reaps orphans.
                    "args": [*command, *args],
                    "env": env,
                    "resources": resources,
                    "volumeMounts": mounts,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": volumes,
        },
    }


def pod_plan(
    *, pipeline: str, namespace: str, spec: PipelineSpec, component: str, generation: int = 0
) -> PodPlan:
    """The desired pod of one component; ``generation`` is the job's checkpoint generation."""
    if component == "generator":
        manifest = _pod(
            pipeline=pipeline,
            namespace=namespace,
            component=component,
            spec=spec,
            command=["python3", "-m", "spark_jobs.generator"],
            args=generator_args(spec=spec),
            resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            mount_state=False,
        )
        checkpoint = None
    elif component in JOBS:
        root = state_root(spec=spec, namespace=namespace, pipeline=pipeline)
        manifest = _pod(
            pipeline=pipeline,
            namespace=namespace,
            component=component,
            spec=spec,
            command=["python3", "-m", f"spark_jobs.{component}"],
            args=job_args(spec=spec, job=component, generation=generation, root=root),
            resources=_resources(spec.spark.driver, overhead_mib=384),
            mount_state=True,
        )
        checkpoint = checkpoint_root(root=root, job=component, generation=generation)
    else:
        raise ValueError(f"unknown component {component!r}; the components are {', '.join(COMPONENTS)}")
    config_hash = _short_hash(manifest["spec"])
    annotations = manifest["metadata"]["annotations"]
    annotations[ANNOTATION_CONFIG_HASH] = config_hash
    if checkpoint:
        annotations[ANNOTATION_CHECKPOINT] = checkpoint
    return PodPlan(
        component=component, manifest=manifest, config_hash=config_hash, checkpoint_path=checkpoint
    )


def enabled_components(spec: PipelineSpec) -> list[str]:
    """The components the spec turns on, in start order."""
    on = [
        spec.generator.enabled,
        spec.jobs.basic.enabled,
        spec.jobs.windowed.enabled,
        spec.jobs.anomaly.enabled,
    ]
    return [c for c, enabled in zip(COMPONENTS, on, strict=True) if enabled]
