"""Which pipeline owns which topic: claims, refusals and releases over the registry, worked out by hand."""

from __future__ import annotations

import pytest
from sluice_operator.ownership import Owner, claim, refusal, release

pytestmark = pytest.mark.unit

A = Owner("team", "a", "uid-a")
B = Owner("team", "b", "uid-b")


def test_the_first_pipeline_claims_and_the_second_is_refused_the_same_topics():
    first, taken = claim({}, cluster_id="C1", topics=["src", "out"], me=A)
    assert (first, taken) == ({"C1.src": "team/a/uid-a", "C1.out": "team/a/uid-a"}, {})
    second, taken = claim(first, cluster_id="C1", topics=["src", "other"], me=B)
    assert taken == {"src": A}
    assert second == {**first, "C1.other": "team/b/uid-b"}  # what nobody owned, B owns


def test_a_claim_is_per_kafka_cluster_and_idempotent():
    registry, _ = claim({}, cluster_id="C1", topics=["src"], me=A)
    elsewhere, taken = claim(registry, cluster_id="C2", topics=["src"], me=B)
    assert taken == {} and elsewhere["C2.src"] == "team/b/uid-b"
    again, taken = claim(registry, cluster_id="C1", topics=["src"], me=A)
    assert (again, taken) == (registry, {})


def test_a_pipeline_recreated_under_its_name_takes_its_claims_back():
    registry = {"C1.src": "team/a/old-uid"}
    updated, taken = claim(registry, cluster_id="C1", topics=["src"], me=A)
    assert (updated, taken) == ({"C1.src": "team/a/uid-a"}, {})


def test_release_removes_only_the_pipelines_own_claims():
    registry = {"C1.src": "team/a/uid-a", "C2.src": "team/a/uid-a", "C1.x": "team/b/uid-b"}
    assert release(registry, me=A) == {"C1.x": "team/b/uid-b"}


def test_the_refusal_names_each_topic_and_its_owner_and_what_to_do():
    assert refusal({"src": "team/a", "dlq": "team/a"}) == (
        "topic dlq is owned by pipeline team/a; topic src is owned by pipeline team/a; this pipeline neither "
        "adopts, changes, writes nor deletes them and runs no pods: give it other topic names (spec.kafka.topics), "
        "or delete the other pipeline"
    )
