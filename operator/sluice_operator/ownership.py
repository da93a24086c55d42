"""Which pipeline owns which Kafka topic: pure decisions over the operator's registry of owners.

Two pipelines that name the same topics (two pipelines with the default names, in one namespace or two, on one Kafka
cluster) would otherwise share them: each would adopt the other's topics, reconfigure them to its own spec, write
into them, and delete them when it is deleted. The operator keeps one registry, the ConfigMap
:data:`REGISTRY` in its own namespace, whose keys are ``<Kafka cluster id>.<topic>`` (the cluster id is the same
whatever bootstrap address reaches the cluster; both are legal ConfigMap key characters) and whose values are the
owning pipeline, ``<namespace>/<name>/<uid>``. The first pipeline to claim a topic owns it; a claim is written with
the API server's optimistic concurrency (the ConfigMap's resourceVersion), so two passes never both win.

A pipeline whose topic another pipeline owns does not adopt, reconfigure, write or delete it: its TopicsReady
condition says so (reason ``TopicOwnedByAnotherPipeline``) and it runs no pods. Deleting a pipeline releases its
claims, and its deletion policy applies only to topics no other pipeline owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The registry's ConfigMap, in the operator's namespace.
REGISTRY = "sluice-topic-owners"


@dataclass(frozen=True)
class Owner:
    """A pipeline, as the registry names it."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        namespace, name, uid = [*text.split("/", 2), "", ""][:3]
        return cls(namespace, name, uid)

    @property
    def pipeline(self) -> str:
        """``namespace/name``, as a user names the pipeline."""
        return f"{self.namespace}/{self.name}"

    def is_me(self, other: Owner) -> bool:
        """The same pipeline; one of the same name with another uid was deleted without releasing its claims (its
        finalizer removed by hand), and the claim passes to the pipeline that now has the name."""
        return (self.namespace, self.name) == (other.namespace, other.name)


def key(cluster_id: str, topic: str) -> str:
    return f"{cluster_id}.{topic}"


def claim(
    registry: Mapping[str, str], *, cluster_id: str, topics: Iterable[str], me: Owner
) -> tuple[dict[str, str], dict[str, Owner]]:
    """The registry with every topic of ``topics`` that no other pipeline owns claimed by ``me``, and the topics
    another pipeline owns, with their owner."""
    updated = dict(registry)
    taken: dict[str, Owner] = {}
    for topic in topics:
        held = registry.get(key(cluster_id, topic))
        if held is not None and not Owner.parse(held).is_me(me):
            taken[topic] = Owner.parse(held)
        else:
            updated[key(cluster_id, topic)] = str(me)
    return updated, taken


def release(registry: Mapping[str, str], *, me: Owner) -> dict[str, str]:
    """The registry without ``me``'s claims."""
    return {k: v for k, v in registry.items() if not Owner.parse(v).is_me(me)}


def refusal(taken: Mapping[str, str]) -> str:
    """What TopicsReady and the Event say about topics another pipeline owns (``{topic: "namespace/name"}``)."""
    named = "; ".join(f"topic {t} is owned by pipeline {o}" for t, o in sorted(taken.items()))
    return (
        f"{named}; this pipeline neither adopts, changes, writes nor deletes them and runs no pods: give it other "
        "topic names (spec.kafka.topics), or delete the other pipeline"
    )
