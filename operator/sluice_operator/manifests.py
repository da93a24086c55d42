"""Pure builders of the pipeline's children: the checkpoint PVC and one pod per enabled component.

Every builder is keyword-only, takes no client and returns plain dicts; the handlers adopt and apply them. A pod
runs its component's module (:mod:`sluice_operator.components`) with the flags :mod:`sluice_operator.commands`
builds from the spec — the programs never read the cluster — and meets PodSecurity ``restricted``. Stateful
components mount the checkpoint volume (its layout: :mod:`sluice_operator.checkpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice_operator import commands, progress
from sluice_operator.checkpoints import STATE_MOUNT, checkpoint_root, short_hash, state_root
from sluice_operator.components import Component
from sluice_operator.spec import GROUP, PipelineSpec

STATE_VOLUME = "state"
TMP_MOUNT = "/tmp"
#: The uid/gid of the project's Spark image (non-root).
RUN_AS_USER = 185
#: Memory a Spark driver's pod gets beyond its heap (metaspace, threads, direct buffers, the Python driver).
DRIVER_OVERHEAD_MIB = 384

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


# --- pods ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodPlan:
    """A component's desired pod and the facts the handlers compare against the running one."""

    component: str
    manifest: dict
    config_hash: str
    checkpoint_path: str | None


def _memory_mib(spark_memory: str) -> int:
    number, unit = (
        (spark_memory[:-1], spark_memory[-1]) if spark_memory[-1].isalpha() else (spark_memory, "m")
    )
    return int(int(number) * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[unit])


def _resources(spec: PipelineSpec, component: Component) -> dict:
    """The component's own resources, or a Spark driver's: its heap plus :data:`DRIVER_OVERHEAD_MIB`, and
    ``cores`` CPUs unless a CPU request is given."""
    if component.resources is not None:
        return component.resources
    driver = spec.spark.driver
    memory = f"{_memory_mib(driver.memory) + DRIVER_OVERHEAD_MIB}Mi"
    cpu = driver.cpu_request or str(driver.cores)
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def _ports(spec: PipelineSpec, component: Component) -> dict:
    """A job's metrics port, declared (named ``metrics``) for a PodMonitor to find; none when it serves none."""
    port = spec.monitoring.metrics_port
    if not port or "monitoring" not in component.shared_paths:
        return {}
    return {"ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]}


def _pod(*, pipeline: str, namespace: str, component: Component, spec: PipelineSpec, args: list[str]) -> dict:
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict] = [{"name": "tmp", "mountPath": TMP_MOUNT}]
    if component.stateful:
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
    if spec.spark.mode == "standalone" and component.spark:
        env.append({"name": "SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        args = [*args, "--spark-conf", "spark.driver.host=$(SPARK_DRIVER_HOST)"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{pipeline}-{component.name}",
            "namespace": namespace,
            "labels": labels(pipeline=pipeline, component=component.name),
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
                    "name": component.name,
                    "image": spec.spark.image,
                    "imagePullPolicy": spec.spark.image_pull_policy,
                    # No `command`: the image's entrypoint (tini in the project's image) stays PID 1, forwards
                    # SIGTERM to the program and reaps orphans.
                    "args": [*commands.command(component), *args],
                    "env": env,
                    **_ports(spec, component),
                    "resources": _resources(spec, component),
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
    *, pipeline: str, namespace: str, spec: PipelineSpec, component: Component, generation: int = 0
) -> PodPlan:
    """The desired pod of one component; ``generation`` is the job's checkpoint generation."""
    root = state_root(spec=spec, namespace=namespace, pipeline=pipeline)
    manifest = _pod(
        pipeline=pipeline,
        namespace=namespace,
        component=component,
        spec=spec,
        args=commands.arguments(
            spec=spec,
            component=component,
            generation=generation,
            root=root,
            consumer_group=progress.consumer_group(
                namespace=namespace, pipeline=pipeline, job=component.name
            ),
        ),
    )
    checkpoint = (
        checkpoint_root(root=root, job=component.name, generation=generation) if component.stateful else None
    )
    config_hash = short_hash(manifest["spec"])
    annotations = manifest["metadata"]["annotations"]
    annotations[ANNOTATION_CONFIG_HASH] = config_hash
    if checkpoint:
        annotations[ANNOTATION_CHECKPOINT] = checkpoint
    return PodPlan(
        component=component.name, manifest=manifest, config_hash=config_hash, checkpoint_path=checkpoint
    )
