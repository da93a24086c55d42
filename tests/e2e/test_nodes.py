"""The offline node image on more than one node: the workers join the control plane, the default CNI (sluice-cni)
gives each node its own range of the pod subnet and routes between the nodes, and a pod on a worker reaches a pod
on the control plane by its address and by a Service name through CoreDNS, keeping its own source address.

On the tier's cluster (a control plane and two workers, tests/e2e/conftest.py), in the namespace ``default``: the test
pods run busybox as root, which Sluice's namespace (PodSecurity restricted) refuses.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess
from collections.abc import Iterator

import pytest
import yaml
from cluster import KindCluster, wait_for

pytestmark = pytest.mark.e2e

POD_SUBNET = ipaddress.ip_network("10.244.0.0/16")  # kind's default podSubnet
CNI_CONF = "/etc/cni/net.d/10-sluice-bridge.conflist"
ROUTE_PROTO = "73"  # the routes sluice-cni owns (images/kind-node/rootfs/kind/manifests/default-cni.yaml)
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
NODES = 3  # k8s/kind-config-workers.yaml


@pytest.fixture(scope="module")
def nodes_cluster(kind_cluster: KindCluster) -> Iterator[KindCluster]:
    """The tier's cluster, in the namespace ``default``; the test pods are deleted afterwards."""
    cluster = dataclasses.replace(kind_cluster, namespace="default")
    yield cluster
    cluster.kubectl("delete", "pods,services", "-l", "sluice-e2e=nodes", "--wait=false", check=False)


@pytest.fixture(scope="module")
def nodes(nodes_cluster) -> dict[str, dict]:
    """The nodes once all are Ready, by name."""

    def ready() -> dict[str, dict] | None:
        items = nodes_cluster.get("nodes")["items"]
        if len(items) != NODES or not all(_ready(n) for n in items):
            return None
        return {n["metadata"]["name"]: n for n in items}

    return wait_for(ready, timeout=300, what=f"the {NODES} nodes Ready")


def _control_plane(nodes: dict[str, dict]) -> dict:
    (node,) = [n for n in nodes.values() if _role(n) == "control-plane"]
    return node


def _a_worker(nodes: dict[str, dict]) -> dict:
    return min((n for n in nodes.values() if _role(n) == "worker"), key=lambda n: n["metadata"]["name"])


def _ready(node: dict) -> bool:
    return {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready") == "True"


def _role(node: dict) -> str:
    labels = node["metadata"]["labels"]
    return "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker"


def _address(node: dict) -> str:
    (address,) = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    return address


def _on_node(node: dict, *command: str) -> str:
    """``command`` in the node's container (kind names it after the node)."""
    return subprocess.run(
        ["docker", "exec", node["metadata"]["name"], *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_each_node_has_its_own_pod_range_and_a_route_to_each_other_node(nodes_cluster, nodes):
    ranges = {name: ipaddress.ip_network(n["spec"]["podCIDR"]) for name, n in nodes.items()}
    assert all(r.subnet_of(POD_SUBNET) for r in ranges.values()), ranges
    assert all(not a.overlaps(b) for a in ranges.values() for b in ranges.values() if a is not b), ranges
    for name, node in nodes.items():

        def configured(node=node) -> dict | None:
            try:
                return json.loads(_on_node(node, "cat", CNI_CONF))
            except subprocess.CalledProcessError:
                return None

        conf = wait_for(configured, timeout=120, what=f"{CNI_CONF} on {name}")
        (bridge,) = [p for p in conf["plugins"] if p["type"] == "bridge"]
        assert bridge["ipam"]["ranges"] == [[{"subnet": str(ranges[name])}]], (name, bridge)
        # sluice-cni reconciles every 10 s: the route to a node that just joined comes within that.
        routes = sorted(
            [str(ranges[other]), "via", _address(o)] for other, o in nodes.items() if other != name
        )
        wait_for(
            lambda node=node, routes=routes: sorted(_routes(node)) == routes,
            timeout=60,
            what=f"{name}'s routes to be exactly {routes}",
        )
    assert nodes_cluster.cni_pods() == dict.fromkeys(nodes, "Running, 0 restarts")


def _routes(node: dict) -> list[list[str]]:
    """The node's routes that sluice-cni owns: [destination, "via", gateway] each."""
    listing = _on_node(node, "ip", "-4", "route", "show", "proto", ROUTE_PROTO)
    return [line.split()[:3] for line in listing.splitlines()]


def _helper_image(cluster: KindCluster) -> str:
    """The busybox image every node holds (the storage provisioner's helper, as its configuration names it)."""
    config = cluster.get("configmap", "local-path-config", namespace="local-path-storage")
    return yaml.safe_load(config["data"]["helperPod.yaml"])["spec"]["containers"][0]["image"]


def _pod(name: str, node: dict, image: str, script: str, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name, "sluice-e2e": "nodes"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node["metadata"]["name"]},
            "tolerations": [{**CONTROL_PLANE_TAINT, "operator": "Exists"}],
            "containers": [
                {"name": name, "image": image, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}
            ],
            **spec,
        },
    }


def test_a_pod_on_a_worker_reaches_a_pod_on_the_control_plane(nodes_cluster, nodes):
    image = _helper_image(nodes_cluster)
    control_plane, worker = _control_plane(nodes), _a_worker(nodes)
    server = _pod(
        "web",
        control_plane,
        image,
        "mkdir -p /tmp/www && echo hello from web >/tmp/www/index.html && exec httpd -f -v -p 8080 -h /tmp/www",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"sluice-e2e": "nodes"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    nodes_cluster.apply(server, service)
    web = wait_for(
        lambda: (p := nodes_cluster.get("pod", "web"))["status"].get("phase") == "Running" and p,
        timeout=180,
        what="pod web Running on the control plane",
    )
    web_ip = web["status"]["podIP"]
    client = _pod(
        "client",
        worker,
        image,
        # Each URL is tried for up to a minute: the route to the other node and the Service's rules arrive
        # within seconds of the pods.
        f"hostname -i; set -e; for url in http://{web_ip}:8080/index.html http://web.default.svc.cluster.local/; do"
        " for i in $(seq 60); do wget -qO- $url && break; [ $i -lt 60 ]; sleep 1; done; done",
        restartPolicy="Never",
    )
    nodes_cluster.apply(client)
    done = wait_for(
        lambda: (
            (p := nodes_cluster.get("pod", "client"))["status"].get("phase") in ("Succeeded", "Failed") and p
        ),
        timeout=180,
        what="pod client to finish on the worker",
    )
    logs = nodes_cluster.kubectl("logs", "client").stdout.split("\n")
    assert done["status"]["phase"] == "Succeeded", logs
    client_ip = done["status"]["podIP"]
    # Its address, then the page twice (the attempts that failed, if any, said so on stderr between).
    assert logs[0] == client_ip, logs
    assert [line for line in logs if line.startswith("hello")] == ["hello from web"] * 2, logs
    assert ipaddress.ip_address(web_ip) in ipaddress.ip_network(control_plane["spec"]["podCIDR"]), web_ip
    assert ipaddress.ip_address(client_ip) in ipaddress.ip_network(worker["spec"]["podCIDR"]), client_ip
    # Pod to pod keeps the source address (masquerade only for traffic leaving the pod subnet): the server saw
    # the client's own address, for the direct request at least (through the Service it may be either).
    server_log = nodes_cluster.kubectl("logs", "web").stdout
    assert client_ip in server_log, server_log
    assert nodes_cluster.pull_events() == []
