"""The operator's spec and the programs it runs agree on every flag the operator passes: the same default, the same
bounds and accepted values. A knob's default is written twice (the spec is the CRD's, the program's is its command
line's: the operator never imports the jobs), so this test is what keeps them from drifting."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
from sluice_operator import commands, components
from sluice_operator.spec import PipelineSpec

from spark_jobs import anomaly, basic, windowed
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import cli_defaults, flag_fields

pytestmark = pytest.mark.unit

#: Each component's options class, written out here (the test must not find them the way the code does).
OPTIONS = {
    "generator": GeneratorConfig,
    "basic": typing.get_type_hints(basic.start)["opts"],
    "windowed": typing.get_type_hints(windowed.start)["opts"],
    "anomaly": typing.get_type_hints(anomaly.start)["opts"],
}
#: Where a program accepts more than the spec, on purpose.
WIDER = {
    (
        "generator",
        "--rate",
        "exclusive_minimum",
    ): "--rate 0 runs flat out (the benchmark); a pipeline needs a rate",
}


#: Where a pipeline's default is not the program's, on purpose.
OTHER_DEFAULT = {
    "--metrics-port": "a pod serves its metrics on a port declared in its spec; a job run by hand serves none unless "
    "asked (three jobs on one machine would want the same port)",
}


def _spec_fields(component: components.Component):
    return [
        (f, getattr(part, f.name))
        for part in component.parts(PipelineSpec())
        for f in fields(part)
        if f.metadata.get("flag")
    ]


def _cases():
    for component in components.COMPONENTS:
        for f, default in _spec_fields(component):
            yield pytest.param(component, f, default, id=f"{component.name}{f.metadata['flag']}")


def test_the_options_classes_above_are_the_programs() -> None:
    assert set(OPTIONS) == set(components.names())
    assert basic.BasicOptions is OPTIONS["basic"] and anomaly.AnomalyOptions is OPTIONS["anomaly"]


@pytest.mark.parametrize(("component", "spec_field", "default"), list(_cases()))
def test_spec_default_is_the_programs_default(component, spec_field, default) -> None:
    flag = spec_field.metadata["flag"]
    program = cli_defaults(OPTIONS[component.name])
    assert flag in program, f"{component.name} has no flag {flag}"
    if default is None:  # not passed: the program's own default applies
        return
    if flag in OTHER_DEFAULT:
        assert default != program[flag]  # else the entry above is stale
        return
    expected = program[flag]
    assert commands.flag_value(default) == commands.flag_value(expected), (flag, default, expected)


@pytest.mark.parametrize(("component", "spec_field", "default"), list(_cases()))
def test_spec_bounds_are_the_programs_bounds(component, spec_field, default) -> None:
    flag = spec_field.metadata["flag"]
    _, option = flag_fields(OPTIONS[component.name])[flag]
    spec_facts = {
        "minimum": spec_field.metadata["minimum"],
        "maximum": spec_field.metadata["maximum"],
        "exclusive_minimum": bool(spec_field.metadata["exclusive_minimum"]),
        "choices": tuple(spec_field.metadata["enum"] or ()) or None,
    }
    for fact, value in spec_facts.items():
        theirs = option.metadata.get(fact)
        theirs = (
            bool(theirs)
            if fact == "exclusive_minimum"
            else (tuple(theirs) if fact == "choices" and theirs else theirs)
        )
        if (component.name, flag, fact) in WIDER:
            continue
        assert theirs == value, (
            f"{component.name} {flag}: {fact} is {theirs!r} in the program, {value!r} in the spec"
        )


def test_every_topic_flag_defaults_to_the_spec_topic() -> None:
    spec = PipelineSpec()
    for component in components.COMPONENTS:
        program = cli_defaults(OPTIONS[component.name])
        for topic in (*component.topics, *component.outputs):
            assert program[topic.flag] == getattr(spec.kafka.topics, topic.role).name, (component.name, topic)


def test_the_data_loss_exit_code_is_the_same_on_both_sides() -> None:
    from sluice_operator import lifecycle

    from spark_jobs import runner

    assert lifecycle.DATA_LOST_EXIT == runner.DATA_LOST_EXIT == 3


def test_the_operator_reads_the_progress_the_jobs_commit() -> None:
    from datetime import UTC, datetime

    from sluice_operator import progress as operator_side

    from spark_jobs import progress as job_side

    assert operator_side.METADATA_VERSION == job_side.METADATA_VERSION
    # 1_796_644_800 s after the epoch is 2026-12-07T12:00:00Z (`date -u -d @1796644800`).
    text = job_side.commit_metadata(
        batch_id=12, committed_at_ms=1_796_644_800_123, watermark_ms=1_796_644_790_000
    )
    assert operator_side.read_metadata(text) == operator_side.Commit(
        batch_id=12,
        at=datetime(2026, 12, 7, 12, 0, 0, 123_000, tzinfo=UTC),
        watermark=datetime(2026, 12, 7, 11, 59, 50, tzinfo=UTC),
    )
    assert operator_side.read_metadata(
        job_side.commit_metadata(batch_id=0, committed_at_ms=0, watermark_ms=None)
    )
    assert (
        len(text.encode()) < 4096
    )  # Kafka keeps offset metadata up to offset.metadata.max.bytes, 4096 by default
