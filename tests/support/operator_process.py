"""The operator as the k8s and chaos tiers run it: a real ``python -m sluice_operator`` process with its
least-privilege ServiceAccount's identity (the repository's RBAC), and the StreamingPipelines they give it.

Both tiers use the session's control plane and broker; each starts its own operator process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sluice_local.processes import free_ports

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s" / "crd" / "streamingpipelines.streaming.sluice.dev.yaml"
RBAC = ROOT / "k8s" / "operator" / "rbac.yaml"
GROUP, VERSION, PLURAL = "streaming.sluice.dev", "v1alpha1", "streamingpipelines"
COMPONENTS = ("generator", "basic", "windowed", "anomaly")


def operator_environment(control_plane, work: Path) -> dict[str, str]:
    """The CRD and the operator's RBAC applied, and the environment of an operator process that authenticates as
    system:serviceaccount:sluice-system:sluice-operator (its kubeconfig written into ``work``), reconciling every
    second with short Kafka timeouts."""
    control_plane.apply_crd(CRD)
    control_plane.kubectl("create", "namespace", "sluice-system", check=False)
    control_plane.kubectl("apply", "-f", str(RBAC))
    token = control_plane.token_for_service_account("sluice-system", "sluice-operator")
    kubeconfig = control_plane.kubeconfig_for_token(token, work / "kubeconfig")
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "SLUICE_RECONCILE_INTERVAL": "1",
        "SLUICE_KAFKA_TIMEOUT": "5",
        "SLUICE_KAFKA_RETRY_DELAY": "2",
        "SLUICE_DELETE_ATTEMPTS": "2",
        "SLUICE_DELETE_RETRY_DELAY": "1",
    }


# The metrics server says "Address already in use", the liveness server "address already in use".
_PORT_TAKEN = "address already in use"


def start_operator(env: dict[str, str], log_path: Path, *, attempts: int = 3) -> tuple[subprocess.Popen, int]:
    """Start ``python -m sluice_operator`` with free liveness and metrics ports and wait for its liveness endpoint;
    return the process and its metrics port. Ports are picked free and released before the operator binds them, so
    another process may take one meanwhile: the operator then stops at once naming the port, and it is started
    again on new ports (``attempts`` in all). Any other early stop, or no liveness within 120 s, fails with the
    operator's log."""
    for attempt in range(1, attempts + 1):
        liveness_port, metrics_port = free_ports(2)
        process = spawn_operator({**env, "SLUICE_METRICS_PORT": str(metrics_port)}, liveness_port, log_path)
        deadline = time.monotonic() + 120
        last: object = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return process, metrics_port
            except OSError as exc:
                last = exc
            time.sleep(0.3)
        text = log_path.read_text()
        if process.poll() is None:
            stop_operator(process)
            pytest.fail(
                f"no liveness from the operator after 120 s (last: {last!r}); its log:\n{text[-4000:]}"
            )
        if _PORT_TAKEN not in text.lower() or attempt == attempts:
            pytest.fail(
                f"the operator stopped with exit status {process.returncode}; its log:\n{text[-4000:]}"
            )
    raise AssertionError("unreachable")


def spawn_operator(env: dict[str, str], liveness_port: int, log_path: Path) -> subprocess.Popen:
    """``python -m sluice_operator`` with ``env``, its liveness endpoint on ``liveness_port``, its output in
    ``log_path``, in its own process group."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sluice_operator",
                "--liveness",
                f"http://127.0.0.1:{liveness_port}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_operator(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def manifest(name: str, bootstrap: str, **spec) -> dict:
    """A StreamingPipeline with unique topic names (so tests never share topics)."""
    suffix = uuid.uuid4().hex[:6]
    topics = {
        role: {"name": f"{name}-{role}-{suffix}"}
        for role in ("source", "processed", "windowed", "alerts", "deadLetter")
    }
    kafka = {"bootstrapServers": bootstrap, "topics": topics}
    kafka.update(spec.pop("kafka", {}))
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StreamingPipeline",
        "metadata": {"name": name},
        "spec": {"kafka": kafka, "restartPolicy": {"backoffSeconds": 1, "maxBackoffSeconds": 2}, **spec},
    }


def apply(control_plane, namespace: str, body: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"{body['metadata']['name']}-{uuid.uuid4().hex[:4]}.yaml"
    path.write_text(yaml.safe_dump(body))
    return control_plane.kubectl("apply", "-n", namespace, "-f", str(path), check=False)


def get_cr(api, namespace: str, name: str) -> dict:
    return api["custom"].get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def events(api, namespace: str, name: str) -> list[tuple[str, str]]:
    """The reason and message of each Event about the object ``name``."""
    found = api["core"].list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.reason, e.message) for e in found.items]


def pods(api, namespace: str, name: str) -> dict[str, client.V1Pod]:
    found = api["core"].list_namespaced_pod(namespace, label_selector=f"streaming.sluice.dev/pipeline={name}")
    return {
        p.metadata.labels["app.kubernetes.io/component"]: p
        for p in found.items
        if not p.metadata.deletion_timestamp
    }


# --- what the tests play: the kubelet and the volume binder (no kubelet runs in the k8s tier) -----------------


def wait_for(check: Callable[[], object], *, timeout: float = 60, what: str = "condition") -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, KeyError, TypeError, StopIteration, OSError, ApiException) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def set_phase(api, namespace: str, pod: str, phase: str) -> None:
    """What a kubelet would report (there is none here)."""
    api["core"].patch_namespaced_pod_status(pod, namespace, {"status": {"phase": phase}})


def absent(read: Callable[[], object]) -> bool:
    """Whether ``read()`` answers 404 (the object is gone)."""
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def condition(cr: dict, kind: str) -> dict:
    return next(c for c in cr.get("status", {}).get("conditions", []) if c["type"] == kind)


def set_running(api, namespace: str, pod: str, *, since: datetime, ready: bool = True) -> None:
    """What a kubelet reports of a pod whose container has run since ``since``; with ``ready`` False, one whose
    readiness probe has failed since then (a cluster-mode job without an executor)."""
    container = pod.rsplit("-", 1)[-1]
    started = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": started}],
        "containerStatuses": [
            {
                "name": container,
                "ready": ready,
                "restartCount": 0,
                "image": "sluice/spark-jobs:0.1.0",
                "imageID": "",
                "state": {"running": {"startedAt": started}},
            }
        ],
    }
    api["core"].patch_namespaced_pod_status(pod, namespace, {"status": status})


def run_job_pods(api, namespace: str, pipeline: str) -> None:
    """What the volume provisioner and the kubelets report once the pipeline's three job pods exist (no generator):
    its claim bound, every pod Running since now."""
    found = wait_for(
        lambda: len(pods(api, namespace, pipeline)) == 3 and pods(api, namespace, pipeline), what="pods"
    )
    api["core"].patch_namespaced_persistent_volume_claim_status(
        f"{pipeline}-checkpoints", namespace, {"status": {"phase": "Bound"}}
    )
    for pod in found.values():
        set_running(api, namespace, pod.metadata.name, since=datetime.now(UTC))
