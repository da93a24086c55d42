"""Pins, pom generation, cache keys and cache behaviour of sluice_local.artifacts, without running Maven."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark
import pytest

from sluice_local import artifacts
from sluice_local.artifacts import (
    BROKER,
    CONNECTOR,
    ArtifactError,
    Coordinate,
    JarSet,
    mvn_command,
    parse_java_major,
    render_pom,
    resolve,
)

pytestmark = pytest.mark.unit

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
PYSPARK_JARS = Path(pyspark.__file__).parent / "jars"


# -- pins ----------------------------------------------------------------------------------------------------


def test_connector_version_equals_installed_pyspark() -> None:
    # The Kafka connector is compiled against one exact Spark release; any other pyspark fails at run time.
    assert pyspark.__version__ == artifacts.SPARK_VERSION
    spark_pins = [c for c in CONNECTOR.coordinates if c.group_id == "org.apache.spark"]
    assert {c.artifact_id for c in spark_pins} == {
        "spark-sql-kafka-0-10_2.13",
        "spark-token-provider-kafka-0-10_2.13",
    }
    assert {c.version for c in spark_pins} == {pyspark.__version__}


def test_connector_set_is_exactly_the_connector_pom_dependencies_pyspark_lacks() -> None:
    assert [str(c) for c in CONNECTOR.coordinates] == [
        "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
        "org.apache.spark:spark-token-provider-kafka-0-10_2.13:4.2.0",
        "org.apache.kafka:kafka-clients:3.9.2",
        "org.apache.commons:commons-pool2:2.13.1",
    ]
    assert CONNECTOR.transitive is False


def test_pyspark_bundles_what_the_connector_set_leaves_out() -> None:
    # The connector pom's other compile dependencies: fetched again they would sit twice on the classpath.
    bundled = {p.name for p in PYSPARK_JARS.glob("*.jar")}
    for jar in (
        f"spark-tags_2.13-{pyspark.__version__}.jar",
        "scala-parallel-collections_2.13-1.2.0.jar",
        "jsr305-3.0.0.jar",
    ):
        assert jar in bundled
    # ...and does not bundle what the set adds.
    for prefix in ("kafka-clients-", "commons-pool2-", "spark-sql-kafka-", "spark-token-provider-kafka-"):
        assert not [name for name in bundled if name.startswith(prefix)]


def test_broker_set_pins_kafka_and_matching_log4j_binding() -> None:
    assert [str(c) for c in BROKER.coordinates] == [
        "org.apache.kafka:kafka_2.13:4.1.1",
        "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3",
    ]
    assert BROKER.transitive is True


def test_coordinate_parse_round_trips_and_rejects_bad_shapes() -> None:
    assert str(Coordinate.parse("a.b:c:1.0")) == "a.b:c:1.0"
    assert Coordinate.parse("a.b:c:1.0").jar_name == "c-1.0.jar"
    for bad in ("a:b", "a:b:c:d", "a::1"):
        with pytest.raises(ValueError, match="group:artifact:version"):
            Coordinate.parse(bad)


# -- pom and command -----------------------------------------------------------------------------------------


def test_pom_lists_the_coordinates_in_order_and_pins_the_plugin() -> None:
    root = ET.fromstring(render_pom(CONNECTOR))
    deps = [
        ":".join(d.findtext(f"m:{tag}", namespaces=POM_NS) for tag in ("groupId", "artifactId", "version"))
        for d in root.findall("m:dependencies/m:dependency", POM_NS)
    ]
    assert deps == [str(c) for c in CONNECTOR.coordinates]
    assert root.findtext("m:packaging", namespaces=POM_NS) == "pom"
    plugin = root.find("m:build/m:plugins/m:plugin", POM_NS)
    assert plugin is not None
    assert plugin.findtext("m:artifactId", namespaces=POM_NS) == "maven-dependency-plugin"
    assert plugin.findtext("m:version", namespaces=POM_NS) == artifacts.DEPENDENCY_PLUGIN_VERSION


def test_pom_escapes_xml() -> None:
    jar_set = JarSet("x", (Coordinate("g", "a<b", "1&2"),), transitive=True)
    dep = ET.fromstring(render_pom(jar_set)).find("m:dependencies/m:dependency", POM_NS)
    assert dep is not None
    assert dep.findtext("m:artifactId", namespaces=POM_NS) == "a<b"
    assert dep.findtext("m:version", namespaces=POM_NS) == "1&2"


def test_mvn_command_excludes_transitive_only_for_the_connector(tmp_path: Path) -> None:
    pom, out = tmp_path / "pom.xml", tmp_path / "out"
    broker = mvn_command("mvn", pom, out, transitive=True)
    connector = mvn_command("mvn", pom, out, transitive=False)
    assert broker[:2] == ["mvn", "-B"]
    assert "dependency:copy-dependencies" in broker
    assert f"-DoutputDirectory={out}" in broker
    assert "-DincludeScope=runtime" in broker
    assert "-DexcludeTransitive=true" not in broker
    assert connector == [*broker, "-DexcludeTransitive=true"]


# -- cache keys ----------------------------------------------------------------------------------------------


def test_cache_key_shape_and_sets_differ() -> None:
    assert BROKER.cache_key.startswith("broker-")
    assert CONNECTOR.cache_key.startswith("connector-")
    for key in (BROKER.cache_key, CONNECTOR.cache_key):
        suffix = key.rsplit("-", 1)[1]
        assert len(suffix) == 12
        assert set(suffix) <= set("0123456789abcdef")


def test_cache_key_is_stable_across_processes() -> None:
    # Not Python's salted hash(): another interpreter with another hash seed computes the same key.
    code = (
        "from sluice_local.artifacts import BROKER, CONNECTOR; print(BROKER.cache_key, CONNECTOR.cache_key)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.split() == [BROKER.cache_key, CONNECTOR.cache_key]


def test_cache_key_changes_with_any_pin_flag_or_order() -> None:
    a, b = Coordinate("g", "a", "1"), Coordinate("g", "b", "1")
    base = JarSet("s", (a, b), transitive=True)
    assert base.cache_key == JarSet("s", (a, b), transitive=True).cache_key
    assert base.cache_key != JarSet("s", (a, Coordinate("g", "b", "2")), transitive=True).cache_key
    assert base.cache_key != JarSet("s", (a, b), transitive=False).cache_key
    assert base.cache_key != JarSet("s", (b, a), transitive=True).cache_key


def test_cache_root_honours_env_and_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "c"))
    assert artifacts.cache_root() == tmp_path / "c"
    monkeypatch.delenv("SLUICE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert artifacts.cache_root() == tmp_path / ".cache" / "sluice"


# -- resolution with Maven replaced by a fake ----------------------------------------------------------------

SMALL = JarSet("small", (Coordinate("g", "direct", "1.0"),), transitive=True)


class FakeMaven:
    """Stands in for _run_mvn: writes the expected jar plus a 'transitive' one, counts calls."""

    def __init__(self, *, delay: float = 0.0, produce: tuple[str, ...] = ("direct-1.0.jar", "dep-2.0.jar")):
        self.calls = 0
        self.delay = delay
        self.produce = produce

    def __call__(self, jar_set: JarSet, work: Path, output_dir: Path) -> None:
        self.calls += 1
        time.sleep(self.delay)
        output_dir.mkdir()
        for name in self.produce:
            (output_dir / name).write_bytes(b"PK")


def test_resolve_runs_maven_once_then_reuses_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeMaven()
    monkeypatch.setattr(artifacts, "_run_mvn", fake)
    first = resolve(SMALL, cache_dir=tmp_path)
    final = tmp_path / "jars" / SMALL.cache_key
    assert first == [final / "dep-2.0.jar", final / "direct-1.0.jar"]
    assert (final / ".complete").read_text().split() == ["dep-2.0.jar", "direct-1.0.jar"]
    assert resolve(SMALL, cache_dir=tmp_path) == first
    assert fake.calls == 1
    # No temp directories are left next to the result.
    assert sorted(p.name for p in (tmp_path / "jars").iterdir() if p.is_dir()) == [SMALL.cache_key]


def test_resolve_redoes_an_incomplete_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeMaven()
    monkeypatch.setattr(artifacts, "_run_mvn", fake)
    jars = resolve(SMALL, cache_dir=tmp_path)
    jars[0].unlink()  # e.g. deleted by hand
    assert resolve(SMALL, cache_dir=tmp_path) == jars
    assert all(j.is_file() for j in jars)
    assert fake.calls == 2


def test_concurrent_resolves_run_maven_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeMaven(delay=0.3)
    monkeypatch.setattr(artifacts, "_run_mvn", fake)
    results: list[list[Path]] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve(SMALL, cache_dir=tmp_path))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.calls == 1
    assert len(results) == 4
    assert all(r == results[0] for r in results)


def test_missing_direct_jar_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(artifacts, "_run_mvn", FakeMaven(produce=("other-1.jar",)))
    with pytest.raises(ArtifactError, match=r"did not produce direct-1\.0\.jar"):
        resolve(SMALL, cache_dir=tmp_path)
    assert not (tmp_path / "jars" / SMALL.cache_key).exists()


def test_missing_mvn_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArtifactError, match=r"apt-get install -y maven"):
        resolve(SMALL, cache_dir=tmp_path)


def test_maven_failure_reports_cause_and_output_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    output = "\n".join(f"line {i}" for i in range(100)) + (
        "\n[ERROR] Could not transfer artifact g:direct:pom:1.0 from/to central:"
        " java.net.UnknownHostException"
    )

    def failing_run(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, stdout=output)

    monkeypatch.setattr(artifacts, "find_mvn", lambda: "mvn")
    monkeypatch.setattr(artifacts.subprocess, "run", failing_run)
    with pytest.raises(ArtifactError) as info:
        resolve(SMALL, cache_dir=tmp_path)
    message = str(info.value)
    assert "Maven Central is unreachable" in message
    assert "UnknownHostException" in message
    assert "line 99" in message
    assert "line 10\n" not in message  # only the tail


def test_missing_artifact_hint() -> None:
    hint = artifacts._mvn_failure_hint("[ERROR] Could not find artifact g:direct:jar:9.9 in central")
    assert "check the pins" in hint


def test_cli_fetch_copies_to_dest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(
        artifacts, "_run_mvn", FakeMaven(produce=tuple(c.jar_name for c in CONNECTOR.coordinates))
    )
    assert artifacts.main(["fetch", "connector", "--dest", str(tmp_path / "dest")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(c.jar_name for c in CONNECTOR.coordinates)
    assert all(Path(p).parent == tmp_path / "dest" and Path(p).is_file() for p in printed)


# -- java ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "25-ea" 2025-09-16', 25),
    ],
)
def test_parse_java_major(output: str, major: int) -> None:
    assert parse_java_major(output) == major


def test_parse_java_major_rejects_garbage() -> None:
    with pytest.raises(ArtifactError, match="cannot read a Java version"):
        parse_java_major("bash: java: command not found")


def test_require_java_reports_a_bad_java_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ArtifactError, match=rf"JAVA_HOME={tmp_path} has no executable bin/java"):
        artifacts.require_java()


def test_require_java_reports_missing_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArtifactError, match="`java` is not on PATH"):
        artifacts.require_java()
