"""A job's progress from Kafka's offsets, and the verdict against the SLO: every figure worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sluice_operator.progress import (
    Commit,
    Progress,
    Reading,
    Slo,
    consumer_group,
    judge,
    progress,
    rate_base,
    read_metadata,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_jobs_metadata_is_read_and_foreign_metadata_is_ignored():
    text = '{"v":1,"batch":7,"at":1796644800000,"watermark":1796644790000}'
    assert read_metadata(text) == Commit(
        batch_id=7,
        at=datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC),  # 1_796_644_800 s after the epoch
        watermark=datetime(2026, 12, 7, 11, 59, 50, tzinfo=UTC),
    )
    assert read_metadata('{"v": 1, "batch": 0, "at": 0, "watermark": null}').watermark is None
    for foreign in (None, "", "x", "[]", '{"v": 2, "batch": 1, "at": 0}', '{"v": 1, "batch": "b", "at": 0}'):
        assert read_metadata(foreign) is None, foreign


def test_lag_counts_per_partition_from_the_committed_or_the_earliest_offset():
    reading = Reading(
        at=T0,
        end={0: 100, 1: 50, 2: 30, 3: 10},
        start={0: 0, 1: 20, 2: 0, 3: 0},
        # 0: 100 - 60 = 40; 1: none committed, from the earliest held: 50 - 20 = 30; 2: committed beyond the end
        # (the topic made anew): 0; 3: committed below the earliest held (records gone since), from it: 10 - 0 = 10.
        committed={0: 60, 2: 35, 3: -1},
    )
    assert reading.lag == 40 + 30 + 0 + 10


def test_rates_come_from_two_readings_and_freshness_from_the_watermark():
    commit = Commit(batch_id=3, at=at(18), watermark=at(-12))
    before = Reading(at=T0, end={0: 1_000, 1: 1_000}, start={0: 0, 1: 0}, committed={0: 900, 1: 950})
    now = Reading(
        at=at(20), end={0: 1_600, 1: 1_400}, start={0: 0, 1: 0}, committed={0: 1_500, 1: 1_350}, commit=commit
    )
    # written 2,000 -> 3,000 in 20 s: 50/s; processed 1,850 -> 2,850: 50/s; lag 100 + 50.
    assert progress(now, before) == Progress(
        lag_records=150,
        input_rate=50.0,
        processed_rate=50.0,
        last_progress=at(18),
        freshness_seconds=32.0,
        waiting_since=at(20),  # records wait, and no earlier pass saw them waiting
    )


def test_without_a_previous_reading_or_after_offsets_went_back_there_is_no_rate():
    now = Reading(at=at(10), end={0: 10}, start={0: 0}, committed={0: 5})
    assert progress(now) == Progress(lag_records=5, waiting_since=at(10))
    went_back = Reading(at=T0, end={0: 500}, start={0: 0}, committed={0: 400})
    assert progress(now, went_back) == Progress(lag_records=5, waiting_since=at(10))


def test_records_wait_since_the_first_pass_that_saw_them_until_one_sees_none():
    def seen(seconds: float, committed: int) -> Reading:
        return Reading(at=at(seconds), end={0: 100}, start={0: 0}, committed={0: committed})

    first = progress(seen(0, 90))
    assert first.waiting_since == at(0)
    assert progress(seen(10, 95), earlier=first).waiting_since == at(0)  # still waiting: since 0 s
    caught_up = progress(seen(20, 100), earlier=first)
    assert caught_up.waiting_since is None
    assert progress(seen(30, 99), earlier=caught_up).waiting_since == at(30)  # waiting anew


SLO = Slo(stall_seconds=300, max_lag_records=1_000, max_freshness_seconds=60)
STARTED, NOW = at(0), at(400)


def verdict(lag, *, last=None, fresh=None, running_since=STARTED, now=NOW, slo=SLO, waiting_since=None):
    return judge(
        Progress(lag_records=lag, last_progress=last, freshness_seconds=fresh, waiting_since=waiting_since),
        slo=slo,
        running_since=running_since,
        now=now,
    )


def test_a_job_with_nothing_waiting_progresses_however_long_ago_it_committed():
    v = verdict(0, last=at(-10_000))
    assert (v.progressing, v.stalled, v.lagging, v.message) == (True, False, False, "caught up")


def test_a_running_job_with_input_waiting_stalls_after_stall_seconds_without_a_commit():
    # last commit at 100 s, now 399 s: 299 s idle, not yet; at 400 s: 300 s, stalled.
    assert not verdict(5, last=at(100), now=at(399)).stalled
    v = verdict(5, last=at(100), now=at(400))
    assert (v.progressing, v.stalled) == (False, True)
    assert v.message == "5 records waiting and no micro-batch committed in the last 300 s (stallSeconds: 300)"


def test_a_job_restarted_after_its_last_commit_gets_stall_seconds_from_its_start():
    # committed at 0 s, restarted at 200 s: at 400 s it has been idle 200 s since its start, not stalled.
    assert not verdict(5, last=at(0), running_since=at(200), now=at(400)).stalled
    # never committed, started at 0 s: stalled at 300 s.
    assert verdict(5, last=None, running_since=at(0), now=at(300)).stalled


def test_a_job_idle_for_long_gets_stall_seconds_from_when_records_began_to_wait():
    # last commit at 0 s (nothing came since), records waiting since 350 s: at 400 s it is not stalled
    assert not verdict(5, last=at(0), waiting_since=at(350), now=at(400)).stalled
    assert verdict(5, last=at(0), waiting_since=at(350), now=at(650)).stalled


def test_a_job_that_is_not_running_is_not_progressing_and_not_stalled():
    v = verdict(5, last=at(-1_000), running_since=None)
    assert (v.progressing, v.stalled) == (False, False)
    assert v.message == "5 records waiting and the job is not running"


def test_lagging_names_each_bound_exceeded_and_only_those_set():
    v = verdict(1_001, last=at(390), fresh=61.0)
    assert (v.progressing, v.lagging) == (True, True)
    assert v.message == (
        "1001 records behind; more than maxLagRecords (1000); outputs 61 s old, more than maxFreshnessSeconds (60)"
    )
    assert not verdict(1_000, last=at(390), fresh=60.0).lagging  # the bounds themselves are within
    assert not verdict(10**9, last=at(390), fresh=10**6, slo=Slo(stall_seconds=300)).lagging


def test_rates_are_measured_over_five_seconds_at_least_and_the_base_reading_waits_for_that():
    def reading(seconds: float, written: int) -> Reading:
        return Reading(at=at(seconds), end={0: written}, start={0: 0}, committed={0: written})

    first, soon, later = reading(0, 100), reading(2, 120), reading(10, 300)
    # 2 s after the base: no rate yet, and the base stays
    assert progress(soon, first).input_rate is None
    assert rate_base(first, soon) is first
    # 10 s after it: (300 - 100) / 10 = 20/s, and the later reading becomes the base
    assert progress(later, first).input_rate == 20.0
    assert rate_base(first, later) is later
    assert rate_base(None, soon) is soon


def test_the_consumer_group_names_namespace_pipeline_and_job():
    assert (
        consumer_group(namespace="team-a", pipeline="lab.v2", job="windowed")
        == "sluice.team-a.lab.v2.windowed"
    )
