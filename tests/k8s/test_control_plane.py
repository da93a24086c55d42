"""The test control plane is the real thing: RBAC, PodSecurity, garbage collection, ServiceAccounts, kubectl.

Each test makes the component under test act and checks the outcome Kubernetes documents for it, with a control
case where one makes the outcome meaningful (what is forbidden without a binding is allowed with one; what the
restricted namespace refuses, an unlabelled namespace admits).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.control_plane import ControlPlane

pytestmark = pytest.mark.k8s

REPO_ROOT = Path(__file__).resolve().parents[2]


def eventually(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check`` until it returns True; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status of an API call: 200 if it succeeds, else the ApiException's status."""
    try:
        call()
    except ApiException as exc:
        return exc.status
    return 200


def pinned_kubernetes_version() -> str:
    """The k8s.io/kubernetes version tools/kube/go.mod pins, read here independently of the build script."""
    for line in (REPO_ROOT / "tools" / "kube" / "go.mod").read_text().splitlines():
        words = line.split()
        if words[:2] == ["require", "k8s.io/kubernetes"]:
            return words[2]
    raise AssertionError("tools/kube/go.mod does not require k8s.io/kubernetes on one line")


def pod(
    name: str, security_context: dict[str, Any] | None, pod_security_context: dict[str, Any] | None
) -> dict:
    """A one-container pod manifest with the given container and pod security contexts."""
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/sluice/none:1"}
    if security_context is not None:
        container["securityContext"] = security_context
    spec: dict[str, Any] = {"containers": [container]}
    if pod_security_context is not None:
        spec["securityContext"] = pod_security_context
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# -- RBAC --------------------------------------------------------------------------------------------------------


def test_rbac_forbids_a_service_account_until_a_role_binding_allows_it(
    control_plane: ControlPlane, k8s_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": "reader"}))
    token = control_plane.token_for_service_account(namespace, "reader")
    kubeconfig = control_plane.kubeconfig_for_token(
        token, tmp_path / "reader.kubeconfig", namespace=namespace
    )

    with control_plane.api_client(kubeconfig) as reader_api:
        review = client.AuthenticationV1Api(reader_api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        reader = client.CoreV1Api(reader_api)
        assert status_of(lambda: reader.list_namespaced_pod(namespace)) == 403

        rbac = client.RbacAuthorizationV1Api(k8s_api)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader-reads-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )
        # The RBAC authorizer reads bindings from an informer: allowed within moments, not instantly.
        eventually(
            lambda: status_of(lambda: reader.list_namespaced_pod(namespace)) == 200,
            timeout=10,
            what="the RoleBinding lets the ServiceAccount list pods",
        )
        # The Role grants what it names, where it is bound, and nothing else.
        assert status_of(lambda: reader.list_namespaced_config_map(namespace)) == 403
        assert status_of(lambda: reader.list_namespaced_pod("default")) == 403


# -- PodSecurity -------------------------------------------------------------------------------------------------

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_pod_security_restricted_rejects_a_privileged_pod_and_admits_a_compliant_one(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    privileged = pod("privileged", {"privileged": True}, None)

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message and "seccompProfile" in message and "runAsNonRoot" in message

    # Control: the same pod passes admission where no PodSecurity label is set (dry run: nothing is stored).
    core.create_namespaced_pod("default", privileged, dry_run="All")

    created = core.create_namespaced_pod(namespace, pod("compliant", RESTRICTED_CONTAINER, None))
    assert created.metadata.name == "compliant"
    # No scheduler or kubelet: the pod is stored and stays Pending, unbound.
    stored = core.read_namespaced_pod("compliant", namespace)
    assert stored.status.phase == "Pending" and stored.spec.node_name is None


# -- garbage collection ------------------------------------------------------------------------------------------


def test_garbage_collector_deletes_dependents_of_a_deleted_owner_claims_included(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "1"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    )
    # Admission gives every claim the kubernetes.io/pvc-protection finalizer; its controller must lift it.
    claim = core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "dependent-claim", "ownerReferences": [reference]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        },
    )
    assert "kubernetes.io/pvc-protection" in claim.metadata.finalizers
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    eventually(
        lambda: status_of(lambda: core.read_namespaced_config_map("dependent", namespace)) == 404,
        timeout=60,
        what="the garbage collector deletes ConfigMap 'dependent' after its owner is deleted",
    )
    eventually(
        lambda: (
            status_of(lambda: core.read_namespaced_persistent_volume_claim("dependent-claim", namespace))
            == 404
        ),
        timeout=60,
        what="the garbage collector and the PVC protection controller delete claim 'dependent-claim'",
    )
    assert status_of(lambda: core.read_namespaced_config_map("bystander", namespace)) == 200


# -- ServiceAccounts and namespaces ------------------------------------------------------------------------------


def test_a_new_namespace_gets_its_default_service_account_and_deletion_empties_it(
    k8s_api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(k8s_api)
    name = f"fresh-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        eventually(
            lambda: status_of(lambda: core.read_namespaced_service_account("default", name)) == 200,
            timeout=30,
            what=f"the ServiceAccount controller creates 'default' in namespace {name}",
        )
        eventually(
            lambda: status_of(lambda: core.read_namespaced_config_map("kube-root-ca.crt", name)) == 200,
            timeout=30,
            what=f"the root CA publisher creates ConfigMap 'kube-root-ca.crt' in namespace {name}",
        )
    finally:
        core.delete_namespace(name)
    # The namespace controller deletes what the namespace holds, then its finalizer, then the namespace.
    eventually(
        lambda: status_of(lambda: core.read_namespace(name)) == 404,
        timeout=60,
        what=f"the namespace controller finishes deleting namespace {name}",
    )


# -- kubectl and the kubeconfig ----------------------------------------------------------------------------------


def test_the_built_kubectl_talks_to_the_server_over_verified_tls(control_plane: ControlPlane) -> None:
    expected = pinned_kubernetes_version()
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == expected
    assert version["clientVersion"]["gitVersion"] == expected

    whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "admin"
    assert "system:masters" in whoami["status"]["userInfo"]["groups"]

    # The kubeconfig trusts the server's own CA; it does not skip verification.
    cluster = yaml.safe_load(control_plane.kubeconfig.read_text())["clusters"][0]["cluster"]
    assert cluster["server"] == control_plane.server and cluster["server"].startswith("https://127.0.0.1:")
    assert cluster["certificate-authority-data"] and "insecure-skip-tls-verify" not in cluster
    assert oct(control_plane.kubeconfig.stat().st_mode & 0o777) == "0o600"


def test_stop_ends_every_process_and_removes_the_state() -> None:
    plane = ControlPlane()
    try:
        plane.start()
        pids, work_dir = plane.pids, plane.work_dir
        assert sorted(pids) == ["etcd", "kube-apiserver", "kube-controller-manager"] and plane.is_running()
        assert work_dir is not None and work_dir.exists()
    finally:
        plane.stop()

    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole process group is gone, not just its leader
    assert not work_dir.exists() and not plane.is_running() and plane.pids == {}
