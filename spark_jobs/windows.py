"""Event-time window aggregation over micro-batches: the pure part of every job's windows.

Each job reads the source once, so all its windowed aggregations are computed together, in one pass over a
micro-batch: every valid event is expanded into one *contribution* per window it falls in, for every
:class:`WindowSpec` of the job (the aggregation's name is part of each row's key), and the contributions are
aggregated into *partials*: count, sum, sum of squared deviations (M2), minimum and maximum per
``(aggregation, group, window_start)``. A window's partials of successive micro-batches are merged with the
open windows kept from earlier ones (:meth:`Windows.merge`), exactly as Spark's own streaming aggregation merges its
buffers (Chan et al.'s update for M2, sums for the mean), and a window is *final* once the watermark reaches its
end.

The event-time rules are Spark's, and :mod:`spark_jobs.window_state` applies them between micro-batches:

* windows are half-open ``[start, start + length)``, aligned to the epoch, one starting every ``slide``;
* the watermark in force during a micro-batch is the largest event time of the earlier micro-batches (in whole
  milliseconds) minus the delay, and never moves back (0, the epoch, before any event);
* a contribution to a window whose end is ``<=`` the watermark in force is dropped as late (the event still
  counts in those of its windows that are open);
* append mode writes a window once, when the new watermark reaches its end; update mode writes every window a
  micro-batch changed.

Everything here is a ``DataFrame -> DataFrame`` transform over Spark's native functions; nothing reads or writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.options import Duration

#: The key of a partial or of an open window: which aggregation, which group, which window.
KEY = ("aggregation", "group", "window_start")
#: What a partial or an open window holds besides its key.
BUFFER = ("window_end", "n", "sum", "m2", "min", "max")
#: Partials also say the latest event time they saw (for the watermark).
PARTIAL_COLUMNS = (*KEY, *BUFFER, "max_event_time")

_MICROS_PER_MS = 1000


@dataclass(frozen=True)
class WindowSpec:
    """One windowed aggregation of a job: events grouped by ``group`` (a column of the events) in windows of
    ``length`` starting every ``slide`` (tumbling when ``slide`` is None). ``length`` None means one all-time
    group per value of ``group`` that never closes (a running total)."""

    name: str
    group: str
    length: Duration | None
    slide: Duration | None = None

    @property
    def step(self) -> Duration | None:
        """How often a window starts (the length for tumbling windows)."""
        return self.slide or self.length

    @property
    def windows_per_event(self) -> int:
        """How many windows an event falls in: ceil(length / slide)."""
        if self.length is None:
            return 1
        return math.ceil(self.length.millis / self.step.millis)


def _micros(duration: Duration) -> int:
    return duration.millis * _MICROS_PER_MS


#: ``aggregation`` of the digest rows that carry a non-event row through (e.g. a dead letter).
PASSTHROUGH = "passthrough"


class Windows:
    """The window arithmetic of a set of specs, its column expressions built once.

    A job applies the same expressions to every micro-batch: building them is work for the Python driver (each
    function call is a round trip to the JVM), so it is done once per job, not once per micro-batch.
    """

    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        self.specs = tuple(specs)
        self._candidates = self._candidate_columns()
        self._uneven = any(s.length is not None and s.length.millis % s.step.millis for s in self.specs)
        count = F.count(F.lit(1))
        self._aggregates = [
            count.alias("n"),
            F.sum("value").alias("sum"),
            (F.var_pop("value") * count).alias("m2"),
            F.min("value").alias("min"),
            F.max("value").alias("max"),
            F.max("event_time").alias("max_event_time"),
        ]
        self._partial_columns = [*KEY, self._window_end().alias("window_end"), *BUFFER[1:], "max_event_time"]
        self._merge_sides = (
            [*KEY, *BUFFER, F.lit(False).alias("new")],
            [*KEY, *BUFFER, F.lit(True).alias("new")],
        )
        self._merge_aggregates = _merge_aggregates()
        self._merge_columns = _merge_columns()
        self._value_columns = _value_columns()

    def _candidate_columns(self) -> list[Column]:
        """``(aggregation, group, window_start)`` of every window of every spec that could hold a row's event.

        The last window starting at or before the event starts at ``time - pmod(time, slide)``; the others start
        one slide earlier each. When the slide does not divide the length, the earliest candidate may end at or
        before the event: it is null then, and is dropped. All-time specs have a null ``window_start``.
        """
        time_us = F.unix_micros("event_time")
        candidates = []
        for spec in self.specs:
            group = F.col(spec.group).cast("string")
            if spec.length is None:
                starts = [(F.lit(None).cast("long"), None)]
            else:
                step, length = _micros(spec.step), _micros(spec.length)
                last = time_us - F.pmod(time_us, F.lit(step))
                starts = []
                for i in range(spec.windows_per_event):
                    start = last - F.lit(i * step)
                    misses = length % step and i == spec.windows_per_event - 1
                    starts.append((start, start + F.lit(length) > time_us if misses else None))
            for start, holds in starts:
                candidate = F.struct(
                    F.lit(spec.name).alias("aggregation"), group.alias("group"), start.alias("window_start")
                )
                candidates.append(candidate if holds is None else F.when(holds, candidate))
        return candidates

    def _window_end(self) -> Column:
        """The end of each row's window (microseconds), from its aggregation's length; null for all-time groups."""
        end = None
        for spec in self.specs:
            if spec.length is None:
                continue
            this = F.col("window_start") + F.lit(_micros(spec.length))
            condition = F.col("aggregation") == spec.name
            end = F.when(condition, this) if end is None else end.when(condition, this)
        return F.lit(None).cast("long") if end is None else end

    @staticmethod
    def _expand(rows: DataFrame, array: Column, **extra: Column) -> DataFrame:
        kept = [column.alias(name) for name, column in extra.items()]
        exploded = rows.select(F.explode(array).alias("c"), "value", "event_time", *kept)
        return exploded.where(F.col("c").isNotNull()).select("c.*", "value", "event_time", *extra)

    def contributions(self, events: DataFrame) -> DataFrame:
        """One row per event and window it falls in, for every spec: ``aggregation, group, window_start``
        (microseconds since the epoch; null for all-time groups), ``value, event_time``.

        ``events`` has at least ``event_time`` (timestamp), ``value`` (double) and each spec's group column.
        """
        return self._expand(events, F.array(*self._candidates))

    def partials(self, rows: DataFrame) -> DataFrame:
        """Aggregate :meth:`contributions` by key: :data:`PARTIAL_COLUMNS`."""
        return rows.groupBy(*KEY).agg(*self._aggregates).select(*self._partial_columns)

    def digester(self, *, is_event: Column, passthrough_key: Column, passthrough: Column) -> Digester:
        """:meth:`Digester.digest` for rows whose events ``is_event`` tells apart (see there)."""
        return Digester(self, is_event=is_event, passthrough_key=passthrough_key, passthrough=passthrough)

    def merge(self, open_windows: DataFrame, batch: DataFrame) -> DataFrame:
        """Merge a micro-batch's partials into the open windows: ``KEY, BUFFER`` and ``updated`` (the batch changed
        the window). Either side may be missing for a key; counts add, sums add, extremes combine, and M2 follows
        Spark's CentralMomentAgg merge: ``m2 = m2_a + m2_b + delta * (delta / n) * n_a * n_b`` with
        ``delta = mean_b - mean_a``.

        A key has at most one row on each side, so the two sides are unioned and grouped by key (one shuffle, where
        a full outer join would shuffle both sides), each side's buffer picked out by its ``new`` flag."""
        a, b = open_windows.select(*self._merge_sides[0]), batch.select(*self._merge_sides[1])
        merged = a.unionByName(b).groupBy(*KEY).agg(*self._merge_aggregates)
        return merged.select(*self._merge_columns)

    def values(self, windows: DataFrame) -> DataFrame:
        """Open or final windows (``KEY, BUFFER``) as the jobs report them: ``aggregation, group, window_start,
        window_end`` (timestamps) and ``record_count, avg_value, stddev_value, min_value, max_value``.

        ``stddev_value`` is the sample standard deviation, null for a one-event window (as Spark's
        ``stddev_samp``)."""
        return windows.select(*self._value_columns)

    def aggregate(self, events: DataFrame) -> DataFrame:
        """Every window over a bounded DataFrame of events, all at once (no watermark): :meth:`values` of their
        partials. For tests, and for the benchmark's batch ceiling."""
        return self.values(self.partials(self.contributions(events)))


class Digester:
    """Everything a micro-batch contributes, from one pass over its rows (one scan of the source):

    * for each window the batch's events fall in: its partial (:data:`PARTIAL_COLUMNS`);
    * for each row that is not an event: one row ``aggregation = "passthrough"``, ``group = passthrough_key``
      (unique per row), carrying ``passthrough`` (a struct) in the column of that name.

    Rows have ``event_time``, ``value`` and the specs' group columns, filled for the rows ``is_event`` holds. A
    window's contributions of one batch are all late or all on time (that depends on its end and the watermark in
    force only), so lateness is decided on the partials, by :func:`closed`.
    """

    def __init__(
        self, windows: Windows, *, is_event: Column, passthrough_key: Column, passthrough: Column
    ) -> None:
        self._windows = windows
        other = F.struct(
            F.lit(PASSTHROUGH).alias("aggregation"),
            passthrough_key.cast("string").alias("group"),
            F.lit(None).cast("long").alias("window_start"),
        )
        self._array = F.when(is_event, F.array(*windows._candidates)).otherwise(F.array(other))
        self._passthrough = F.when(~is_event, passthrough)
        self._columns = [*windows._partial_columns, PASSTHROUGH]

    def digest(self, rows: DataFrame) -> DataFrame:
        # The pass-through struct is a grouping column (null for events, unique per row otherwise), not an
        # aggregate: aggregates of binary or nested types would turn the hash aggregation into a sort-based one.
        expanded = Windows._expand(rows, self._array, **{PASSTHROUGH: self._passthrough})
        grouped = expanded.groupBy(*KEY, PASSTHROUGH).agg(*self._windows._aggregates)
        return grouped.select(*self._columns)


def _merge_aggregates() -> list[Column]:
    """Each side's buffer of a key (null where the side has no row), from the union of both sides."""
    new = F.col("new")
    side = {"a": ~new, "b": new}
    return [
        F.max("window_end").alias("a_window_end"),
        F.lit(None).cast("long").alias("b_window_end"),
        *[
            F.max(F.when(is_side, F.col(c))).alias(f"{name}_{c}")
            for name, is_side in side.items()
            for c in BUFFER[1:]
        ],
    ]


def _merge_columns() -> list[Column]:
    na, nb = F.coalesce(F.col("a_n"), F.lit(0)), F.coalesce(F.col("b_n"), F.lit(0))
    n = na + nb
    delta = F.col("b_sum") / F.col("b_n") - F.col("a_sum") / F.col("a_n")
    both = F.col("a_n").isNotNull() & F.col("b_n").isNotNull()
    m2 = F.when(
        both, F.col("a_m2") + F.col("b_m2") + delta * (delta / n) * na.cast("double") * nb.cast("double")
    ).otherwise(F.coalesce(F.col("a_m2"), F.col("b_m2")))

    def either(op, name: str) -> Column:
        first, second = F.col(f"a_{name}"), F.col(f"b_{name}")
        return F.when(both, op(first, second)).otherwise(F.coalesce(first, second))

    return [
        *KEY,
        F.coalesce(F.col("a_window_end"), F.col("b_window_end")).alias("window_end"),
        n.alias("n"),
        either(lambda x, y: x + y, "sum").alias("sum"),
        m2.alias("m2"),
        either(F.least, "min").alias("min"),
        either(F.greatest, "max").alias("max"),
        F.col("b_n").isNotNull().alias("updated"),
    ]


def _value_columns() -> list[Column]:
    n = F.col("n")
    return [
        "aggregation",
        "group",
        F.timestamp_micros("window_start").alias("window_start"),
        F.timestamp_micros("window_end").alias("window_end"),
        n.alias("record_count"),
        (F.col("sum") / n).alias("avg_value"),
        F.when(n > 1, F.sqrt(F.col("m2") / (n - 1))).alias("stddev_value"),
        F.col("min").alias("min_value"),
        F.col("max").alias("max_value"),
    ]


def closed(watermark_ms: int) -> Column:
    """True for a window that the watermark ``watermark_ms`` has closed (its end is at or before it)."""
    return F.col("window_end").isNotNull() & (F.col("window_end") <= F.lit(watermark_ms * _MICROS_PER_MS))


def contributions(events: DataFrame, specs: Sequence[WindowSpec]) -> DataFrame:
    """:meth:`Windows.contributions` of ``specs``."""
    return Windows(specs).contributions(events)


def partials(rows: DataFrame, specs: Sequence[WindowSpec]) -> DataFrame:
    """:meth:`Windows.partials` of ``specs``."""
    return Windows(specs).partials(rows)


def digest(
    rows: DataFrame,
    specs: Sequence[WindowSpec],
    *,
    is_event: Column,
    passthrough_key: Column,
    passthrough: Column,
) -> DataFrame:
    """:meth:`Digester.digest` of ``specs``."""
    return (
        Windows(specs)
        .digester(is_event=is_event, passthrough_key=passthrough_key, passthrough=passthrough)
        .digest(rows)
    )


def merge(open_windows: DataFrame, batch: DataFrame) -> DataFrame:
    """:meth:`Windows.merge` (it does not depend on the specs)."""
    return Windows(()).merge(open_windows, batch)


def window_values(windows: DataFrame) -> DataFrame:
    """:meth:`Windows.values` (it does not depend on the specs)."""
    return Windows(()).values(windows)


def aggregate(events: DataFrame, specs: Sequence[WindowSpec]) -> DataFrame:
    """:meth:`Windows.aggregate` of ``specs``."""
    return Windows(specs).aggregate(events)


def of(values: DataFrame, spec: WindowSpec) -> DataFrame:
    """The windows of one spec, with its group column under its own name (``device_id`` or ``status``)."""
    return values.where(F.col("aggregation") == spec.name).withColumnRenamed("group", spec.group)
