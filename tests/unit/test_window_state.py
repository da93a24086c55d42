"""The window snapshots in a job's checkpoint: what a micro-batch starts from, a batch run again, the watermark's
rules, and the checkpoints a job refuses (with a message that says what to do)."""

from __future__ import annotations

import json

import pytest

from spark_jobs import basic, micro_batch, windowed
from spark_jobs.options import CommonOptions, Duration
from spark_jobs.window_state import SNAPSHOTS_KEPT, Snapshot, StateError, WindowStore
from spark_jobs.windows import WindowSpec

pytestmark = pytest.mark.unit

S = Duration.parse
SPEC = WindowSpec("w", "device_id", S("10s"))
ROW = ("w", "d", 0, 10_000_000, 2, 3.0, 0.5, 1.0, 2.0)


def test_watermark_is_latest_event_minus_delay_and_never_moves_back():
    first = Snapshot(-1, delay_ms=10_000)
    assert (first.watermark_ms, first.max_event_ms) == (0, None)  # Spark's: 0 before any event
    a = first.after(0, 50_000)
    assert (a.batch_id, a.watermark_ms, a.max_event_ms) == (0, 40_000, 50_000)
    b = a.after(1, 45_000)  # an older latest event: the watermark stays
    assert (b.watermark_ms, b.max_event_ms) == (40_000, 50_000)
    c = b.after(2, None)  # a batch without events
    assert (c.watermark_ms, c.max_event_ms) == (40_000, 50_000)
    d = Snapshot(2, delay_ms=60_000, watermark_ms=40_000, max_event_ms=50_000).after(3, 90_000)
    assert d.watermark_ms == 40_000  # a longer delay: 90 - 60 = 30 s is behind 40 s, and it never moves back


def test_a_batch_starts_from_the_latest_snapshot_before_it(spark, tmp_path):
    store = WindowStore(spark, str(tmp_path / "windows"), [SPEC], S("10s"))
    assert store.before(0).batch_id == -1 and store.open_windows(store.before(0)).count() == 0
    one = spark.createDataFrame(
        [ROW],
        "aggregation string, group string, window_start long, window_end long, n long, sum double, m2 double, min double, max double",
    )
    store.save(Snapshot(0, 10_000, 5_000, 15_000), one)
    store.save(Snapshot(1, 10_000, 7_000, 17_000), one.limit(0))
    assert store.before(1).batch_id == 0  # batch 1 run again after a crash reads batch 0's snapshot
    assert [tuple(r) for r in store.open_windows(store.before(1)).collect()] == [ROW]
    assert (store.before(2).batch_id, store.before(2).watermark_ms) == (1, 7_000)
    assert store.open_windows(store.before(2)).count() == 0
    # run again, batch 1 overwrites its own snapshot
    store.save(Snapshot(1, 10_000, 8_000, 18_000), one)
    assert store.before(2).watermark_ms == 8_000 and store.open_windows(store.before(2)).count() == 1


def test_old_snapshots_are_removed(spark, tmp_path):
    store = WindowStore(spark, str(tmp_path / "windows"), [SPEC], S("10s"))
    empty = spark.createDataFrame(
        [],
        "aggregation string, group string, window_start long, window_end long, n long, sum double, m2 double, min double, max double",
    )
    for batch in range(SNAPSHOTS_KEPT + 5):
        store.save(Snapshot(batch, 10_000), empty)
    kept = sorted(int(p.stem) for p in (tmp_path / "windows").glob("*.json"))
    assert kept == list(range(4, SNAPSHOTS_KEPT + 5))
    assert sorted(int(p.name) for p in (tmp_path / "windows").iterdir() if p.is_dir()) == kept


def test_a_snapshot_of_other_windows_is_refused_naming_them(spark, tmp_path):
    directory = str(tmp_path / "windows")
    WindowStore(spark, directory, [SPEC], S("10s")).save(
        Snapshot(
            0, 10_000, specs=[{"name": "w", "group": "device_id", "length_ms": 10_000, "slide_ms": 10_000}]
        ),
        spark.createDataFrame(
            [],
            "aggregation string, group string, window_start long, window_end long, n long, sum double, m2 double, min double, max double",
        ),
    )
    longer = WindowStore(spark, directory, [WindowSpec("w", "device_id", S("1m"))], S("10s"))
    with pytest.raises(StateError, match=r"holds windows of w with other lengths.*new checkpoint root"):
        longer.before(1)
    # another watermark delay, or a spec added or dropped, is fine: the watermark moves on, new specs start empty
    assert (
        WindowStore(spark, directory, [SPEC, WindowSpec("x", "status", None)], S("1m")).before(1).delay_ms
        == 60_000
    )


def test_a_snapshot_of_another_format_is_refused(spark, tmp_path):
    directory = tmp_path / "windows"
    directory.mkdir()
    (directory / "0.json").write_text(json.dumps({"batch_id": 0, "delay_ms": 1, "version": 99}))
    with pytest.raises(StateError, match="format 99; this job reads format 1"):
        WindowStore(spark, str(directory), [SPEC], S("10s")).before(1)


def test_the_checkpoint_layout_of_one_query_per_output_is_refused(spark, tmp_path):
    (tmp_path / "windowed" / "dead_letters" / "offsets").mkdir(parents=True)
    (tmp_path / "windowed" / "tumbling" / "offsets").mkdir(parents=True)
    opts = windowed.WindowedOptions(common=CommonOptions(checkpoint_root=str(tmp_path)))
    with pytest.raises(StateError, match=r"earlier layout \(one query per output.*new --checkpoint-root"):
        windowed.start(spark, opts)


def test_event_files_of_another_checkpoint_are_refused(spark, tmp_path):
    opts = basic.BasicOptions(
        common=CommonOptions(checkpoint_root=str(tmp_path / "ckpt")), output_dir=str(tmp_path / "out")
    )
    handler = micro_batch.MicroBatches(spark, basic.plan(opts), opts.common)
    log = tmp_path / "out" / "events" / "_spark_metadata"
    log.mkdir(parents=True, exist_ok=True)  # the sink makes its log directory when it is created
    for batch in (0, 1, 2):
        (log / str(batch)).write_text("v1\n")
    with pytest.raises(
        StateError, match=r"batches up to 2, written with another checkpoint.*new --output-dir"
    ):
        handler(spark.createDataFrame([], "x int"), 0)
