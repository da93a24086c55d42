"""k8s-tier fixtures: a fresh restricted namespace per test (the control plane itself is in tests/conftest.py)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sluice_local.control_plane import ControlPlane

RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
"""PodSecurity labels of every test namespace: pods must meet the "restricted" standard, as in production."""

DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S = 30.0


def _namespace_name(test_name: str) -> str:
    """A DNS-1123 label from a test's name plus a random suffix, so reruns and parametrizations never clash."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:48].rstrip("-") or "test"
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(
    control_plane: ControlPlane, k8s_api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A new namespace that enforces PodSecurity "restricted", with its ``default`` ServiceAccount present.

    Pods are only admitted once that ServiceAccount exists, so the fixture waits for the controller to make it.
    The namespace is deleted afterwards without waiting for the namespace controller to empty it.
    """
    core = client.CoreV1Api(k8s_api)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED_LABELS))
    )
    try:
        deadline = time.monotonic() + DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                break
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ServiceAccount default not created in namespace {name} within "
                    f"{DEFAULT_SERVICE_ACCOUNT_TIMEOUT_S:.0f} s; see kube-controller-manager.log in "
                    f"{control_plane.log_dir}"
                )
            time.sleep(0.1)
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
