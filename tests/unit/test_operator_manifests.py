"""The pure builders of the pipeline's children: PVC, pods, labels, and the flags each pod runs with.

The flags are checked by handing them to the jobs' and the generator's own command-line parsers: what the operator
builds must be accepted by the programs and mean what the spec says."""

from __future__ import annotations

import pytest
from sluice_operator import checkpoints, components, lifecycle
from sluice_operator import manifests as m
from sluice_operator.spec import parse_spec

from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.basic import BasicOptions
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import Duration, Trigger, parse_options
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.unit

RAW = {
    "kafka": {"bootstrapServers": "kafka.data:9092", "topics": {"alerts": {"name": "alerts-v2"}}},
    "jobs": {
        "basic": {"window": "20s", "slide": "10s", "fileFormat": "json", "trigger": "2s"},
        "windowed": {"maxOffsetsPerTrigger": 20000},
        "anomaly": {"threshold": 2.5, "outputMode": "update"},
    },
    "generator": {"rate": 250, "devices": 4, "seed": 9, "malformedFraction": 0.01},
    "spark": {"driver": {"cores": 3, "memory": "2g"}, "conf": {"spark.sql.adaptive.enabled": "false"}},
}
SPEC = parse_spec(RAW)


def flags(container: dict) -> list[str]:
    """The flags of a pod's program: its args after ``python3 -m <module>``."""
    program = container["args"][:3]
    assert program[:2] == ["python3", "-m"] and program[2].startswith("spark_jobs."), container["args"]
    return container["args"][3:]


def plan(component: str, spec=SPEC, generation: int = 0) -> m.PodPlan:
    return m.pod_plan(
        pipeline="demo",
        namespace="team-a",
        spec=spec,
        component=components.get(component),
        generation=generation,
    )


def fingerprint(*, spec, job: str) -> str:
    return checkpoints.state_fingerprint(spec=spec, component=components.get(job))


def test_driver_pods_request_cores_unless_a_cpu_request_is_given():
    """Spark runs `cores` threads either way (local[3]); the scheduler reserves cpuRequest when it is set."""
    small = parse_spec(
        {**RAW, "spark": {**RAW["spark"], "driver": {"cores": 3, "memory": "2g", "cpuRequest": "250m"}}}
    )
    default, reduced = plan("windowed"), plan("windowed", spec=small)
    assert default.manifest["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "3"
    assert reduced.manifest["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
    assert "local[3]" in reduced.manifest["spec"]["containers"][0]["args"]
    # 2g heap + 384 MiB overhead, requested and limited, whatever the CPU request
    assert reduced.manifest["spec"]["containers"][0]["resources"]["requests"]["memory"] == "2432Mi"


def test_pvc():
    pvc = m.checkpoint_pvc(
        pipeline="demo",
        namespace="team-a",
        spec=parse_spec({"checkpoints": {"size": "5Gi", "storageClassName": "fast"}}),
    )
    assert pvc["metadata"]["name"] == "demo-checkpoints" and pvc["metadata"]["namespace"] == "team-a"
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert pvc["metadata"]["labels"]["app.kubernetes.io/component"] == "checkpoints"
    assert (
        "storageClassName" not in m.checkpoint_pvc(pipeline="p", namespace="n", spec=parse_spec({}))["spec"]
    )
    assert (
        m.checkpoint_pvc(
            pipeline="p", namespace="n", spec=parse_spec({"checkpoints": {"existingClaim": "shared"}})
        )
        is None
    )


def test_labels_of_every_component():
    for component in components.names():
        labels = plan(component).manifest["metadata"]["labels"]
        assert labels == {
            "app.kubernetes.io/name": "sluice",
            "app.kubernetes.io/instance": "demo",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "sluice",
            "app.kubernetes.io/managed-by": "sluice-operator",
            "streaming.sluice.dev/pipeline": "demo",
        }


@pytest.mark.parametrize("component", components.names())
def test_pods_meet_restricted_pod_security(component):
    pod = plan(component).manifest["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert all("hostPath" not in v for v in pod["volumes"])


def test_basic_job_flags_parse_to_the_spec_values():
    p = plan("basic")
    container = p.manifest["spec"]["containers"][0]
    assert "command" not in container  # the image's entrypoint (tini) runs the program
    assert container["args"][:3] == ["python3", "-m", "spark_jobs.basic"]
    opts = parse_options(BasicOptions, flags(container))
    assert (opts.window, opts.slide, opts.file_format) == (Duration(20_000), Duration(10_000), "json")
    assert opts.common.bootstrap_servers == "kafka.data:9092" and opts.common.trigger == Trigger(
        interval=Duration(2000)
    )
    assert opts.common.checkpoint_root == "/var/lib/sluice/checkpoints/basic/g0" == p.checkpoint_path
    assert opts.output_dir == "/var/lib/sluice/output/g0" and opts.common.master == "local[3]"
    assert opts.common.max_offsets_per_trigger is None  # unset: each micro-batch reads all there is
    assert ("spark.driver.memory", "2g") in opts.common.spark_conf
    assert ("spark.sql.adaptive.enabled", "false") in opts.common.spark_conf
    # the PVC is mounted where the flags point
    (state,) = [v for v in container["volumeMounts"] if v["name"] == "state"]
    assert state["mountPath"] == "/var/lib/sluice"
    (volume,) = [v for v in p.manifest["spec"]["volumes"] if v["name"] == "state"]
    assert volume["persistentVolumeClaim"]["claimName"] == "demo-checkpoints"
    # 2g heap + 384Mi overhead
    assert (
        container["resources"]["limits"]["memory"] == "2432Mi"
        and container["resources"]["requests"]["cpu"] == "3"
    )


def test_windowed_and_anomaly_flags_parse_to_the_spec_values():
    w = parse_options(WindowedOptions, flags(plan("windowed").manifest["spec"]["containers"][0]))
    assert (w.tumbling_window, w.sliding_window, w.status_window) == (
        Duration(10_000),
        Duration(30_000),
        Duration(3_600_000),
    )
    assert w.common.max_offsets_per_trigger == 20000
    a = parse_options(AnomalyOptions, flags(plan("anomaly", generation=2).manifest["spec"]["containers"][0]))
    assert (a.threshold, a.alerts_topic, a.common.output_mode) == (2.5, "alerts-v2", "update")
    assert a.common.checkpoint_root == "/var/lib/sluice/checkpoints/anomaly/g2"


def test_generator_flags_parse_to_the_spec_values():
    args = flags(plan("generator").manifest["spec"]["containers"][0])
    config = parse_options(GeneratorConfig, args)
    assert (config.rate, config.devices, config.seed, config.malformed_fraction) == (250.0, 4, 9, 0.01)
    assert config.topic == "stream_data_topic" and config.duration is None and config.count is None
    assert all(v["name"] != "state" for v in plan("generator").manifest["spec"]["volumes"])


def test_config_hash_changes_only_with_the_pod():
    base = plan("anomaly")
    assert plan("anomaly").config_hash == base.config_hash
    changed = parse_spec({"jobs": {"anomaly": {"threshold": 3.0}}})
    assert plan("anomaly", spec=changed).config_hash != plan("anomaly", spec=parse_spec({})).config_hash
    # a change to another job leaves this pod alone
    other = parse_spec({"jobs": {"basic": {"window": "1m"}}})
    assert plan("anomaly", spec=other).config_hash == plan("anomaly", spec=parse_spec({})).config_hash


def test_state_fingerprint_follows_windows_and_source_only():
    base = parse_spec({})
    fp = fingerprint(spec=base, job="anomaly")
    assert fingerprint(spec=parse_spec({"jobs": {"anomaly": {"threshold": 4}}}), job="anomaly") == fp
    assert fingerprint(spec=parse_spec({"jobs": {"anomaly": {"watermark": "1m"}}}), job="anomaly") == fp
    assert fingerprint(spec=parse_spec({"jobs": {"anomaly": {"window": "1m"}}}), job="anomaly") != fp
    assert (
        fingerprint(spec=parse_spec({"kafka": {"topics": {"source": {"name": "s2"}}}}), job="anomaly") != fp
    )
    w = fingerprint(spec=base, job="windowed")
    assert fingerprint(spec=parse_spec({"jobs": {"windowed": {"statusWindow": "30m"}}}), job="windowed") != w


def test_state_fingerprint_names_the_checkpoint_layout():
    fp = fingerprint(spec=parse_spec({}), job="windowed")
    assert fp.startswith("l2-") and not checkpoints.layout_changed(fp)
    # A fingerprint from before the layout had a number (one query per output): a bare 12-digit hash.
    assert checkpoints.layout_changed("0123456789ab")
    # Recorded under the old layout, the same spec moves the job to a fresh checkpoint generation.
    old = lifecycle.ComponentRecord(fingerprint="0123456789ab")
    record, moved = lifecycle.next_generation(old, fp)
    assert moved and record.generation == 1 and record.fingerprint == fp
    # ... and the operator's Event says why
    upgraded = checkpoints.reset_message(
        job="windowed", earlier_fingerprint="0123456789ab", old_checkpoint="/x/g0"
    )
    assert upgraded == (
        "windowed: Sluice's checkpoint layout changed (one streaming query per job since Sluice 0.2), so its state "
        "cannot be reused; it starts on a fresh checkpoint from the earliest offsets (the old one stays at /x/g0)"
    )
    changed = checkpoints.reset_message(
        job="windowed", earlier_fingerprint="l2-0123456789ab", old_checkpoint="/x"
    )
    assert changed.startswith("windowed: its windows or source changed, so its state cannot be reused")


def test_existing_claim_is_shared_under_the_pipelines_own_directory():
    spec = parse_spec({"checkpoints": {"existingClaim": "spark-shared"}, "spark": {"mode": "standalone"}})
    pod = plan("windowed", spec=spec).manifest["spec"]
    (state,) = [v for v in pod["containers"][0]["volumeMounts"] if v["name"] == "state"]
    # The whole claim at the mount point, as the Spark workers mount it; the pipeline's directory is in the path,
    # so driver and executors name the same files.
    assert state == {"name": "state", "mountPath": "/var/lib/sluice"}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "state"]
    assert volume["persistentVolumeClaim"]["claimName"] == "spark-shared"
    opts = parse_options(WindowedOptions, flags(pod["containers"][0]))
    assert opts.common.master == "spark://sluice-spark-master:7077"
    assert opts.common.checkpoint_root == "/var/lib/sluice/team-a/demo/checkpoints/windowed/g0"
    assert ("spark.driver.host", "$(SPARK_DRIVER_HOST)") in opts.common.spark_conf


def test_enabled_components():
    spec = parse_spec({"generator": {"enabled": False}, "jobs": {"windowed": {"enabled": False}}})
    assert [c.name for c in components.enabled(spec)] == ["basic", "anomaly"]
    with pytest.raises(ValueError, match="unknown component 'x'; the components are generator, basic"):
        components.get("x")


def test_standalone_jobs_share_the_cluster_each_taking_instances_times_cores():
    spec = parse_spec(
        {
            "checkpoints": {"existingClaim": "shared"},
            "spark": {"mode": "standalone", "executor": {"instances": 2, "cores": 3, "memory": "2g"}},
        }
    )
    container = plan("anomaly", spec=spec).manifest["spec"]["containers"][0]
    opts = parse_options(AnomalyOptions, flags(container))
    conf = dict(opts.common.spark_conf)
    assert (conf["spark.cores.max"], conf["spark.executor.cores"], conf["spark.executor.memory"]) == (
        "6",
        "3",
        "2g",
    )
    assert "spark.executor.instances" not in conf  # standalone sizes a job by its cores
    assert opts.common.shuffle_partitions == 6  # one per core it can run on
    assert opts.common.executors_missing_file == "/tmp/sluice/executors-missing"
    assert container["readinessProbe"]["exec"]["command"] == [
        "test",
        "!",
        "-e",
        "/tmp/sluice/executors-missing",
    ]
    # dynamic allocation: the most it may take, and Spark's settings for it
    scaling = parse_spec(
        {
            "checkpoints": {"existingClaim": "shared"},
            "spark": {
                "mode": "standalone",
                "executor": {"instances": 2, "dynamicAllocation": {"enabled": True, "maxExecutors": 5}},
            },
        }
    )
    conf = dict(
        parse_options(
            AnomalyOptions, flags(plan("anomaly", spec=scaling).manifest["spec"]["containers"][0])
        ).common.spark_conf
    )
    assert {
        k: v for k, v in conf.items() if k.startswith("spark.dynamicAllocation") or k == "spark.cores.max"
    } == {
        "spark.cores.max": "5",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.initialExecutors": "2",
        "spark.dynamicAllocation.minExecutors": "1",
        "spark.dynamicAllocation.maxExecutors": "5",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
    }


def test_a_kubernetes_mode_driver_is_tied_to_its_pod_service_namespace_and_executor_template(monkeypatch):
    spark = {
        "mode": "kubernetes",
        "image": "registry.example/sluice/spark-jobs:1.2",
        "executor": {"instances": 3, "memoryOverhead": "512m", "cpuRequest": "500m"},
    }
    spec = parse_spec({"checkpoints": {"existingClaim": "shared"}, "spark": spark})
    pod = plan("windowed", spec=spec).manifest
    (container,) = pod["spec"]["containers"]
    opts = parse_options(WindowedOptions, flags(container))
    assert opts.common.master == "k8s://https://kubernetes.default.svc"
    conf = dict(opts.common.spark_conf)
    assert conf == {
        "spark.driver.memory": "1g",
        "spark.executor.memory": "1g",
        "spark.executor.cores": "1",
        "spark.executor.instances": "3",
        "spark.executor.memoryOverhead": "512m",
        "spark.kubernetes.executor.request.cores": "500m",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.kubernetes.namespace": "team-a",
        "spark.kubernetes.driver.pod.name": "demo-windowed",
        "spark.kubernetes.container.image": "registry.example/sluice/spark-jobs:1.2",
        "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
        "spark.kubernetes.executor.podTemplateFile": "/etc/sluice/executor/pod.yaml",
        "spark.kubernetes.executor.podTemplateContainerName": "executor",
        "spark.kubernetes.executor.podNamePrefix": "demo-windowed",
        "spark.driver.host": "demo-windowed-driver.team-a.svc",
        "spark.driver.port": "7078",
        "spark.driver.blockManager.port": "7079",
        "spark.kubernetes.executor.disableConfigMap": "true",
        "spark.kubernetes.driver.ownPersistentVolumeClaim": "false",
        "spark.kubernetes.driver.reusePersistentVolumeClaim": "false",
    }
    assert pod["metadata"]["name"] == "demo-windowed"
    assert (pod["spec"]["serviceAccountName"], pod["spec"]["automountServiceAccountToken"]) == (
        "demo-spark",
        True,
    )
    assert {"name": "driver", "containerPort": 7078, "protocol": "TCP"} in container["ports"]
    (template_volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "executor-template"]
    assert template_volume["configMap"] == {
        "name": "demo-spark-executors",
        "items": [{"key": "windowed.yaml", "path": "pod.yaml"}],
    }
    # an executor template changed by an operator upgrade restarts the driver (it reads it when it starts)
    before = plan("windowed", spec=spec)
    template = m.executor_template
    monkeypatch.setattr(
        m, "executor_template", lambda **kw: {**template(**kw), "metadata": {"labels": {"new": "label"}}}
    )
    after = plan("windowed", spec=spec)
    assert (after.manifest["spec"], after.config_hash != before.config_hash) == (
        before.manifest["spec"],
        True,
    )
    # local mode: no probe, no identity, no token
    local = plan("windowed").manifest
    assert "readinessProbe" not in local["spec"]["containers"][0]
    assert (
        local["spec"]["automountServiceAccountToken"] is False and "serviceAccountName" not in local["spec"]
    )
