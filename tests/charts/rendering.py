"""Helpers of the chart tests: pick objects, containers and environment out of rendered manifests."""

from __future__ import annotations

import pytest

Objects = list[dict]


def find(objects: Objects, kind: str, name: str | None = None) -> dict:
    """The one object of KIND (and NAME); fails with what there is instead."""
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    if len(matches) != 1:
        have = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        pytest.fail(f"expected one {kind} {name or ''}, found {len(matches)} among {have}")
    return matches[0]


def all_of(objects: Objects, kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def container(workload: dict, name: str) -> dict:
    spec = workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]
    (match,) = [c for c in spec["containers"] if c["name"] == name]
    return match


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}
