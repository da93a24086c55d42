"""The e2e tier's view of its kind cluster: kubectl on it, polling, and the events that tell an image pull."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIND_SCRIPT = ROOT / "scripts" / "kind.sh"
INSTALL_TIMEOUT_S = 40 * 60
DEFAULT_NODE_IMAGE = "offline"
CLUSTER_PREFIX = "sluice-e2e"
"""How the tier's clusters' names begin: scripts/pytest-lanes.sh deletes those an earlier run left before it starts."""
KEEP_CLUSTER_ENV = "SLUICE_E2E_KEEP_CLUSTER"
"""Set to 1 to keep the cluster after the session (to look at a failure) and to reuse a kept one in the next
session; `make kind-down` deletes it then."""
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
"""The label kind puts on a cluster's node containers, valued with the cluster's name."""

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float, what: str | Callable[[], str], every: float = 5.0
) -> T:
    """Poll ``condition`` until it returns a truthy value, and return it; fail naming ``what`` after ``timeout``
    (a callable: its text then, which can say what was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(every)


@dataclass(frozen=True)
class KindCluster:
    """The session's cluster: its name, the namespace Sluice is installed in, the images it runs, and the
    environment of scripts/kind.sh (KUBECONFIG, the tools' paths)."""

    name: str
    namespace: str
    env: dict[str, str]
    images: dict[str, str]

    def exists(self) -> bool:
        """Whether Docker holds a node container of a cluster of this name (running or not). The Docker engine is
        started first (scripts/ensure-docker.sh): a leftover cluster's nodes restart with it."""
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], timeout=600, check=True)
        found = subprocess.run(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label={KIND_CLUSTER_LABEL}={self.name}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return bool(found.stdout.strip())

    def script(self, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(KIND_SCRIPT), command],
            env={**self.env, **extra},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )

    def kubectl(
        self, *args: str, check: bool = True, namespace: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in ``namespace`` (default: Sluice's); fails the test on a non-zero exit when ``check``."""
        result = subprocess.run(
            [
                self.env["SLUICE_KUBECTL"],
                "--context",
                f"kind-{self.name}",
                "--namespace",
                namespace or self.namespace,
                *args,
            ],
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
        return result

    def get(self, *args: str, namespace: str | None = None) -> dict:
        """``kubectl get ... -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace).stdout)

    def apply(self, *manifests: dict, namespace: str | None = None) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            namespace=namespace,
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)}),
        )

    def cni_pods(self) -> dict[str, str]:
        """The default CNI's pods (sluice-cni on the node image built here) by node: phase and restart count, and
        after a restart how the container before it ended, with its last log lines."""
        pods = self.get("pods", "-l", "app.kubernetes.io/name=sluice-cni", namespace="kube-system")["items"]
        found = {}
        for pod in pods:
            statuses = pod["status"].get("containerStatuses", [])
            restarts = sum(c.get("restartCount", 0) for c in statuses)
            text = f"{pod['status'].get('phase')}, {restarts} restarts"
            if restarts:
                ended = [c.get("lastState", {}).get("terminated", {}) for c in statuses]
                previous = self.kubectl(
                    "logs",
                    pod["metadata"]["name"],
                    "--previous",
                    "--tail=20",
                    namespace="kube-system",
                    check=False,
                )
                text += f" (before: {ended}; its log: {previous.stdout[-2000:]!r} {previous.stderr[-500:]!r}"
                text += (
                    f"; the node's containerd and kubelet: {self.node_journal(pod['spec']['nodeName'])!r})"
                )
            found[pod["spec"]["nodeName"]] = text
        return found

    def cni_log(self) -> str:
        """Every line the default CNI's pods have logged since they started."""
        selector = "app.kubernetes.io/name=sluice-cni"
        return self.kubectl("logs", "-l", selector, "--tail=-1", "--prefix", namespace="kube-system").stdout

    def node_journal(self, node: str, lines: int = 40) -> str:
        """The last ``lines`` of containerd's and the kubelet's journal on ``node`` (a kind node container): what a
        container that ended with reason Unknown (containerd lost it) needs explained."""
        units = ("-u", "containerd", "-u", "kubelet")
        found = subprocess.run(
            ["docker", "exec", node, "journalctl", *units, "--no-pager", "-n", str(lines)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return (found.stdout + found.stderr)[-6000:]

    def diagnosis(self, log_lines: int = 30) -> str:
        """What a failed test needs to tell a slow cluster from a broken one: every pod with its phase, restarts and
        last termination (an OOMKill, a failed probe), the cluster's recent Warning events, the node's load, and the
        end of the log of each restarted container's previous run and of the Kafka broker. Never raises: it is
        called on a failure, and a cluster too broken to answer says so in the text."""
        parts = []
        try:
            listing = self.get("pods", "--all-namespaces")["items"]
            lines = []
            for pod in listing:
                meta, status = pod["metadata"], pod.get("status", {})
                for c in status.get("containerStatuses") or []:
                    last = (c.get("lastState") or {}).get("terminated") or {}
                    ended = f", last ended {last.get('reason')} (exit {last.get('exitCode')})" if last else ""
                    if meta.get("deletionTimestamp"):
                        ended += f", deleted at {meta['deletionTimestamp']} (terminating)"
                    lines.append(
                        f"{meta['namespace']}/{meta['name']} [{c['name']}]: {status.get('phase')}, "
                        f"ready {c.get('ready')}, restarts {c.get('restartCount', 0)}{ended}"
                    )
                    if c.get("restartCount", 0):
                        previous = self.kubectl(
                            "logs",
                            meta["name"],
                            "-c",
                            c["name"],
                            "--previous",
                            f"--tail={log_lines}",
                            check=False,
                            namespace=meta["namespace"],
                        )
                        parts.append(
                            f"--- previous run of {meta['name']} [{c['name']}] ---\n{previous.stdout}"
                        )
            parts.insert(0, "--- pods ---\n" + "\n".join(lines))
            warnings = [
                f"{e.get('lastTimestamp') or e.get('eventTime')} {e['involvedObject'].get('namespace')}/"
                f"{e['involvedObject'].get('name')}: {e.get('reason')}: {e.get('message', '')}"
                for e in self.get("events", "--all-namespaces", "--field-selector=type=Warning")["items"]
            ]
            parts.append("--- Warning events (last 30) ---\n" + "\n".join(sorted(warnings)[-30:]))
            kafka = self.kubectl(
                "logs",
                "-l",
                "app.kubernetes.io/component=kafka",
                f"--tail={log_lines}",
                "--prefix",
                check=False,
            )
            parts.append(f"--- Kafka broker log ---\n{kafka.stdout}{kafka.stderr}")
        except (Exception, pytest.fail.Exception) as exc:  # a diagnosis must not hide the failure it explains
            parts.append(f"(the cluster did not answer: {exc!r})")
        with open("/proc/loadavg") as load:
            parts.append(f"--- host load average: {load.read().strip()}")
        return "\n".join(parts)

    def pull_events(self) -> list[str]:
        """Every event in the cluster that says the kubelet pulled an image, tried to, or failed to."""
        return [
            f"{e['involvedObject'].get('namespace')}/{e['involvedObject'].get('name')}: {e.get('reason')}: "
            f"{e.get('message', '')}"
            for e in self.get("events", "--all-namespaces")["items"]
            if _is_pull(e)
        ]


@contextmanager
def created(cluster: KindCluster, command: str) -> Iterator[KindCluster]:
    """Run ``scripts/kind.sh command`` (``up``: the cluster with Sluice installed; ``create``: the cluster alone),
    fail on its error, and delete the cluster afterwards (unless SLUICE_E2E_KEEP_CLUSTER=1).

    A cluster of the same name that is already there was left by a session that ended before its teardown (killed,
    or a machine stopped: kind's nodes restart with the Docker daemon, with the pods of that session). Its state is
    unknown, so it is deleted first; only SLUICE_E2E_KEEP_CLUSTER=1 reuses it."""
    if os.environ.get(KEEP_CLUSTER_ENV) != "1" and cluster.exists():
        print(f"\ndeleting kind cluster {cluster.name}, left by an earlier session", file=sys.stderr)
        down = cluster.script("down")
        if down.returncode != 0:
            pytest.fail(f"could not delete the leftover kind cluster {cluster.name}:\n{down.stderr[-6000:]}")
    result = cluster.script(command)
    try:
        if result.returncode != 0:
            pytest.fail(
                f"scripts/kind.sh {command} failed (exit {result.returncode}):\n{result.stderr[-6000:]}"
            )
        yield cluster
    finally:
        if os.environ.get(KEEP_CLUSTER_ENV) == "1":
            print(
                f"\nkeeping kind cluster {cluster.name} ({KEEP_CLUSTER_ENV}=1): KUBECONFIG={cluster.env['KUBECONFIG']}; "
                f"delete it with SLUICE_KIND_CLUSTER={cluster.name} make kind-down",
                file=sys.stderr,
            )
        else:
            down = cluster.script("down")
            if down.returncode != 0:
                print(f"scripts/kind.sh down failed:\n{down.stderr}", file=sys.stderr)


def _is_pull(event: dict) -> bool:
    reason, message = event.get("reason"), event.get("message", "")
    if reason == "Pulled":  # also said of an image that was there: "... already present on machine"
        return "already present on machine" not in message
    pull_failed = re.search(r"pull(ing)? image|ErrImage|ImagePull", message, re.IGNORECASE) is not None
    return reason == "Pulling" or pull_failed


def cluster_env(name: str, *, kubeconfig: Path, **extra: str) -> dict[str, str]:
    """The environment of scripts/kind.sh for cluster ``name``: its own KUBECONFIG, the project's Python and
    kubectl, and the node image (SLUICE_KIND_NODE_IMAGE, default: the one built here)."""
    return {
        **os.environ,
        "SLUICE_KIND_CLUSTER": name,
        "SLUICE_NAMESPACE": "sluice",
        "KUBECONFIG": str(kubeconfig),
        "PYTHON": sys.executable,
        "SLUICE_KUBECTL": build_outputs("build-kube.sh", "kubectl", timeout=900)["kubectl"],
        "SLUICE_KIND_NODE_IMAGE": os.environ.get("SLUICE_KIND_NODE_IMAGE") or DEFAULT_NODE_IMAGE,
        **extra,
    }


def build_outputs(script: str, *names: str, timeout: float) -> dict[str, str]:
    """The NAME=PATH lines a build script prints (it builds on first use and is instant after)."""
    output = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout
    found = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return {name: found[name] for name in names}
