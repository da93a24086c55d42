"""Pure builders of the pipeline's children: the checkpoint PVC, one pod per enabled component, and in kubernetes
mode what the jobs' drivers need to run executor pods.

Every builder is keyword-only, takes no client and returns plain dicts; the handlers adopt and apply them. A pod
runs its component's module (:mod:`sluice_operator.components`) with the flags :mod:`sluice_operator.commands`
builds from the spec — the programs never read the cluster — and meets PodSecurity ``restricted``. Stateful
components mount the checkpoint volume (its layout: :mod:`sluice_operator.checkpoints`).

In kubernetes mode (Spark on Kubernetes, client mode) a job's pod is its driver: it runs as the pipeline's own
ServiceAccount, bound to a Role with exactly what Spark asks the API server for (:data:`DRIVER_RULES`); its
executors reach it through a headless Service; they are created from a pod template (a ConfigMap the driver
mounts) that meets ``restricted`` too, carries the pipeline's labels and mounts the same claim at the same path.
Spark makes each executor pod owned by its driver pod, so they go when it goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sluice_operator import commands, components, progress
from sluice_operator.checkpoints import STATE_MOUNT, checkpoint_root, short_hash, state_root
from sluice_operator.components import Component
from sluice_operator.spec import GROUP, PipelineSpec

STATE_VOLUME = "state"
TMP_MOUNT = "/tmp"
#: The uid/gid of the project's Spark image (non-root).
RUN_AS_USER = 185
#: Memory a Spark driver's pod gets beyond its heap (metaspace, threads, direct buffers, the Python driver).
DRIVER_OVERHEAD_MIB = 384

#: Where a kubernetes-mode driver listens for its executors (fixed, so its Service can name them).
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
#: Where a kubernetes-mode driver finds its executors' pod template, and the executor container's name in it.
EXECUTOR_TEMPLATE_DIR = "/etc/sluice/executor"
EXECUTOR_TEMPLATE_FILE = "pod.yaml"
EXECUTOR_CONTAINER = "executor"
#: A cluster-mode job keeps this file while it has no executor (``--executors-missing-file``); its pod's readiness
#: probe fails while the file is there, so a pod without executors is Running but not Ready (and Ready before its
#: SparkContext starts, which Spark's executor allocation waits for).
EXECUTORS_MISSING_FILE = f"{TMP_MOUNT}/sluice/executors-missing"

LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_CHECKPOINT = f"{GROUP}/checkpoint-path"


def labels(*, pipeline: str, component: str) -> dict[str, str]:
    """The labels of every child: the recommended app.kubernetes.io set plus the pipeline's name."""
    return {
        "app.kubernetes.io/name": "sluice",
        "app.kubernetes.io/instance": pipeline,
        LABEL_COMPONENT: component,
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
    #: What must exist before the pod starts (kubernetes mode: :func:`driver_access`), applied when it is created.
    needs: tuple[dict, ...] = ()


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


#: The pod and container security of every pod Sluice makes (PodSecurity ``restricted``).
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
#: What a Spark process needs in its environment in every pod (the root file system is read-only).
_SPARK_ENV = (
    {"name": "TZ", "value": "UTC"},
    {"name": "HOME", "value": TMP_MOUNT},
    {"name": "PYSPARK_PYTHON", "value": "python3"},
)


def _state_volume(pipeline: str, spec: PipelineSpec) -> dict:
    return {
        "name": STATE_VOLUME,
        "persistentVolumeClaim": {"claimName": claim_name(pipeline=pipeline, spec=spec)},
    }


def _pod(*, pipeline: str, namespace: str, component: Component, spec: PipelineSpec, args: list[str]) -> dict:
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict] = [{"name": "tmp", "mountPath": TMP_MOUNT}]
    if component.stateful:
        volumes.append(_state_volume(pipeline, spec))
        mounts.append({"name": STATE_VOLUME, "mountPath": STATE_MOUNT})
    env = [*_SPARK_ENV, {"name": "SPARK_LOCAL_DIRS", "value": f"{TMP_MOUNT}/spark"}]
    ports = _ports(spec, component)
    pod: dict = {}
    probe: dict = {}
    mode = spec.spark.mode if component.spark else "local"
    if mode != "local":
        # Running, but not Ready while the job has no executor (the planner's ExecutorsUnavailable).
        args = [*args, "--executors-missing-file", EXECUTORS_MISSING_FILE]
        probe["readinessProbe"] = {
            "exec": {"command": ["test", "!", "-e", EXECUTORS_MISSING_FILE]},
            "periodSeconds": 5,
            "failureThreshold": 1,
        }
    if mode == "standalone":
        # Executors on the workers reach the driver at its pod IP.
        env.append({"name": "SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        args = [*args, "--spark-conf", "spark.driver.host=$(SPARK_DRIVER_HOST)"]
    if mode == "kubernetes":
        args = [*args, *_driver_args(pipeline=pipeline, namespace=namespace, spec=spec, job=component.name)]
        pod["serviceAccountName"] = spark_identity(pipeline)
        volumes.append(
            {
                "name": "executor-template",
                "configMap": {
                    "name": executor_templates_name(pipeline),
                    "items": [{"key": f"{component.name}.yaml", "path": EXECUTOR_TEMPLATE_FILE}],
                },
            }
        )
        mounts.append({"name": "executor-template", "mountPath": EXECUTOR_TEMPLATE_DIR, "readOnly": True})
        ports = {"ports": [*ports.get("ports", []), *DRIVER_PORTS]}
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
            **pod,
            # Only a kubernetes-mode driver talks to the API server (as the pipeline's ServiceAccount).
            "automountServiceAccountToken": mode == "kubernetes",
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,  # a job stops its queries between micro-batches on SIGTERM
            "securityContext": dict(POD_SECURITY),
            "containers": [
                {
                    "name": component.name,
                    "image": spec.spark.image,
                    "imagePullPolicy": spec.spark.image_pull_policy,
                    # No `command`: the image's entrypoint (tini in the project's image) stays PID 1, forwards
                    # SIGTERM to the program and reaps orphans.
                    "args": [*commands.command(component), *args],
                    "env": env,
                    **ports,
                    "resources": _resources(spec, component),
                    "volumeMounts": mounts,
                    **probe,
                    "securityContext": dict(CONTAINER_SECURITY),
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
    needs: tuple[dict, ...] = ()
    hashed: object = manifest["spec"]
    if spec.spark.mode == "kubernetes" and component.spark:
        jobs = [c.name for c in components.enabled(spec) if c.spark]
        needs = tuple(
            driver_access(pipeline=pipeline, namespace=namespace, spec=spec, job=component.name, jobs=jobs)
        )
        # A driver reads its executors' template when it starts: a new template needs a new driver.
        hashed = {
            "pod": manifest["spec"],
            "executors": executor_template(pipeline=pipeline, spec=spec, job=component.name),
        }
    config_hash = short_hash(hashed)
    annotations = manifest["metadata"]["annotations"]
    annotations[ANNOTATION_CONFIG_HASH] = config_hash
    if checkpoint:
        annotations[ANNOTATION_CHECKPOINT] = checkpoint
    return PodPlan(
        component=component.name,
        manifest=manifest,
        config_hash=config_hash,
        checkpoint_path=checkpoint,
        needs=needs,
    )


# --- kubernetes mode: the drivers' identity, their Services, the executors' pod template -------------------------------

#: What a driver asks the API server for, in its own namespace (Spark on Kubernetes, client mode, as configured by
#: :func:`_driver_args`): its own pod (to make it the owner of its executors) and its executor pods, created, watched,
#: deleted one by one and all at once when it stops. Nothing else and no wildcards: no Service (client mode makes
#: none: the operator makes the driver's), no ConfigMap (the executors get their settings from the driver, not from a
#: ConfigMap of Spark's), no claim (the executors mount the pipeline's through their template; Spark's own
#: on-demand claims are off).
DRIVER_RULES = (
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "delete", "deletecollection"],
    },
)
DRIVER_PORTS = (
    {"name": "driver", "containerPort": DRIVER_PORT, "protocol": "TCP"},
    {"name": "blockmanager", "containerPort": BLOCK_MANAGER_PORT, "protocol": "TCP"},
)


def spark_identity(pipeline: str) -> str:
    """The name of the pipeline's drivers' ServiceAccount, and of its Role and RoleBinding."""
    return f"{pipeline}-spark"


def driver_service_name(*, pipeline: str, job: str) -> str:
    return f"{pipeline}-{job}-driver"


def executor_templates_name(pipeline: str) -> str:
    """The ConfigMap holding each job's executor pod template (key ``<job>.yaml``)."""
    return f"{pipeline}-spark-executors"


def executor_name_prefix(*, pipeline: str, job: str) -> str:
    """What a job's executor pods are named from (``<prefix>-exec-<n>``)."""
    return f"{pipeline}-{job}"


def _driver_args(*, pipeline: str, namespace: str, spec: PipelineSpec, job: str) -> list[str]:
    """What ties a kubernetes-mode driver to its pod, its namespace, its Service and its executors' template."""
    service = driver_service_name(pipeline=pipeline, job=job)
    conf = [
        ("spark.kubernetes.namespace", namespace),
        ("spark.kubernetes.driver.pod.name", f"{pipeline}-{job}"),  # executors are owned by it
        ("spark.kubernetes.container.image", spec.spark.image),
        ("spark.kubernetes.container.image.pullPolicy", spec.spark.image_pull_policy),
        ("spark.kubernetes.executor.podTemplateFile", f"{EXECUTOR_TEMPLATE_DIR}/{EXECUTOR_TEMPLATE_FILE}"),
        ("spark.kubernetes.executor.podTemplateContainerName", EXECUTOR_CONTAINER),
        ("spark.kubernetes.executor.podNamePrefix", executor_name_prefix(pipeline=pipeline, job=job)),
        ("spark.driver.host", f"{service}.{namespace}.svc"),
        ("spark.driver.port", str(DRIVER_PORT)),
        ("spark.driver.blockManager.port", str(BLOCK_MANAGER_PORT)),
        # What would need more of the API than DRIVER_RULES grants: Spark's ConfigMap of executor settings (the
        # image has none to share) and its executor claims (the template mounts the pipeline's).
        ("spark.kubernetes.executor.disableConfigMap", "true"),
        ("spark.kubernetes.driver.ownPersistentVolumeClaim", "false"),
        ("spark.kubernetes.driver.reusePersistentVolumeClaim", "false"),
    ]
    args: list[str] = []
    for key, value in conf:
        args += ["--spark-conf", f"{key}={value}"]
    return args


def _metadata(name: str, *, pipeline: str, namespace: str, component: str) -> dict:
    """The metadata of an object the operator makes for a cluster-mode pipeline: its name, namespace and labels."""
    return {"name": name, "namespace": namespace, "labels": labels(pipeline=pipeline, component=component)}


def spark_service_account(*, pipeline: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(
            spark_identity(pipeline), pipeline=pipeline, namespace=namespace, component="spark"
        ),
        "automountServiceAccountToken": False,  # the driver pods mount it; no other pod runs as it
    }


def spark_role(*, pipeline: str, namespace: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(
            spark_identity(pipeline), pipeline=pipeline, namespace=namespace, component="spark"
        ),
        "rules": [dict(rule) for rule in DRIVER_RULES],
    }


def spark_role_binding(*, pipeline: str, namespace: str) -> dict:
    name = spark_identity(pipeline)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(name, pipeline=pipeline, namespace=namespace, component="spark"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def driver_service(*, pipeline: str, namespace: str, job: str) -> dict:
    """The headless Service executors reach a job's driver by: its pod's address, Ready or not (a driver's pod is
    not Ready while it has no executor)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            driver_service_name(pipeline=pipeline, job=job),
            pipeline=pipeline,
            namespace=namespace,
            component=job,
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_PIPELINE: pipeline, LABEL_COMPONENT: job},
            "ports": [
                {
                    "name": p["name"],
                    "port": p["containerPort"],
                    "targetPort": p["containerPort"],
                    "protocol": "TCP",
                }
                for p in DRIVER_PORTS
            ],
        },
    }


def executor_template(*, pipeline: str, spec: PipelineSpec, job: str) -> dict:
    """The pod template of a job's executors: ``restricted``, the pipeline's labels (component ``<job>-executor``),
    the checkpoint claim at the driver's path, and spread over the nodes when they can be. Spark adds the image,
    the command, the resources and its own labels."""
    component = f"{job}-executor"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": labels(pipeline=pipeline, component=component)},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": dict(POD_SECURITY),
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {
                                    "matchLabels": {LABEL_PIPELINE: pipeline, LABEL_COMPONENT: component}
                                },
                            },
                        }
                    ]
                }
            },
            "containers": [
                {
                    "name": EXECUTOR_CONTAINER,
                    "env": list(_SPARK_ENV),
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": TMP_MOUNT},
                        {"name": STATE_VOLUME, "mountPath": STATE_MOUNT},
                    ],
                    "securityContext": dict(CONTAINER_SECURITY),
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}, _state_volume(pipeline, spec)],
        },
    }


def executor_templates(*, pipeline: str, namespace: str, spec: PipelineSpec, jobs: list[str]) -> dict:
    """The ConfigMap of the jobs' executor pod templates, one key per job."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            executor_templates_name(pipeline), pipeline=pipeline, namespace=namespace, component="spark"
        ),
        "data": {
            f"{job}.yaml": json.dumps(executor_template(pipeline=pipeline, spec=spec, job=job), indent=2)
            for job in jobs
        },
    }


def driver_access(
    *, pipeline: str, namespace: str, spec: PipelineSpec, job: str, jobs: list[str]
) -> list[dict]:
    """What a kubernetes-mode job's driver needs before its pod starts, in the order to apply it: the identity and
    its permissions, the executors' templates, its Service. Empty in the other modes."""
    if spec.spark.mode != "kubernetes":
        return []
    return [
        spark_service_account(pipeline=pipeline, namespace=namespace),
        spark_role(pipeline=pipeline, namespace=namespace),
        spark_role_binding(pipeline=pipeline, namespace=namespace),
        executor_templates(pipeline=pipeline, namespace=namespace, spec=spec, jobs=jobs),
        driver_service(pipeline=pipeline, namespace=namespace, job=job),
    ]
