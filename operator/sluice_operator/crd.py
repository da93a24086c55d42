"""The StreamingPipeline CustomResourceDefinition, derived from :mod:`sluice_operator.spec`.

``python -m sluice_operator.crd`` prints it as YAML; ``k8s/crd/`` and the operator chart carry that output, and a
test fails when either drifts from what this module generates.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import MISSING, fields

import yaml

from sluice_operator import components
from sluice_operator import spec as s


def _jobs() -> str:
    """The jobs' names as prose: ``basic, windowed and anomaly``."""
    *others, last = components.names(components.JOBS)
    return f"{', '.join(others)} and {last}" if others else last


#: Printer columns of ``kubectl get spipe``.
PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the pipeline is."},
    {
        "name": "Jobs Ready",
        "type": "string",
        "jsonPath": ".status.jobsReady",
        "description": "Running/enabled components.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.conditions[?(@.type=='Ready')].status",
        "description": "The Ready condition.",
    },
    {
        "name": "Lag",
        "type": "integer",
        "jsonPath": ".status.lagRecords",
        "description": "Records of the source topic the jobs have not processed yet, all jobs together.",
    },
    {
        "name": "Suspended",
        "type": "boolean",
        "jsonPath": ".spec.suspend",
        "priority": 1,
        "description": "spec.suspend.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _default_value(f: dataclasses.Field) -> typing.Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _to_camel(value: typing.Any) -> typing.Any:
    """A default as the API stores it: dataclasses become camelCase objects."""
    if dataclasses.is_dataclass(value):
        return {
            s.camel(f.name): _to_camel(getattr(value, f.name))
            for f in fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, list):
        return [_to_camel(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_camel(v) for k, v in value.items()}
    return value


def _scalar_schema(tp: typing.Any) -> dict:
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "format": "int64"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    origin = typing.get_origin(tp)
    if origin is dict:
        return {"type": "object", "additionalProperties": {"type": "string"}}
    if origin is list:
        return {"type": "array", "items": {"type": "string"}}
    raise TypeError(f"no schema for {tp!r}")


def field_schema(owner: type, f: dataclasses.Field) -> dict:
    """The openAPIV3 schema of one field: type, description, default and the facts in its metadata."""
    tp = s.field_type(owner, f)
    inner = s._optional_inner(tp)
    tp = inner if inner is not None else tp
    schema = class_schema(tp) if dataclasses.is_dataclass(tp) else _scalar_schema(tp)
    m = f.metadata
    schema["description"] = m["description"]
    default = _default_value(f)
    if default is not MISSING and default is not None:
        schema["default"] = _to_camel(default)
    if m["enum"] is not None:
        schema["enum"] = list(m["enum"])
    if m["minimum"] is not None:
        schema["minimum"] = m["minimum"]
        if m["exclusive_minimum"]:
            schema["exclusiveMinimum"] = True
    if m["maximum"] is not None:
        schema["maximum"] = m["maximum"]
    if m["pattern"] is not None:
        schema["pattern"] = m["pattern"]
    if m["min_length"] is not None:
        schema["minLength"] = m["min_length"]
    if m["max_length"] is not None:
        schema["maxLength"] = m["max_length"]
    if m["min_items"] is not None:
        schema["minItems"] = m["min_items"]
    if m["item_enum"] is not None:
        schema["items"] = {"type": "string", "enum": list(m["item_enum"])}
    if m["cel"]:
        schema["x-kubernetes-validations"] = [{"rule": rule, "message": msg} for rule, msg in m["cel"]]
    return schema


def class_schema(cls: type) -> dict:
    """The object schema of a spec class: its fields as properties, its CEL rules as validations."""
    schema: dict = {
        "type": "object",
        "description": (cls.__doc__ or "").strip(),
        "properties": {s.camel(f.name): field_schema(cls, f) for f in fields(cls)},
    }
    required = [s.camel(f.name) for f in fields(cls) if _default_value(f) is MISSING]
    if required:
        schema["required"] = required
    rules = getattr(cls, "CEL_RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": rule, "message": msg} for rule, msg in rules]
    return schema


def _progress_schema() -> dict:
    """``status.components.<job>.progress`` (:class:`sluice_operator.progress.Progress`)."""
    return {
        "type": "object",
        "description": (
            "How far the job trails its source topic, read from its consumer group "
            "(sluice.<namespace>.<pipeline>.<job>) each pass."
        ),
        "properties": {
            "lagRecords": {
                "type": "integer",
                "format": "int64",
                "description": "Records of the source topic the job has not processed yet.",
            },
            "inputRate": {
                "type": "number",
                "description": "Records per second written to the source topic, between two passes.",
            },
            "processedRate": {
                "type": "number",
                "description": "Records per second the job processed, between two passes.",
            },
            "lastProgressTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the job last committed a micro-batch.",
            },
            "freshnessSeconds": {
                "type": "number",
                "description": (
                    "How far the job's watermark trails the present: the age of its newest complete window."
                ),
            },
        },
    }


def status_schema() -> dict:
    """The status the operator reports (documented; unknown fields kept so kopf's own bookkeeping fits)."""
    condition = {
        "type": "object",
        "description": (
            "A condition: TopicsReady, CheckpointsReady, JobsRunning, ExecutorsUnavailable, Progressing, Stalled, Lagging, Ready or Invalid."
        ),
        "properties": {
            "type": {"type": "string", "description": "Condition type."},
            "status": {
                "type": "string",
                "description": "True, False or Unknown.",
                "enum": ["True", "False", "Unknown"],
            },
            "reason": {"type": "string", "description": "One-word reason, CamelCase."},
            "message": {"type": "string", "description": "What happened, for a person."},
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed.",
            },
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "Generation this is about.",
            },
        },
        "required": ["type", "status"],
    }
    component = {
        "type": "object",
        "description": "One component (generator or job) and its pod.",
        "properties": {
            "pod": {"type": "string", "description": "Name of the component's pod."},
            "phase": {
                "type": "string",
                "description": "The pod's phase, or Disabled, Suspended, BackOff, Restarting, Updating, Terminating, GaveUp or DataLost.",
            },
            "restarts": {
                "type": "integer",
                "format": "int64",
                "description": "Times the operator recreated the pod.",
            },
            "lastStart": {
                "type": "string",
                "format": "date-time",
                "description": "When the current pod was created.",
            },
            "executors": {
                "type": "integer",
                "format": "int64",
                "description": "Running executor pods of the job's driver (spark.mode kubernetes).",
            },
            "nextRestart": {
                "type": "string",
                "format": "date-time",
                "description": "When a failed pod will be recreated.",
            },
            "checkpointPath": {"type": "string", "description": "Checkpoint root of the job on the volume."},
            "checkpointGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "Which checkpoint generation the job uses; it moves on when the state can't be reused.",
            },
            "stateFingerprint": {
                "type": "string",
                "description": "Hash of the settings the job's state depends on.",
            },
            "configHash": {"type": "string", "description": "Hash of the pod the operator last created."},
            "gaveUp": {"type": "boolean", "description": "The restart limit was reached."},
            "reason": {
                "type": "string",
                "description": (
                    "Why, in one word: the operator's (Created, BackOff, Restarting, Stalled...) or what stops the "
                    "pod (ImagePullBackOff, ErrImagePull, CreateContainerConfigError, Unschedulable, OOMKilled)."
                ),
            },
            "message": {"type": "string", "description": "Why the component is in this state."},
            "progress": _progress_schema(),
        },
    }
    return {
        "type": "object",
        "description": "What the operator observed and did.",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "phase": {
                "type": "string",
                "description": "Pending, Running, Degraded, Failed, Suspended or Invalid.",
            },
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "Last generation acted on.",
            },
            "jobsReady": {
                "type": "string",
                "description": "Running components / enabled components, e.g. 4/4.",
            },
            "lagRecords": {
                "type": "integer",
                "format": "int64",
                "description": "Records of the source topic the jobs have not processed yet, all jobs together.",
            },
            "components": {
                "type": "object",
                "description": f"Per component: {', '.join(components.names())}.",
                "additionalProperties": component,
            },
            "topics": {
                "type": "object",
                "description": "Per topic role: the topic name and partitions Kafka reports.",
                "additionalProperties": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "checkpointClaim": {
                "type": "string",
                "description": "The PersistentVolumeClaim holding the checkpoints.",
            },
            "conditions": {
                "type": "array",
                "description": "Conditions, newest state of each type.",
                "items": condition,
            },
        },
    }


def build_crd() -> dict:
    """The CustomResourceDefinition object."""
    spec_schema = class_schema(s.PipelineSpec)
    spec_schema["default"] = {}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{s.PLURAL}.{s.GROUP}",
            "labels": {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/part-of": "sluice"},
        },
        "spec": {
            "group": s.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": s.KIND,
                "listKind": f"{s.KIND}List",
                "plural": s.PLURAL,
                "singular": s.SINGULAR,
                "shortNames": list(s.SHORT_NAMES),
                "categories": ["sluice"],
            },
            "versions": [
                {
                    "name": s.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A StreamingPipeline runs the Sluice Kafka -> Spark Structured Streaming pipeline: "
                                f"its topics, checkpoint volume, event generator and the {_jobs()} jobs."
                            ),
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version of the object."},
                                "kind": {"type": "string", "description": "Kind of the object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    """The CRD as YAML, with a header saying where it comes from."""
    header = (
        "# Generated by `python -m sluice_operator.crd` from operator/sluice_operator/spec.py. Do not edit.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
