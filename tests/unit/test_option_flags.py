"""The parsers generated from the options dataclasses: one flag per field, the lab's defaults, the bounds, the
errors. Every expectation is written out here by hand (the flags as the operator and the docs spell them), never
read back from the options module."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from spark_jobs import anomaly, basic, windowed
from spark_jobs.anomaly import AnomalyOptions
from spark_jobs.basic import BasicOptions
from spark_jobs.generator import __main__ as generator
from spark_jobs.generator.model import GeneratorConfig
from spark_jobs.options import (
    CommonOptions,
    Duration,
    OptionsError,
    Trigger,
    build_parser,
    check_fields,
    cli_defaults,
    flag_fields,
    option,
    parse_options,
)
from spark_jobs.windowed import WindowedOptions

pytestmark = pytest.mark.unit

COMMON = {
    "--bootstrap-servers": "localhost:9092",
    "--source-topic": "stream_data_topic",
    "--dead-letter-topic": "dead_letter_topic",
    "--checkpoint-root": "/tmp/sluice/checkpoints",
    "--previous-checkpoint-root": None,
    "--starting-offsets": "earliest",
    "--max-offsets-per-trigger": None,
    "--trigger": "5s",
    "--output-mode": "append",
    "--console": False,
    "--console-rows": 20,
    "--shuffle-partitions": 4,
    "--master": None,
    "--jars": "",
    "--spark-conf": [],
    "--log-level": "WARN",
    "--query-prefix": "",
    "--max-event-ahead": "1h",
    "--max-event-behind": "168h",
    "--max-record-bytes": 65_536,
    "--max-field-length": 256,
    "--fail-on-data-loss": True,
    "--dead-letter-max-bytes": 1_048_576,
    "--consumer-group": None,
    "--metrics-port": 0,
    "--executors-missing-file": None,
}
BASIC = {
    "--window": "10s",
    "--slide": "5s",
    "--watermark": "10s",
    "--processed-topic": "processed_data_topic",
    "--output-dir": "/tmp/sluice/output",
    "--file-format": "parquet",
}
WINDOWED = {
    "--tumbling-window": "10s",
    "--sliding-window": "30s",
    "--sliding-slide": "10s",
    "--status-window": "1h",
    "--watermark": "10s",
    "--windowed-topic": "windowed_results_topic",
}
ANOMALY = {
    "--window": "30s",
    "--slide": "10s",
    "--watermark": "30s",
    "--threshold": 2.0,
    "--stddev-floor": 1.0,
    "--alerts-topic": "anomaly_alerts_topic",
}
GENERATOR = {
    "--bootstrap-servers": "localhost:9092",
    "--topic": "stream_data_topic",
    "--devices": 10,
    "--rate": 100.0,
    "--duration": None,
    "--count": None,
    "--anomaly-probability": 0.1,
    "--seed": None,
    "--start-time": None,
    "--interval-ms": None,
    "--late-fraction": 0.0,
    "--late-max-seconds": 60.0,
    "--malformed-fraction": 0.0,
    "--summary-file": None,
    "--message-timeout-ms": 120000,
}
JOBS = [("basic", basic, BASIC), ("windowed", windowed, WINDOWED), ("anomaly", anomaly, ANOMALY)]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (BasicOptions, {**COMMON, **BASIC}),
        (WindowedOptions, {**COMMON, **WINDOWED}),
        (AnomalyOptions, {**COMMON, **ANOMALY}),
        (CommonOptions, COMMON),
        (GeneratorConfig, GENERATOR),
    ],
)
def test_cli_defaults_are_the_lab_defaults_as_the_command_line_writes_them(options, expected):
    defaults = cli_defaults(options)
    assert defaults == expected
    assert list(defaults) == list(expected)  # the common flags first, then the job's, in declaration order


def as_argv(defaults: dict) -> list[str]:
    """The flags that spell out ``defaults`` (None: left out; False: --no-x; a list: the flag repeated)."""
    argv: list[str] = []
    for flag, value in defaults.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, list):
            for item in value:
                argv += [flag, item]
        else:
            argv += [flag, str(value)]
    return argv


@pytest.mark.parametrize(
    ("options", "defaults"),
    [
        (BasicOptions, {**COMMON, **BASIC}),
        (WindowedOptions, {**COMMON, **WINDOWED}),
        (AnomalyOptions, {**COMMON, **ANOMALY}),
        (GeneratorConfig, GENERATOR),
    ],
)
def test_passing_every_default_as_a_flag_gives_the_defaults(options, defaults):
    assert parse_options(options, as_argv(defaults)) == parse_options(options, []) == options()


def test_the_flags_pods_and_scripts_pass_parse_as_before():
    opts = parse_options(
        AnomalyOptions,
        [
            "--console",
            "--jars", "/jars/a.jar,/jars/b.jar,",
            "--spark-conf", "spark.driver.memory=2g", "--spark-conf", "spark.x=a=b",
            "--trigger", "available-now",
            "--max-offsets-per-trigger", "20000",
            "--log-level", "info",
            "--window", "1m", "--slide", "500ms", "--watermark", "0s",
            "--threshold", "2.5", "--stddev-floor", "0.5",
        ],
    )  # fmt: skip
    c = opts.common
    assert (c.console, c.jars, c.log_level, c.max_offsets_per_trigger) == (
        True,
        ("/jars/a.jar", "/jars/b.jar"),
        "INFO",
        20000,
    )
    assert c.spark_conf == (("spark.driver.memory", "2g"), ("spark.x", "a=b"))
    assert c.trigger == Trigger(available_now=True)
    assert (opts.window, opts.slide, opts.watermark) == (Duration(60_000), Duration(500), Duration(0))
    assert (opts.threshold, opts.stddev_floor) == (2.5, 0.5)
    assert parse_options(BasicOptions, ["--console", "--no-console"]).common.console is False
    g = parse_options(
        GeneratorConfig,
        ["--rate", "0", "--count", "5", "--duration", "2.5", "--seed", "7", "--summary-file", "/tmp/s.json"],
    )
    assert (g.rate, g.count, g.duration, g.seed, g.summary_file) == (0.0, 5, 2.5, 7, "/tmp/s.json")


# --- bounds ----------------------------------------------------------------------------------------------------------

#: (minimum, maximum, exclusive_minimum) of every bounded flag; the anomaly and generator bounds are the operator's
#: spec's, except --rate, which also takes 0 (as fast as possible).
COMMON_BOUNDS = {
    "--max-offsets-per-trigger": (1, None, False),
    "--console-rows": (1, None, False),
    "--shuffle-partitions": (1, None, False),
    "--max-record-bytes": (1, 104_857_600, False),
    "--max-field-length": (1, 1_000_000, False),
    "--dead-letter-max-bytes": (32_768, 104_857_600, False),
    "--metrics-port": (0, 65_535, False),
}
BOUNDS = {
    BasicOptions: COMMON_BOUNDS,
    WindowedOptions: COMMON_BOUNDS,
    AnomalyOptions: {**COMMON_BOUNDS, "--threshold": (0, 1000, True), "--stddev-floor": (0, 1_000_000, True)},
    GeneratorConfig: {
        "--devices": (1, 100_000, False),
        "--rate": (0, 1_000_000, False),
        "--duration": (0, None, False),
        "--seed": (0, None, False),
        "--count": (0, None, False),
        "--anomaly-probability": (0, 1, False),
        "--interval-ms": (0, None, True),
        "--late-fraction": (0, 1, False),
        "--late-max-seconds": (0.001, None, False),
        "--malformed-fraction": (0, 1, False),
        "--message-timeout-ms": (100, None, False),
    },
}
CHOICES = {
    BasicOptions: {
        "--output-mode": ("append", "update"),
        "--log-level": ("ERROR", "WARN", "INFO", "DEBUG"),
        "--file-format": ("parquet", "json"),
    },
    AnomalyOptions: {
        "--output-mode": ("append", "update"),
        "--log-level": ("ERROR", "WARN", "INFO", "DEBUG"),
    },
    GeneratorConfig: {},
}


@pytest.mark.parametrize("options", list(BOUNDS))
def test_bounds_are_in_the_field_metadata_under_uniform_keys(options):
    bounds = {
        flag: (f.metadata["minimum"], f.metadata["maximum"], f.metadata["exclusive_minimum"])
        for flag, (_, f) in flag_fields(options).items()
        if f.metadata["minimum"] is not None or f.metadata["maximum"] is not None
    }
    assert bounds == BOUNDS[options]


@pytest.mark.parametrize("options", list(CHOICES))
def test_choices_are_in_the_field_metadata(options):
    choices = {
        flag: f.metadata["choices"]
        for flag, (_, f) in flag_fields(options).items()
        if f.metadata["choices"] is not None
    }
    assert choices == CHOICES[options]


@pytest.mark.parametrize(
    ("options", "argv", "attribute", "value"),
    [
        (AnomalyOptions, ["--threshold", "1000"], "threshold", 1000.0),
        (AnomalyOptions, ["--threshold", "0.001"], "threshold", 0.001),
        (AnomalyOptions, ["--stddev-floor", "1000000"], "stddev_floor", 1_000_000.0),
        (GeneratorConfig, ["--devices", "1"], "devices", 1),
        (GeneratorConfig, ["--devices", "100000"], "devices", 100_000),
        (GeneratorConfig, ["--rate", "0"], "rate", 0.0),
        (GeneratorConfig, ["--rate", "1000000"], "rate", 1_000_000.0),
        (GeneratorConfig, ["--anomaly-probability", "1"], "anomaly_probability", 1.0),
        (GeneratorConfig, ["--malformed-fraction", "0"], "malformed_fraction", 0.0),
        (GeneratorConfig, ["--late-fraction", "1"], "late_fraction", 1.0),
        (GeneratorConfig, ["--count", "0"], "count", 0),
    ],
)
def test_values_on_the_bounds_are_accepted(options, argv, attribute, value):
    assert getattr(parse_options(options, argv), attribute) == value


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (anomaly.main, ["--threshold", "1000.5"], "--threshold: 1000.5 must be a number greater than 0 and at most 1000"),
        (anomaly.main, ["--threshold", "inf"], "--threshold: inf must be a number greater than 0 and at most 1000"),
        (anomaly.main, ["--threshold", "two"], "--threshold: 'two' is not a number (e.g. 100 or 0.25)"),
        (anomaly.main, ["--stddev-floor", "0"], "--stddev-floor: 0.0 must be a number greater than 0 and at most 1000000"),
        (anomaly.main, ["--stddev-floor", "2e6"], "--stddev-floor: 2000000.0 must be a number greater than 0 and at most 1000000"),
        (basic.main, ["--max-offsets-per-trigger", "0"], "--max-offsets-per-trigger: 0 must be at least 1 (or omitted)"),
        (basic.main, ["--console-rows", "1.5"], "--console-rows: '1.5' is not a whole number (e.g. 10)"),
        (windowed.main, ["--output-mode", "complete"], "--output-mode: 'complete' is not one of append, update"),
        (windowed.main, ["--tumbling-window", "0s"], "--tumbling-window: the window must be longer than 0 (got 0s)"),
        (windowed.main, ["--status-window", "0m"], "--status-window: the window must be longer than 0 (got 0s)"),
        (windowed.main, ["--windowed-topic", "a b"], "--windowed-topic: 'a b' is not a valid Kafka topic name"),
        (windowed.main, ["--consumer-group", "my group"], "--consumer-group: 'my group' is not a consumer group name: 1 to 255 printable characters, no spaces"),
        (anomaly.main, ["--metrics-port", "65536"], "--metrics-port: 65536 must be at least 0 and at most 65535"),
        (generator.main, ["--devices", "100001"], "--devices: 100001 must be at least 1 and at most 100000"),
        (generator.main, ["--devices", "0"], "--devices: 0 must be at least 1 and at most 100000"),
        (generator.main, ["--rate", "1000001"], "--rate: 1000001.0 is not between 0 and 1000000"),
        (generator.main, ["--rate", "-1"], "--rate: -1.0 is not between 0 and 1000000"),
        (generator.main, ["--malformed-fraction", "1.01"], "--malformed-fraction: 1.01 is not between 0 and 1"),
        (generator.main, ["--interval-ms", "0"], "--interval-ms: 0.0 must be a number greater than 0 (or omitted)"),
        (generator.main, ["--message-timeout-ms", "99"], "--message-timeout-ms: 99 must be at least 100"),
        (generator.main, ["--seed", "seven"], "--seed: 'seven' is not a whole number (e.g. 10)"),
    ],
)  # fmt: skip
def test_a_bad_value_exits_2_naming_the_flag_and_what_is_accepted(main, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_bounds_hold_for_options_made_without_flags():
    with pytest.raises(
        OptionsError, match=r"^--threshold: 1001 must be a number greater than 0 and at most 1000$"
    ):
        AnomalyOptions(threshold=1001)
    with pytest.raises(OptionsError, match=r"^--shuffle-partitions: 0 must be at least 1$"):
        CommonOptions(shuffle_partitions=0)
    with pytest.raises(OptionsError, match=r"^--devices: 100001 must be at least 1 and at most 100000$"):
        GeneratorConfig(devices=100_001)


# --- --help ----------------------------------------------------------------------------------------------------------


def help_sections(text: str) -> dict[str, dict[str, str]]:
    """``{section title: {flag: its help, on one line}}`` from argparse's --help output."""
    sections: dict[str, dict[str, str]] = {}
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            entries = sections.setdefault(line[:-1], {})
            flag = None
        elif (m := re.match(r"^  (--[\w-]+)", line)) is not None:
            flag = m.group(1)
            entries[flag] = line[m.end() :]
        elif flag is not None and line.strip():
            entries[flag] += " " + line.strip()
    return sections


def shown(default) -> str:
    """How the help writes a default."""
    if default is None:
        return "unset"
    if default == []:
        return "none"
    return '""' if default == "" else str(default)


#: Per job, one flag's help ending as written by hand: what it accepts, then its default.
HELP_ENDINGS = {
    "basic": "format of the event files (one of parquet, json; default: parquet)",
    "windowed": "length of the per-status windows (default: 1h)",
    "anomaly": "alert when |z| exceeds this many σ (a number greater than 0 and at most 1000; default: 2.0)",
}


@pytest.mark.parametrize(("job", "module", "own"), JOBS)
def test_help_lists_every_flag_with_its_help_and_default_in_its_group(job, module, own, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: spark_jobs.{job} ")
    sections = help_sections(out)
    assert list(sections["Kafka and Spark"]) == list(COMMON)
    assert list(sections[f"{job} job"]) == list(own)
    entries = sections["Kafka and Spark"] | sections[f"{job} job"]
    for flag, default in {**COMMON, **own}.items():
        text = " ".join(entries[flag].split())
        assert text.endswith(f"default: {shown(default)})"), (flag, text)
        assert len(text) > len(f"(default: {shown(default)})") + 10, f"{flag} has no help: {text}"
    assert HELP_ENDINGS[job] in " ".join(out.split())


def test_generator_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as stop:
        generator.main(["--help"], run=lambda config: pytest.fail("must not run"))
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sluice-generator ")
    entries = help_sections(out)["options"]
    assert list(entries) == list(GENERATOR)
    for flag, default in GENERATOR.items():
        assert " ".join(entries[flag].split()).endswith(f"default: {shown(default)})"), flag


# --- the generic machinery on a class of its own ---------------------------------------------------------------------


@dataclass(frozen=True)
class Inner:
    TITLE: ClassVar[str] = "inner group"

    level: int = option(3, help="a level", minimum=1, maximum=5)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Sample:
    inner: Inner = field(default_factory=Inner)
    ratio: float = option(0.5, help="a ratio", minimum=0, maximum=1)
    mode: str = option("a", help="a mode", choices=("a", "b"))
    renamed: str = option("x", help="a flag named otherwise", flag="--old-name")
    tags: tuple[str, ...] = option((), help="a tag (repeatable)", parse=lambda t, *, flag: t, repeat=True)

    def __post_init__(self) -> None:
        check_fields(self)


def test_flags_are_named_after_the_fields_unless_named_otherwise():
    assert list(flag_fields(Sample)) == ["--level", "--ratio", "--mode", "--old-name", "--tags"]
    opts = parse_options(
        Sample, ["--level", "5", "--old-name", "y", "--tags", "p", "--tags", "q", "--mode", "b"]
    )
    assert opts == Sample(inner=Inner(level=5), renamed="y", tags=("p", "q"), mode="b")
    help_text = build_parser(Sample, prog="sample", group="sample").format_help()
    assert list(help_sections(help_text)["inner group"]) == ["--level"]
    assert list(help_sections(help_text)["sample"]) == ["--ratio", "--mode", "--old-name", "--tags"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--level", "6"], "--level: 6 must be at least 1 and at most 5"),
        (["--ratio", "nan"], "--ratio: nan is not between 0 and 1"),
        (["--mode", "c"], "--mode: 'c' is not one of a, b"),
        (["--name", "y"], "unrecognized arguments: --name y"),
    ],
)
def test_generic_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_options(Sample, argv, prog="sample")
    assert message in capsys.readouterr().err


def test_a_field_that_is_no_option_is_refused():
    @dataclass(frozen=True)
    class Loose:
        plain: int = 1

    with pytest.raises(TypeError, match=r"Loose.plain is neither an option\(\) nor a group of options"):
        build_parser(Loose)


def test_a_type_without_a_parser_needs_one():
    @dataclass(frozen=True)
    class Odd:
        items: tuple[str, ...] = option((), help="items")

    with pytest.raises(TypeError, match=r"Odd.items: option\(\) needs parse= to read a tuple"):
        build_parser(Odd)
