"""The k8s tier's operator: a real process with the least-privilege identity of k8s/operator/rbac.yaml, one per
module (so a module's pipelines are reconciled by its own operator, whose log it reads)."""

from __future__ import annotations

import pytest
from kubernetes import client
from support.operator_process import operator_environment, start_operator, stop_operator


@pytest.fixture(scope="module")
def operator(control_plane, tmp_path_factory):
    """The operator process, authenticated as system:serviceaccount:sluice-system:sluice-operator."""
    work = tmp_path_factory.mktemp("operator")
    env = operator_environment(control_plane, work)
    process, metrics_port = start_operator(env, work / "operator.log")
    try:
        yield {"process": process, "log": work / "operator.log", "metrics_port": metrics_port, "env": env}
    finally:
        stop_operator(process)


@pytest.fixture
def api(k8s_api):
    return {
        "core": client.CoreV1Api(k8s_api),
        "custom": client.CustomObjectsApi(k8s_api),
    }
