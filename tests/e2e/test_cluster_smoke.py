"""Smoke test of the kind cluster itself, before any pipeline: the nodes (a control plane and two workers) are Ready
and pulled no image, DNS resolves a Service, a PVC binds through the storage provisioner, and a pod running a
project image reaches another pod through a Service."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from cluster import DEFAULT_NODE_IMAGE, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "sluice-smoke"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 185,
    "fsGroup": 185,
    "seccompProfile": {"type": "RuntimeDefault"},
}
SMALL = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

# A Service's rules reach every node's kube-proxy a moment after its endpoints change: until then a connection is
# refused. The client tries for up to a minute, as a client of a new Service would.
CLIENT = """
import json, socket, time, urllib.error, urllib.request
address = socket.getaddrinfo("web", 80, proto=socket.IPPROTO_TCP)[0][4][0]
fqdn = socket.getaddrinfo("web.{namespace}.svc.cluster.local", 80, proto=socket.IPPROTO_TCP)[0][4][0]
for attempt in range(60):
    try:
        body = urllib.request.urlopen("http://web/index.html", timeout=20).read().decode()
        break
    except urllib.error.URLError as exc:
        if not isinstance(exc.reason, ConnectionRefusedError) or attempt == 59:
            raise
        time.sleep(1)
print(json.dumps({{"address": address, "fqdn": fqdn, "body": body.strip(), "attempts": attempt + 1}}))
"""


def _pod(name: str, image: str, args: list[str], **spec) -> dict:
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",  # a pull would fail here anyway: the image must be in the node already
        "args": args,
        "securityContext": RESTRICTED,
        "resources": SMALL,
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"securityContext": POD_SECURITY, "containers": [container], **spec},
    }


@pytest.fixture(scope="module")
def smoke_namespace(kind_cluster):
    kind_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
    )
    yield NAMESPACE
    kind_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=3m", check=False)


def test_node_is_ready_and_no_image_was_pulled(kind_cluster):
    """Cluster creation and the helm install of Kafka, Spark and the operator ran on preloaded images only."""
    nodes = kind_cluster.get("nodes")["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    # k8s/kind-config-workers.yaml: a control plane and two workers
    assert names == [f"{kind_cluster.name}-{n}" for n in ("control-plane", "worker", "worker2")], names
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert ready.get("Ready") == "True", node["status"]["conditions"]
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.34."), node["status"]["nodeInfo"]
    running = kind_cluster.get("pods", "--all-namespaces")["items"]
    assert {p["metadata"]["namespace"] for p in running} >= {"kube-system", "local-path-storage", "sluice"}
    if kind_cluster.env["SLUICE_KIND_NODE_IMAGE"] == DEFAULT_NODE_IMAGE:  # kind's own node runs kindnetd
        assert kind_cluster.cni_pods() == dict.fromkeys(names, "Running, 0 restarts")
        # kind gave it the API server's own address, so it never waited for kube-proxy's Service rules
        assert f"sluice-cni: API server at {kind_cluster.name}-control-plane:6443" in kind_cluster.cni_log()
    assert kind_cluster.pull_events() == []


def test_crictl_on_the_node_lists_the_control_plane(kind_cluster):
    """The node carries crictl (kind's node contract), configured for its containerd."""
    listing = subprocess.run(
        ["docker", "exec", f"{kind_cluster.name}-control-plane", "crictl", "ps", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    running = {
        c["metadata"]["name"]
        for c in json.loads(listing.stdout)["containers"]
        if c["state"] == "CONTAINER_RUNNING"
    }
    assert {"kube-apiserver", "etcd", "coredns", "kube-proxy"} <= running, sorted(running)


def test_dns_service_pvc_and_pod_to_pod_traffic(kind_cluster, smoke_namespace):
    image = kind_cluster.images["spark-jobs"]
    token = uuid.uuid4().hex
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "web-data"},
        # No storageClassName: the cluster's default class (local-path) must provision it.
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }
    web = _pod(
        "web",
        image,
        [
            "sh",
            "-c",
            f"echo {token} > /data/index.html && exec python3 -m http.server 8080 --directory /data",
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}],
        container={
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 2},
        },
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kind_cluster.apply(claim, web, service, namespace=smoke_namespace)

    def web_ready():
        pod = kind_cluster.get("pod", "web", namespace=smoke_namespace)
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conditions.get("Ready") == "True" else None

    server = wait_for(web_ready, timeout=180, what="pod web Ready")
    pvc = kind_cluster.get("pvc", "web-data", namespace=smoke_namespace)
    assert pvc["status"]["phase"] == "Bound", pvc["status"]
    volume = kind_cluster.get("pv", pvc["spec"]["volumeName"])
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"

    client = _pod(
        "client",
        image,
        ["python3", "-c", CLIENT.format(namespace=smoke_namespace)],
        restartPolicy="Never",
    )
    kind_cluster.apply(client, namespace=smoke_namespace)

    def client_done():
        phase = kind_cluster.get("pod", "client", namespace=smoke_namespace)["status"].get("phase")
        return phase if phase in {"Succeeded", "Failed"} else None

    phase = wait_for(client_done, timeout=180, what="pod client to finish")
    logs = kind_cluster.kubectl("logs", "client", namespace=smoke_namespace).stdout
    assert phase == "Succeeded", logs
    seen = json.loads(logs.strip().splitlines()[-1])
    seen.pop("attempts")
    cluster_ip = kind_cluster.get("service", "web", namespace=smoke_namespace)["spec"]["clusterIP"]
    assert seen == {"address": cluster_ip, "fqdn": cluster_ip, "body": token}
    client_ip = kind_cluster.get("pod", "client", namespace=smoke_namespace)["status"]["podIP"]
    assert client_ip != server["status"]["podIP"]
    assert kind_cluster.pull_events() == []


def test_a_pull_is_seen_in_the_events(kind_cluster, smoke_namespace):
    """Control for the "no image-pull event" checks: a pod whose image is not in the node makes the kubelet try a
    pull, and :meth:`KindCluster.pull_events` reports it (the namespace, and its events, go after this module)."""
    control = _pod("pull-control", "sluice.invalid/no-such-image:1", ["true"], restartPolicy="Never")
    control["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    kind_cluster.apply(control, namespace=smoke_namespace)
    seen = wait_for(
        lambda: [e for e in kind_cluster.pull_events() if e.startswith(f"{smoke_namespace}/pull-control:")],
        timeout=120,
        what="an image-pull event of pod pull-control",
    )
    assert any("sluice.invalid/no-such-image:1" in e for e in seen), seen
