"""Comparing a job's output records with a reference's: by key, field by field, floats to a relative 1e-9."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence

import pytest
from confluent_kafka import Message

# Far enough apart that float rounding cannot be what decides a comparison.
REL = 1e-9


def records_by_key(messages: Sequence[Message]) -> dict[str, dict]:
    """Output records by key; a key written twice fails (append mode writes each window once)."""
    keys = Counter(m.key().decode() for m in messages)
    twice = sorted(k for k, n in keys.items() if n > 1)
    assert not twice, f"{len(twice)} keys written more than once, e.g. {twice[:5]}"
    return {m.key().decode(): json.loads(m.value()) for m in messages}


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, float):
        return (
            isinstance(actual, int | float)
            and not isinstance(actual, bool)
            and actual == pytest.approx(expected, rel=REL, abs=REL)
        )
    return type(actual) is type(expected) and actual == expected


def assert_same_records(actual: dict[str, dict], expected: dict[str, dict], what: str) -> None:
    missing, extra = sorted(expected.keys() - actual.keys()), sorted(actual.keys() - expected.keys())
    assert not missing and not extra, (
        f"{what}: {len(missing)} expected keys missing (e.g. {missing[:4]}), "
        f"{len(extra)} unexpected keys (e.g. {extra[:4]})"
    )
    wrong = []
    for key in sorted(expected):
        got, want = actual[key], expected[key]
        if got.keys() != want.keys():
            wrong.append(f"{key}: fields {sorted(got)} != {sorted(want)}")
            continue
        wrong += [
            f"{key}: {name} = {got[name]!r}, expected {want[name]!r}"
            for name in want
            if not _same(got[name], want[name])
        ]
    assert not wrong, f"{what}: {len(wrong)} fields differ:\n" + "\n".join(wrong[:20])


def same_value(a: object, b: object) -> bool:
    """Two decoded records equal field by field, floats to a relative 1e-9 (a batch computed again may add in
    another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and a == pytest.approx(b, rel=REL, abs=REL)
        )
    return a == b


def one_value_per_key(messages: Sequence[Message], what: str) -> dict[str, dict]:
    """The records by key of an at-least-once output (a batch run again writes its records again), failing if any
    key was written with two different values."""
    values: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        values[m.key().decode()].append(json.loads(m.value()))
    changed = [k for k, vs in values.items() if any(not same_value(vs[0], v) for v in vs[1:])]
    assert not changed, f"{what}: {len(changed)} keys written with two different values, e.g. " + "; ".join(
        f"{k}: {values[k]}" for k in changed[:3]
    )
    return {k: vs[0] for k, vs in values.items()}
