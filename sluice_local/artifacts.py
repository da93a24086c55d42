"""Pinned Maven coordinates for the local runtime, and their resolution into a jar cache.

This module is the one source of truth for the JVM artifacts Sluice runs with:

* the **broker** set: Apache Kafka's broker (``kafka_2.13``) with its transitive runtime dependencies,
  plus the log4j2 binding for SLF4J 1.x (Kafka's logging API) at the version of the ``log4j-core`` Kafka
  pulls, so the broker logs through log4j2;
* the **connector** set: Spark's Kafka source/sink and the dependencies its pom declares that pyspark does
  not bundle. It is resolved *without* transitive dependencies: pyspark already ships Scala, lz4, snappy,
  slf4j and Hadoop, and a second copy on the classpath would clash.

Resolution runs Maven (``mvn dependency:copy-dependencies``) on a generated throwaway pom, once per set,
into ``$SLUICE_CACHE_DIR/jars/<set>-<hash>/`` (default ``~/.cache/sluice``); a ``.complete`` marker lists
the jars and later calls reuse them without Maven. A file lock keeps concurrent processes from racing.

Usage::

    python -m sluice_local.artifacts fetch [broker|connector|all] [--dest DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

SCALA_BINARY_VERSION = "2.13"
KAFKA_VERSION = "4.1.1"
#: log4j-core version that kafka_2.13:4.1.1 pulls; the SLF4J binding must match it.
LOG4J_VERSION = "2.24.3"
#: Must equal the installed ``pyspark.__version__`` (a unit test checks it). Maven Central has no
#: spark-sql-kafka-0-10 connector for pyspark 4.3.0 here, so pyspark is pinned to 4.2.0.
SPARK_VERSION = "4.2.0"
#: The versions spark-sql-kafka-0-10_2.13:4.2.0's pom declares for its own dependencies.
CONNECTOR_KAFKA_CLIENTS_VERSION = "3.9.2"
COMMONS_POOL2_VERSION = "2.13.1"
#: Pinned so the resolution does not depend on whichever plugin version Maven would pick.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

CACHE_DIR_ENV = "SLUICE_CACHE_DIR"
MARKER_NAME = ".complete"
MVN_TIMEOUT_S = 900
_OUTPUT_TAIL_LINES = 25

INSTALL_MAVEN_HINT = "install Maven: apt-get install -y maven (the setup scripts in scripts/ install it too)"
INSTALL_JAVA_HINT = (
    "install a JDK: apt-get install -y openjdk-17-jdk-headless (the setup scripts in scripts/ install it "
    "too), or point JAVA_HOME at a JDK"
)


class ArtifactError(RuntimeError):
    """A pinned artifact, or a tool needed to use it (Maven, Java), is unavailable; the message says why."""


@dataclass(frozen=True)
class Coordinate:
    """A Maven coordinate ``groupId:artifactId:version`` (jar packaging, no classifier)."""

    group_id: str
    artifact_id: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Coordinate:
        """Parse ``"group:artifact:version"``; raise ValueError on any other shape."""
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected a Maven coordinate 'group:artifact:version', got {text!r}")
        return cls(*parts)

    @property
    def jar_name(self) -> str:
        """File name Maven's copy-dependencies gives this artifact's jar."""
        return f"{self.artifact_id}-{self.version}.jar"

    def __str__(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}"


@dataclass(frozen=True)
class JarSet:
    """A named list of coordinates resolved together, with or without their transitive dependencies."""

    name: str
    coordinates: tuple[Coordinate, ...]
    transitive: bool

    @property
    def cache_key(self) -> str:
        """Directory name in the cache: the set's name and a short hash of all that decides its content.

        Declaration order is part of the hash because Maven uses it to break version conflicts.
        """
        payload = json.dumps(
            {
                "coordinates": [str(c) for c in self.coordinates],
                "transitive": self.transitive,
                "plugin": DEPENDENCY_PLUGIN_VERSION,
            },
            sort_keys=True,
        )
        return f"{self.name}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


BROKER = JarSet(
    name="broker",
    coordinates=(
        Coordinate("org.apache.kafka", f"kafka_{SCALA_BINARY_VERSION}", KAFKA_VERSION),
        Coordinate("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ),
    transitive=True,
)

CONNECTOR = JarSet(
    name="connector",
    coordinates=(
        Coordinate("org.apache.spark", f"spark-sql-kafka-0-10_{SCALA_BINARY_VERSION}", SPARK_VERSION),
        Coordinate(
            "org.apache.spark", f"spark-token-provider-kafka-0-10_{SCALA_BINARY_VERSION}", SPARK_VERSION
        ),
        Coordinate("org.apache.kafka", "kafka-clients", CONNECTOR_KAFKA_CLIENTS_VERSION),
        Coordinate("org.apache.commons", "commons-pool2", COMMONS_POOL2_VERSION),
    ),
    transitive=False,
)

#: A Kafka installation's libs/: the broker and the command-line tools (kafka-topics, kafka-metadata-quorum,
#: kafka-broker-api-versions...), for the offline Kafka image (images/kafka).
KAFKA_DIST = JarSet(
    name="kafka-dist",
    coordinates=(
        Coordinate("org.apache.kafka", f"kafka_{SCALA_BINARY_VERSION}", KAFKA_VERSION),
        Coordinate("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
        Coordinate("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ),
    transitive=True,
)

JAR_SETS: dict[str, JarSet] = {BROKER.name: BROKER, CONNECTOR.name: CONNECTOR, KAFKA_DIST.name: KAFKA_DIST}


def cache_root() -> Path:
    """The cache directory: ``$SLUICE_CACHE_DIR`` if set, else ``~/.cache/sluice``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sluice"


def render_pom(jar_set: JarSet) -> str:
    """A throwaway ``pom.xml`` whose dependencies are the set's coordinates, in order."""
    dependencies = "\n".join(
        "    <dependency>\n"
        f"      <groupId>{escape(c.group_id)}</groupId>\n"
        f"      <artifactId>{escape(c.artifact_id)}</artifactId>\n"
        f"      <version>{escape(c.version)}</version>\n"
        "    </dependency>"
        for c in jar_set.coordinates
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sluice</groupId>
  <artifactId>sluice-{escape(jar_set.name)}-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def mvn_command(mvn: str, pom: Path, output_dir: Path, *, transitive: bool) -> list[str]:
    """The Maven command line that copies the pom's runtime dependencies into ``output_dir``."""
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]
    if not transitive:
        command.append("-DexcludeTransitive=true")
    return command


def find_mvn() -> str:
    """Path to ``mvn`` on PATH, or ArtifactError saying how to install it."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ArtifactError(
            f"Maven ('mvn') is not on PATH; it fetches the pinned jars. To fix, {INSTALL_MAVEN_HINT}."
        )
    return mvn


def _tail(text: str, lines: int = _OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _mvn_failure_hint(output: str) -> str:
    if re.search(r"Could not find artifact|was not found in", output):
        return "a pinned artifact is missing from the repository: check the pins in sluice_local/artifacts.py"
    if re.search(
        r"Could not transfer|UnknownHost|Connection refused|timed out|Network is unreachable", output
    ):
        return "Maven Central is unreachable: check network access (or a mirror in ~/.m2/settings.xml)"
    return "see Maven's output below"


def _read_marker(directory: Path) -> list[Path] | None:
    """The jars a completed cache directory lists, or None if it is missing or incomplete."""
    marker = directory / MARKER_NAME
    if not marker.is_file():
        return None
    jars = [directory / name for name in marker.read_text().split()]
    if not jars or not all(j.is_file() for j in jars):
        return None
    return jars


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_mvn(jar_set: JarSet, work: Path, output_dir: Path) -> None:
    mvn = find_mvn()
    pom = work / "pom.xml"
    pom.write_text(render_pom(jar_set))
    command = mvn_command(mvn, pom, output_dir, transitive=jar_set.transitive)
    try:
        result = subprocess.run(
            command,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        raise ArtifactError(
            f"resolving the {jar_set.name} jars with Maven took over {MVN_TIMEOUT_S} s; "
            f"Maven Central may be unreachable or slow.\nLast Maven output:\n{_tail(output)}"
        ) from exc
    if result.returncode != 0:
        raise ArtifactError(
            f"Maven failed (exit {result.returncode}) resolving the {jar_set.name} jars "
            f"{', '.join(map(str, jar_set.coordinates))}: {_mvn_failure_hint(result.stdout)}.\n"
            f"Command: {' '.join(command)}\nLast Maven output:\n{_tail(result.stdout)}"
        )


def resolve(jar_set: JarSet, *, cache_dir: Path | None = None) -> list[Path]:
    """Jars of ``jar_set`` in the cache, resolving them with Maven first if needed; sorted by file name.

    Idempotent and safe to call from concurrent processes: a completed directory is reused without Maven, and
    a new one appears atomically (rename of a fully populated temp directory holding the marker).
    """
    jars_root = (cache_dir if cache_dir is not None else cache_root()) / "jars"
    final = jars_root / jar_set.cache_key
    cached = _read_marker(final)
    if cached is not None:
        return cached
    jars_root.mkdir(parents=True, exist_ok=True)
    with _file_lock(jars_root / f".{jar_set.cache_key}.lock"):
        cached = _read_marker(final)  # another process may have finished while this one waited
        if cached is not None:
            return cached
        if final.exists():  # incomplete leftovers (e.g. a jar deleted by hand): redo from scratch
            shutil.rmtree(final)
        with tempfile.TemporaryDirectory(prefix=f".tmp-{jar_set.cache_key}-", dir=jars_root) as tmp:
            work = Path(tmp)
            output_dir = work / "jars"
            _run_mvn(jar_set, work, output_dir)
            names = sorted(p.name for p in output_dir.glob("*.jar")) if output_dir.is_dir() else []
            missing = [c.jar_name for c in jar_set.coordinates if c.jar_name not in names]
            if missing:
                raise ArtifactError(
                    f"Maven finished but did not produce {', '.join(missing)} for the {jar_set.name} set "
                    f"(got: {', '.join(names) or 'nothing'})"
                )
            (output_dir / MARKER_NAME).write_text("".join(f"{n}\n" for n in names))
            output_dir.rename(final)
    return [final / n for n in names]


def broker_jars() -> list[Path]:
    """Classpath of a Kafka broker (``kafka.Kafka``) logging via log4j2; resolved into the cache once."""
    return resolve(BROKER)


def connector_jars() -> list[Path]:
    """Jars to add to pyspark (``spark.jars``) for the Kafka source and sink, resolved on first use."""
    return resolve(CONNECTOR)


def parse_java_major(version_output: str) -> int:
    """Major Java version from ``java -version`` output (``"1.8.0_292"`` -> 8, ``"17.0.15"`` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', version_output)
    if match is None:
        raise ArtifactError(
            f"cannot read a Java version from `java -version` output: {version_output.strip()!r}"
        )
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def require_java(min_major: int = 17) -> str:
    """Path to a ``java`` >= ``min_major``: ``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else PATH's."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise ArtifactError(
                f"JAVA_HOME={java_home} has no executable bin/java; "
                f"unset it or point it at a JDK >= {min_major}"
            )
        java_path = str(java)
    else:
        found = shutil.which("java")
        if found is None:
            raise ArtifactError(
                f"Java >= {min_major} is needed but `java` is not on PATH; {INSTALL_JAVA_HINT}"
            )
        java_path = found
    try:
        result = subprocess.run(
            [java_path, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(f"running `{java_path} -version` failed: {exc}") from exc
    major = parse_java_major(result.stderr + result.stdout)
    if major < min_major:
        raise ArtifactError(
            f"{java_path} is Java {major}, but Kafka {KAFKA_VERSION} and Spark {SPARK_VERSION} need "
            f"Java >= {min_major}; {INSTALL_JAVA_HINT}"
        )
    return java_path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``fetch [broker|connector|all] [--dest DIR]`` prints the jar paths (copied to DIR with --dest)."""
    parser = argparse.ArgumentParser(
        prog="python -m sluice_local.artifacts", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="resolve pinned jars into the cache and print their paths")
    fetch.add_argument("which", nargs="?", choices=[*JAR_SETS, "all"], default="all")
    fetch.add_argument(
        "--dest", type=Path, help="also copy the jars into this directory and print those paths"
    )
    args = parser.parse_args(argv)

    names = list(JAR_SETS) if args.which == "all" else [args.which]
    try:
        jars = [jar for name in names for jar in resolve(JAR_SETS[name])]
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dest is not None:
        args.dest.mkdir(parents=True, exist_ok=True)
        jars = [Path(shutil.copy2(jar, args.dest / jar.name)) for jar in jars]
    for jar in jars:
        print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
