"""A job's open windows and watermark, kept in its checkpoint between micro-batches.

Layout, under the job's checkpoint directory (next to Spark's own ``offsets/`` and ``commits/``)::

    windows/<batch>/part-*.parquet   the windows still open after micro-batch <batch> (KEY, BUFFER)
    windows/<batch>.json             what else the job knows after it: watermark, latest event time, specs

A micro-batch reads the snapshot of the latest batch before its own id and writes its own; the JSON appears last
(written aside, then renamed), so a snapshot is whole or absent. A micro-batch that Spark runs again after a crash
(same id, same offsets) reads the same earlier snapshot and overwrites its own: the state a batch starts from never
depends on how often it ran. Older snapshots are removed, keeping :data:`SNAPSHOTS_KEPT`.

Files go through Hadoop's FileSystem API, so a checkpoint root may be any URI Spark's checkpoints accept.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from spark_jobs.options import Duration
from spark_jobs.windows import BUFFER, KEY, WindowSpec

FORMAT_VERSION = 1
#: Snapshots kept besides the latest (Spark keeps 100 batches of its own logs by default).
SNAPSHOTS_KEPT = 10
OPEN_WINDOWS_SCHEMA = (
    "aggregation string, group string, window_start bigint, window_end bigint, n bigint, sum double, "
    "m2 double, min double, max double"
)


class StateError(RuntimeError):
    """The checkpoint's window state cannot be used by this job; the message says why and what to do."""


def _spec_description(spec: WindowSpec) -> dict:
    return {
        "name": spec.name,
        "group": spec.group,
        "length_ms": None if spec.length is None else spec.length.millis,
        "slide_ms": None if spec.step is None else spec.step.millis,
    }


@dataclass(frozen=True)
class Snapshot:
    """What a job knows after a micro-batch, besides its open windows.

    ``watermark_ms`` is the watermark in force for the next micro-batch; ``max_event_ms`` the latest event time
    seen so far (None before the first event).
    """

    batch_id: int
    delay_ms: int
    watermark_ms: int = 0
    max_event_ms: int | None = None
    specs: list[dict] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def after(self, batch_id: int, batch_max_event_ms: int | None) -> Snapshot:
        """The snapshot after ``batch_id``, whose latest event time is ``batch_max_event_ms`` (None: no events).

        As Spark's watermark: the largest event time seen, minus the delay, and never lower than before.
        """
        latest = self.max_event_ms
        if batch_max_event_ms is not None:
            latest = batch_max_event_ms if latest is None else max(latest, batch_max_event_ms)
        watermark = self.watermark_ms
        if latest is not None:
            watermark = max(watermark, latest - self.delay_ms)
        return Snapshot(batch_id, self.delay_ms, watermark, latest, self.specs)


class _Files:
    """The few Hadoop FileSystem calls the store needs, through the session's JVM."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._root = jvm.org.apache.hadoop.fs.Path(root)
        self._fs = self._root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def path(self, name: str):
        return self._jvm.org.apache.hadoop.fs.Path(self._root, name)

    def uri(self, name: str) -> str:
        return self.path(name).toString()

    def names(self) -> list[str]:
        if not self._fs.exists(self._root):
            return []
        return [status.getPath().getName() for status in self._fs.listStatus(self._root)]

    def modified_ms(self, name: str) -> int:
        """When ``name`` was last written, in milliseconds since the epoch."""
        return int(self._fs.getFileStatus(self.path(name)).getModificationTime())

    def read_text(self, name: str) -> str:
        stream = self._fs.open(self.path(name))
        try:
            return self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def write_text(self, name: str, text: str) -> None:
        """Write ``name`` whole or not at all: aside first, then renamed over any earlier file."""
        aside = self.path(f".{name}.{uuid.uuid4().hex}.tmp")
        stream = self._fs.create(aside, True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
        self.replace(aside, self.path(name))

    def replace(self, source, target) -> None:
        if self._fs.exists(target):
            self._fs.delete(target, True)
        if not self._fs.rename(source, target):
            raise StateError(f"cannot rename {source} to {target}")

    def delete(self, name: str) -> None:
        self._fs.delete(self.path(name), True)

    def size(self, name: str) -> int:
        """Bytes under ``name`` (a file, or a directory's files)."""
        return int(self._fs.getContentSummary(self.path(name)).getLength())


def checkpoint_entries(spark: SparkSession, directory: str) -> list[str]:
    """The names in a checkpoint directory (empty when it does not exist)."""
    return _Files(spark, directory).names()


@dataclass(frozen=True)
class Commit:
    """The last micro-batch a streaming query committed: its id, the source offsets it read up to
    (``{"topic": {"0": 120, ...}}``, Spark's offset log) and when Spark committed it (ms since the epoch)."""

    batch_id: int
    offsets: dict
    committed_ms: int


def last_commit(spark: SparkSession, directory: str) -> Commit | None:
    """The last micro-batch the streaming query checkpointed in ``directory`` committed; None when it committed
    none (or read no source)."""
    commit_log = _Files(spark, f"{directory}/commits")
    commits = [int(n) for n in commit_log.names() if n.isdigit()]
    if not commits:
        return None
    batch_id = max(commits)
    lines = _Files(spark, f"{directory}/offsets").read_text(str(batch_id)).splitlines()
    # Spark's offset log: a version line, the batch's metadata, then one line per source ("-" for none).
    if len(lines) < 3 or lines[2].strip() in {"", "-"}:
        return None
    return Commit(batch_id, json.loads(lines[2]), commit_log.modified_ms(str(batch_id)))


def committed_offsets(spark: SparkSession, directory: str) -> dict | None:
    """Where the streaming query checkpointed in ``directory`` had got to: the source offsets its last committed
    micro-batch read up to (``{"topic": {"0": 120, ...}}``), None when it committed none."""
    found = last_commit(spark, directory)
    return None if found is None else found.offsets


class WindowStore:
    """The open windows and the watermark of one job, one snapshot per micro-batch (see the module docstring)."""

    def __init__(
        self, spark: SparkSession, directory: str, specs: Sequence[WindowSpec], watermark: Duration
    ) -> None:
        self._spark = spark
        self._directory = directory
        self._files = _Files(spark, directory)
        self._specs = [_spec_description(s) for s in specs]
        self._delay_ms = watermark.millis

    def _batches(self) -> list[int]:
        names = self._files.names()
        return sorted(int(n[: -len(".json")]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def before(self, batch_id: int) -> Snapshot:
        """The snapshot a micro-batch starts from: the latest one before ``batch_id``, or the initial one.

        The job's current watermark delay and specs apply from here on: a new delay moves the watermark from the
        next event on (it never moves back), as it does in Spark.
        """
        earlier = [b for b in self._batches() if b < batch_id]
        if not earlier:
            return Snapshot(-1, self._delay_ms, specs=self._specs)
        snapshot = Snapshot(**json.loads(self._files.read_text(f"{earlier[-1]}.json")))
        self._check(snapshot)
        return replace(snapshot, delay_ms=self._delay_ms, specs=self._specs)

    def _check(self, snapshot: Snapshot) -> None:
        where = f"the checkpoint {self._directory}"
        if snapshot.version != FORMAT_VERSION:
            raise StateError(
                f"{where} holds window state of format {snapshot.version}; this job reads format "
                f"{FORMAT_VERSION}. Start the job on a new checkpoint root."
            )
        saved = {s["name"]: s for s in snapshot.specs}
        changed = [s["name"] for s in self._specs if s["name"] in saved and saved[s["name"]] != s]
        if changed:
            raise StateError(
                f"{where} holds windows of {', '.join(changed)} with other lengths, slides or groups than "
                f"the job's flags now give ({saved[changed[0]]} before, now "
                f"{next(s for s in self._specs if s['name'] == changed[0])}). Restore the earlier flags or "
                "start on a new checkpoint root."
            )

    def open_windows(self, snapshot: Snapshot) -> DataFrame:
        """The windows open after ``snapshot``'s micro-batch (empty for the initial snapshot), of this job's
        specs only (those no longer configured are dropped)."""
        if snapshot.batch_id < 0:
            return self._spark.createDataFrame([], OPEN_WINDOWS_SCHEMA)
        windows = self._spark.read.schema(OPEN_WINDOWS_SCHEMA).parquet(
            self._files.uri(str(snapshot.batch_id))
        )
        return windows.where(F.col("aggregation").isin([s["name"] for s in self._specs]))

    def save(self, snapshot: Snapshot, open_windows: DataFrame) -> tuple[int, int]:
        """Write ``snapshot`` and its open windows; then drop snapshots older than the last few. The number of
        open windows and the bytes of their snapshot."""
        name = str(snapshot.batch_id)
        self._files.delete(f"{name}.json")  # a batch run again: its earlier snapshot is invalid from here on
        aside = f".{name}.{uuid.uuid4().hex}.tmp"
        counted = Observation(f"open_windows_{uuid.uuid4().hex}")  # unique: jobs may share a session
        rows = open_windows.select(*KEY, *BUFFER).observe(counted, F.count(F.lit(1)).alias("rows"))
        rows.coalesce(1).write.parquet(self._files.uri(aside))
        self._files.replace(self._files.path(aside), self._files.path(name))
        size = self._files.size(name)
        self._files.write_text(f"{name}.json", json.dumps(asdict(snapshot)))
        for old in self._batches()[: -SNAPSHOTS_KEPT - 1]:
            self._files.delete(f"{old}.json")
            self._files.delete(str(old))
        return int(counted.get["rows"]), size
