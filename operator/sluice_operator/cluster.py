"""The few Kubernetes API calls the operator makes (pods and PVCs of one pipeline, what a kubernetes-mode driver
needs, its registry of topic owners), over the official client."""

from __future__ import annotations

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sluice_operator.manifests import LABEL_COMPONENT, LABEL_PIPELINE

#: The label Spark puts on the pods it creates: ``executor``.
SPARK_ROLE = "spark-role"
#: Who the operator's server-side applies are made by.
FIELD_MANAGER = "sluice-operator"

_loaded = False


def core() -> client.CoreV1Api:
    """A CoreV1Api; the configuration is loaded once (in-cluster, else the kubeconfig)."""
    global _loaded  # noqa: PLW0603 — one configuration per process
    if not _loaded:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        _loaded = True
    return client.CoreV1Api()


def pipeline_pods(namespace: str, pipeline: str) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The pipeline's pods by component label, and the executor pods Spark made for its jobs (kubernetes mode),
    by job."""
    pods = core().list_namespaced_pod(namespace, label_selector=f"{LABEL_PIPELINE}={pipeline}")
    ours: dict[str, dict] = {}
    executors: dict[str, list[dict]] = {}
    for pod in pods.items:
        labels = pod.metadata.labels or {}
        component = labels.get(LABEL_COMPONENT)
        if not component:
            continue
        found = client.ApiClient().sanitize_for_serialization(pod)
        if labels.get(SPARK_ROLE) == "executor":
            executors.setdefault(component.removesuffix("-executor"), []).append(found)
        else:
            ours[component] = found
    return ours, executors


def rbac() -> client.RbacAuthorizationV1Api:
    core()  # loads the configuration
    return client.RbacAuthorizationV1Api()


#: How each kind the operator applies is patched.
_APPLY = {
    "ServiceAccount": (core, "patch_namespaced_service_account"),
    "Service": (core, "patch_namespaced_service"),
    "ConfigMap": (core, "patch_namespaced_config_map"),
    "Role": (rbac, "patch_namespaced_role"),
    "RoleBinding": (rbac, "patch_namespaced_role_binding"),
}


def apply(manifest: dict) -> None:
    """Create ``manifest``'s object, or bring the one there to it (server-side apply; the fields it does not name
    are left as others set them)."""
    api, method = _APPLY[manifest["kind"]]
    meta = manifest["metadata"]
    getattr(api(), method)(
        meta["name"],
        meta["namespace"],
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def create_pod(manifest: dict) -> None:
    """Create a pod; one that already exists is left alone (the next pass looks at it)."""
    try:
        core().create_namespaced_pod(manifest["metadata"]["namespace"], manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_pod(namespace: str, name: str) -> None:
    """Delete a pod (gone already is fine)."""
    try:
        core().delete_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def read_pvc(namespace: str, name: str) -> dict | None:
    """A PVC as a dict, or None if absent."""
    try:
        pvc = core().read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return client.ApiClient().sanitize_for_serialization(pvc)


def create_pvc(manifest: dict) -> None:
    """Create a PVC; one that already exists is kept as it is (a volume's data outlives spec changes)."""
    try:
        core().create_namespaced_persistent_volume_claim(manifest["metadata"]["namespace"], manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise


def set_pvc_owners(namespace: str, name: str, owners: list[dict]) -> None:
    """Replace a PVC's ownerReferences (an empty list orphans it, so garbage collection keeps it)."""
    patch = [{"op": "replace", "path": "/metadata/ownerReferences", "value": owners}]
    try:
        core().patch_namespaced_persistent_volume_claim(name, namespace, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise


class Conflict(Exception):  # noqa: N818 -- a state, as the API server names it
    """Someone else changed the object since it was read: read it again and retry."""


def read_config_map(namespace: str, name: str) -> tuple[dict[str, str], str | None]:
    """A ConfigMap's data and resourceVersion; empty data and None when it does not exist."""
    try:
        found = core().read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return {}, None
        raise
    return dict(found.data or {}), found.metadata.resource_version


def write_config_map(namespace: str, name: str, data: dict[str, str], resource_version: str | None) -> None:
    """Write a ConfigMap's data if it is still at ``resource_version`` (None: if it does not exist yet); raise
    :class:`Conflict` otherwise."""
    body = {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
        "data": data,
    }
    try:
        if resource_version is None:
            core().create_namespaced_config_map(namespace, body)
        else:
            core().replace_namespaced_config_map(name, namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(f"ConfigMap {namespace}/{name} changed while it was being written") from exc
        raise
