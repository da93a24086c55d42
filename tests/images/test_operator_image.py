"""The operator image against the test control plane (a real kube-apiserver on host loopback), run with the
operator chart's own args and environment: it starts as a non-root user, answers its liveness probe, serves
metrics (the chart's `helm test` pod passes), reconciles a StreamingPipeline, and stops cleanly."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from containers import docker, http_get, run_to_end, started, wait_for

from sluice_local.processes import free_ports

pytestmark = pytest.mark.images

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s" / "crd" / "streamingpipelines.streaming.sluice.dev.yaml"
STOP_GRACE_S = 30


@pytest.mark.timeout(600)
def test_operator_image_serves_probes_reconciles_and_stops_cleanly(
    images, render, control_plane, namespace, tmp_path
):
    image = images["operator"]
    user = docker("image", "inspect", "-f", "{{ .Config.User }}", image).stdout.strip()
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0, user  # numeric, so runAsNonRoot can verify it

    control_plane.apply_crd(CRD)
    # The admin kubeconfig is private to root (0600); the copy is private to the image's user.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(control_plane.kubeconfig, kubeconfig)
    os.chown(kubeconfig, int(uid), int(gid))
    kubeconfig.chmod(0o600)
    liveness_port, metrics_port = free_ports(2)
    # The operator chart's own container: its args and SLUICE_* environment, with ports free on this host and
    # the test's namespace to watch (the session may run other operators on the same API server).
    objects = render(
        "sluice-operator",
        {
            "image": {"repository": image.rsplit(":", 1)[0], "tag": image.rsplit(":", 1)[1]},
            "healthPort": liveness_port,
            "metrics": {"port": metrics_port},
            "watchNamespace": namespace,
            "reconcileInterval": 1,
        },
        release="t",
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (chart_container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in chart_container  # the image's entrypoint runs the args
    # The downward API's metadata.namespace is what the pod's namespace would be: the test's, here.
    downward = {"metadata.namespace": namespace}
    chart_env = [
        f"--env={e['name']}={e['value'] if 'value' in e else downward[e['valueFrom']['fieldRef']['fieldPath']]}"
        for e in chart_container["env"]
    ]
    as_pod = [
        "--network=host",
        "--read-only",
        "--tmpfs=/tmp",  # the Kubernetes client writes the kubeconfig's CA data to a temp file
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--add-host=t-sluice-operator-metrics:127.0.0.1",  # the metrics Service, as the cluster's DNS would
    ]

    with started(
        image,
        *chart_container["args"],
        options=[
            *as_pod,
            *chart_env,
            f"--volume={kubeconfig}:/etc/sluice/kubeconfig:ro",
            "--env=KUBECONFIG=/etc/sluice/kubeconfig",
        ],
    ) as operator:
        assert docker("exec", operator.name, "id", "-u").stdout.strip() == uid

        def healthy() -> bool:
            return http_get(f"http://127.0.0.1:{liveness_port}/healthz")[0] == 200

        wait_for(healthy, timeout=90, what="/healthz to answer 200", container=operator)

        # A spec the operator refuses without reaching Kafka (a standalone pipeline needs an existing claim):
        # its status shows the operator reads and writes the API through the mounted kubeconfig.
        name = f"bad-{uuid.uuid4().hex[:6]}"
        pipeline = {
            "apiVersion": "streaming.sluice.dev/v1alpha1",
            "kind": "StreamingPipeline",
            "metadata": {"name": name},
            "spec": {"kafka": {"bootstrapServers": "127.0.0.1:9"}, "spark": {"mode": "standalone"}},
        }
        manifest = tmp_path / "pipeline.yaml"
        manifest.write_text(yaml.safe_dump(pipeline))
        control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))

        def phase() -> bool:
            shown = control_plane.kubectl(
                "get", "spipe", name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False
            )
            return shown.stdout.strip() == "Invalid"

        wait_for(phase, timeout=60, what=f"StreamingPipeline {name} to be marked Invalid", container=operator)

        code, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert code == 200
        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in metrics.splitlines()
            if line and not line.startswith("#")
        }
        assert "# TYPE sluice_reconciles_total counter" in metrics
        assert samples["sluice_reconciles_total"] >= 1

        # The chart's `helm test` pod, as helm would run it against the metrics Service.
        (test_pod,) = [o for o in objects if o["kind"] == "Pod"]
        (test_container,) = test_pod["spec"]["containers"]
        code, printed = run_to_end(image, *test_container["args"], options=as_pod, timeout=120)
        assert code == 0, printed
        assert "serves the operator's metrics" in printed

        # tini hands SIGTERM to the operator; kopf takes it as a request to stop, ends its handlers and returns,
        # so the process exits 0. 143 would mean SIGTERM killed it unhandled, 137 that docker had to SIGKILL it.
        code, took = operator.stop(STOP_GRACE_S)
        assert code == 0, f"exit code {code} after docker stop ({took:.1f} s)"
        assert took < STOP_GRACE_S
