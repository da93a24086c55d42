"""Pipelines whose executors run outside their drivers' pods (``spark.mode`` standalone and kubernetes), as the
operator sets them up on a real API server (RBAC, PodSecurity restricted, garbage collection), and what it says when
a job has no executor. No kubelet runs here, so no executor starts: the cluster tier runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes import client
from sluice_operator.spec import GROUP, PLURAL, VERSION
from support.operator_process import (
    ROOT,
    absent,
    apply,
    condition,
    events,
    get_cr,
    manifest,
    pods,
    set_running,
    wait_for,
)

pytestmark = pytest.mark.k8s

JOBS = ("basic", "windowed", "anomaly")
PIPELINE_LABEL = "streaming.sluice.dev/pipeline"
COMPONENT_LABEL = "app.kubernetes.io/component"


def shared_claim(api, namespace: str, name: str) -> None:
    """The ReadWriteMany claim a cluster-mode pipeline names (checkpoints.existingClaim), bound."""
    api["core"].create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    api["core"].patch_namespaced_persistent_volume_claim_status(
        name, namespace, {"status": {"phase": "Bound"}}
    )


def allowed(k8s_api, namespace: str, user: str, verb: str, resource: str) -> bool:
    """Whether the API server's authorizer lets ``user`` (a ServiceAccount) ``verb`` ``resource`` in ``namespace``."""
    sa_namespace = user.split(":")[2]
    review = client.AuthorizationV1Api(k8s_api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{sa_namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource},
            },
        }
    )
    return bool(review.status.allowed)


def owned_by(obj, uid: str) -> bool:
    return [(r.kind, r.uid) for r in obj.metadata.owner_references or []] == [("StreamingPipeline", uid)]


@pytest.mark.timeout(360)
def test_a_kubernetes_mode_pipeline_gives_its_drivers_an_identity_a_service_and_their_executors_template(
    control_plane, operator, api, namespace, kafka_broker, tmp_path, k8s_api
):
    core, rbac = api["core"], client.RbacAuthorizationV1Api(k8s_api)
    sample = yaml.safe_load((ROOT / "k8s" / "samples" / "kubernetes.yaml").read_text())["spec"]
    shared_claim(api, namespace, sample["checkpoints"]["existingClaim"])
    body = manifest(
        "scaled",
        kafka_broker.bootstrap_servers,
        spark=sample["spark"],
        checkpoints=sample["checkpoints"],
        generator={"enabled": False},
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    drivers = wait_for(
        lambda: len(pods(api, namespace, "scaled")) == 3 and pods(api, namespace, "scaled"), what="drivers"
    )
    uid = get_cr(api, namespace, "scaled")["metadata"]["uid"]

    # one identity for the pipeline's drivers, allowed exactly what a client-mode driver asks for: its pods
    identity = "scaled-spark"
    account = core.read_namespaced_service_account(identity, namespace)
    role = rbac.read_namespaced_role(identity, namespace)
    binding = rbac.read_namespaced_role_binding(identity, namespace)
    assert all(owned_by(o, uid) for o in (account, role, binding))
    assert [(r.api_groups, r.resources, sorted(r.verbs)) for r in role.rules] == [
        ([""], ["pods"], ["create", "delete", "deletecollection", "get", "list", "watch"])
    ]
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", identity)
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", identity, namespace)
    ]
    user = f"system:serviceaccount:{namespace}:{identity}"
    for verb in ("get", "list", "watch", "create", "delete", "deletecollection"):
        assert allowed(k8s_api, namespace, user, verb, "pods"), verb
    for verb, resource in (
        ("create", "services"),
        ("create", "configmaps"),
        ("get", "secrets"),
        ("patch", "pods"),
    ):
        assert not allowed(k8s_api, namespace, user, verb, resource), (verb, resource)
    assert not allowed(k8s_api, "default", user, "create", "pods")  # only in its own namespace

    templates = core.read_namespaced_config_map("scaled-spark-executors", namespace)
    assert owned_by(templates, uid)
    for job in JOBS:
        driver = drivers[job]
        assert (driver.spec.service_account_name, driver.spec.automount_service_account_token) == (
            identity,
            True,
        )
        # executors reach each driver through a headless Service that selects it, Ready or not
        service = core.read_namespaced_service(f"scaled-{job}-driver", namespace)
        assert owned_by(service, uid)
        assert (service.spec.cluster_ip, service.spec.publish_not_ready_addresses) == ("None", True)
        assert service.spec.selector == {PIPELINE_LABEL: "scaled", COMPONENT_LABEL: job}
        assert all(driver.metadata.labels[k] == v for k, v in service.spec.selector.items())
        assert sorted(p.port for p in service.spec.ports) == [7078, 7079]
        # an executor made from the template, as Spark fills it in, is admitted under PodSecurity restricted
        template = yaml.safe_load(templates.data[f"{job}.yaml"])
        (container,) = template["spec"]["containers"]
        container.update(
            image="sluice/spark-jobs:0.1.0",
            args=["executor"],
            resources={"requests": {"cpu": "250m", "memory": "1408Mi"}, "limits": {"memory": "1408Mi"}},
        )
        template["metadata"].update(name=f"scaled-{job}-exec-1", namespace=namespace)
        template["metadata"]["labels"].update({"spark-role": "executor", "spark-exec-id": "1"})
        core.create_namespaced_pod(namespace, template, dry_run="All")
        assert template["metadata"]["labels"][PIPELINE_LABEL] == "scaled"
        assert template["metadata"]["labels"][COMPONENT_LABEL] == f"{job}-executor"
        claim = next(v for v in template["spec"]["volumes"] if v["name"] == "state")
        assert claim["persistentVolumeClaim"]["claimName"] == sample["checkpoints"]["existingClaim"]

    # deleting the pipeline takes its drivers, their Services and their identity with it
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "scaled")
    reads = {
        "ServiceAccount": lambda: core.read_namespaced_service_account(identity, namespace),
        "Role": lambda: rbac.read_namespaced_role(identity, namespace),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding(identity, namespace),
        "ConfigMap": lambda: core.read_namespaced_config_map("scaled-spark-executors", namespace),
        **{
            f"Service scaled-{job}-driver": lambda job=job: core.read_namespaced_service(
                f"scaled-{job}-driver", namespace
            )
            for job in JOBS
        },
    }
    left: list[str] = []

    def gone() -> bool:
        left[:] = [
            *pods(api, namespace, "scaled"),
            *(kind for kind, read in reads.items() if not absent(read)),
        ]
        return not left

    # the garbage collector removes the owned objects; on a loaded machine it took over a minute (CI)
    try:
        wait_for(gone, timeout=180, what="everything of the pipeline gone")
    except pytest.fail.Exception:
        pytest.fail(f"still there 180 s after the pipeline was deleted: {left}")


@pytest.mark.timeout(180)
def test_a_job_without_an_executor_makes_the_pipeline_executors_unavailable_until_one_comes(
    control_plane, operator, api, namespace, kafka_broker, tmp_path
):
    shared_claim(api, namespace, "spark-shared")
    body = manifest(
        "starved",
        kafka_broker.bootstrap_servers,
        generator={"enabled": False},
        spark={"mode": "standalone", "executorWaitSeconds": 30},
        checkpoints={"existingClaim": "spark-shared"},
    )
    assert apply(control_plane, namespace, body, tmp_path).returncode == 0
    found = wait_for(
        lambda: len(pods(api, namespace, "starved")) == 3 and pods(api, namespace, "starved"), what="pods"
    )
    now = datetime.now(UTC)
    for job, pod in found.items():
        # windowed's readiness probe has found no executor for 100 s; the others have theirs
        set_running(
            api, namespace, pod.metadata.name, since=now - timedelta(seconds=100), ready=job != "windowed"
        )

    cr = wait_for(
        lambda: (
            (c := get_cr(api, namespace, "starved"))
            and condition(c, "ExecutorsUnavailable")["status"] == "True"
            and c
        ),
        what="ExecutorsUnavailable",
    )
    said = condition(cr, "ExecutorsUnavailable")["message"]
    assert said.startswith("windowed: no executor for "), said
    assert "spark://sluice-spark-master:7077" in said and "= 1 core(s)" in said
    ready = condition(cr, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoExecutors")
    assert ready["message"].startswith("ExecutorsUnavailable: windowed: no executor for ")
    windowed = cr["status"]["components"]["windowed"]
    assert (windowed["phase"], windowed["reason"]) == ("Running", "NoExecutors")
    assert cr["status"]["phase"] == "Running"  # the job runs and waits: nothing to restart
    told = wait_for(
        lambda: [e for e in events(api, namespace, "starved") if e[0] == "ExecutorsUnavailable"],
        what="the Event",
    )
    assert len(told) == 1 and told[0][1].startswith("windowed: no executor for ")

    # its executor comes: the probe passes, the pipeline is Ready, and the pod was never replaced
    set_running(api, namespace, found["windowed"].metadata.name, since=now - timedelta(seconds=100))
    cr = wait_for(
        lambda: (c := get_cr(api, namespace, "starved")) and condition(c, "Ready")["status"] == "True" and c,
        what="Ready",
    )
    assert condition(cr, "ExecutorsUnavailable")["status"] == "False"
    assert pods(api, namespace, "starved")["windowed"].metadata.uid == found["windowed"].metadata.uid
    assert len([e for e in events(api, namespace, "starved") if e[0] == "ExecutorsUnavailable"]) == 1
