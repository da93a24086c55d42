"""The operator's children for every sample pipeline, compared with golden files written before the component
registry (Sluice 0.2's builders): the pods, the checkpoint claim and the jobs' state fingerprints must stay the same
bytes, so that upgrading the operator neither restarts a running pod (its config hash) nor moves a job to a fresh
checkpoint (its fingerprint).

The golden files are data, not the code under test. An intended change to what the operator builds rewrites them
with ``SLUICE_WRITE_GOLDEN=1 pytest tests/unit/test_golden_pods.py`` and says why in its commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from sluice_operator import checkpoints, components, manifests
from sluice_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SAMPLES = sorted((ROOT / "k8s" / "samples").glob("*.yaml"))
NAMESPACE = "team-a"
COMPONENTS = (
    "generator",
    "basic",
    "windowed",
    "anomaly",
)  # written out: the golden files predate the registry
JOBS = ("basic", "windowed", "anomaly")


def _standalone(spec: dict) -> dict:
    """The full sample in standalone mode on a shared claim, with a CPU request: the branches samples do not take."""
    spark = {**spec["spark"], "mode": "standalone", "master": "spark://spark-master:7077"}
    spark["driver"] = {**spark["driver"], "cpuRequest": "500m"}
    spark["executor"] = {"cores": 2, "memory": "2g"}
    checkpoints = {**spec["checkpoints"], "existingClaim": "spark-shared"}
    generator = {k: v for k, v in spec["generator"].items() if k != "seed"}
    return {**spec, "spark": spark, "checkpoints": checkpoints, "generator": generator}


def _cases() -> dict[str, tuple[str, dict]]:
    cases = {}
    for path in SAMPLES:
        body = yaml.safe_load(path.read_text())
        cases[path.stem] = (body["metadata"]["name"], body.get("spec") or {})
    name, full = cases["full"]
    cases["full-standalone"] = (name, _standalone(full))
    return cases


CASES = _cases()


def built(pipeline: str, data: dict) -> dict:
    """What the operator builds for one pipeline: every component's pod at checkpoint generations 0 and 3, the
    claim, and each job's state fingerprint."""
    spec = parse_spec(data)
    plans = {
        f"{component}@g{generation}": manifests.pod_plan(
            pipeline=pipeline,
            namespace=NAMESPACE,
            spec=spec,
            component=components.get(component),
            generation=generation,
        )
        for component in COMPONENTS
        for generation in (0, 3)
    }
    out = {
        "pods": {key: plan.manifest for key, plan in plans.items()},
        "claim": manifests.checkpoint_pvc(pipeline=pipeline, namespace=NAMESPACE, spec=spec),
        "fingerprints": {
            job: checkpoints.state_fingerprint(spec=spec, component=components.get(job)) for job in JOBS
        },
    }
    needs = {key: list(plan.needs) for key, plan in plans.items() if plan.needs}
    if needs:  # kubernetes mode: what a driver's pod needs before it starts
        out["needs"] = needs
    return out


def _text(value: dict) -> str:
    return json.dumps(value, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_children_are_the_golden_bytes(case: str) -> None:
    pipeline, data = CASES[case]
    text = _text(built(pipeline, data))
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("SLUICE_WRITE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), (
        f"{golden} is missing; write it with SLUICE_WRITE_GOLDEN=1 (from the code before a change)"
    )
    expected = golden.read_text()
    if text != expected:
        # The first differing pod or entry, to say what moved.
        now, before = json.loads(text), json.loads(expected)
        diffs = [
            f"{part}.{key}"
            for part in ("pods", "fingerprints", "needs")
            for key in sorted(set(now.get(part, {})) | set(before.get(part, {})))
            if now.get(part, {}).get(key) != before.get(part, {}).get(key)
        ] + (["claim"] if now["claim"] != before["claim"] else [])
        pytest.fail(f"{case}: differs from {golden.name} in {diffs or 'key order or formatting'}")


def test_every_sample_has_a_golden_file() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(CASES)
