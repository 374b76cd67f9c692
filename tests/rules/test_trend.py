"""rules.trend: bounded minute rings, checked against a plain reference computation."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.trend import SLOTS, MinutePoint, MinuteRing, Trends, minute_of


def reference(feed: list[tuple[float, int]]) -> dict[int, list[float]]:
    """Accepted values per minute: a value is kept unless 24 h older than the newest minute."""
    latest: int | None = None
    kept: dict[int, list[float]] = defaultdict(list)
    for v, m in feed:
        if not math.isfinite(v) or (latest is not None and m <= latest - SLOTS):
            continue
        latest = m if latest is None else max(latest, m)
        kept[m].append(v)
    if latest is None:
        return {}
    return {m: vs for m, vs in sorted(kept.items()) if m > latest - SLOTS}


values = st.floats(-1e6, 1e6) | st.sampled_from([math.nan, math.inf])


@settings(max_examples=200, deadline=None)
@given(feed=st.lists(st.tuples(values, st.integers(0, 5000)) | st.tuples(values, st.integers(0, 30)), max_size=300))
def test_ring_matches_reference_and_never_grows(feed: list[tuple[float, int]]) -> None:
    ring = MinuteRing()
    for v, m in feed:
        ring.add(v, m)
        assert ring.slots == SLOTS
    got = ring.series()
    assert len(got) <= SLOTS
    want = reference(feed)
    assert [p.minute for p in got] == list(want)
    for p in got:
        vs = want[p.minute]
        assert (p.min, p.max, p.count) == (min(vs), max(vs), len(vs))
        assert p.mean == pytest.approx(math.fsum(vs) / len(vs), rel=1e-9, abs=1e-6)


def test_old_slot_is_overwritten_and_too_old_values_dropped() -> None:
    ring = MinuteRing()
    assert ring.add(1.0, 10) and ring.add(3.0, 10)
    assert ring.series() == [MinutePoint(10, 1.0, 3.0, 2.0, 2)]
    assert ring.add(7.0, 10 + SLOTS)  # same slot, 24 h later
    assert ring.series() == [MinutePoint(10 + SLOTS, 7.0, 7.0, 7.0, 1)]
    assert not ring.add(5.0, 10)  # 24 h older than the newest: dropped
    assert ring.add(5.0, 11)  # 1439 minutes older: still inside the window
    assert [p.minute for p in ring.series()] == [11, 10 + SLOTS]
    assert not ring.add(math.nan, 20)
    assert ring.latest == 10 + SLOTS


def test_series_until_shows_the_gap_of_a_silent_point() -> None:
    ring = MinuteRing()
    for m in range(100):
        ring.add(float(m), m)
    assert len(ring.series()) == 100
    assert [p.minute for p in ring.series(until=99 + SLOTS - 10)] == list(range(90, 100))
    assert ring.series(until=99 + SLOTS) == []
    assert MinuteRing().series() == []


def test_minute_of() -> None:
    assert [minute_of(s) for s in (0.0, 59.999, 60.0, 1_700_000_000.0, -0.5)] == [0, 0, 1, 28_333_333, -1]


def test_trends_refuse_unknown_points() -> None:
    t = Trends(["vib1", "temp1"])
    assert t.points == ("vib1", "temp1")
    assert t.add("vib1", 1.5, 3) and not t.add("nope", 1.0, 3)
    assert t.series("vib1") == [MinutePoint(3, 1.5, 1.5, 1.5, 1)]
    assert t.series("temp1") == []
    with pytest.raises(KeyError, match="unknown point 'nope'"):
        t.series("nope")


def test_a_day_of_seconds_stays_bounded() -> None:
    ring = MinuteRing()
    for s in range(0, 3 * 86_400, 7):  # three days, a value every 7 s
        ring.add(float(s % 600), minute_of(float(s)))
    got = ring.series()
    assert len(got) == SLOTS and ring.slots == SLOTS
    assert got[0].minute == got[-1].minute - SLOTS + 1
    assert all(8 <= p.count <= 9 for p in got)
