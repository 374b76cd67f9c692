"""Tests of rules.exposure against an exact reference computed here, independently.

The reference is the exact integral of the piecewise-constant held value (each reading held
until the next one, but never longer than max_gap) over [now - window, now], divided by the
full window. The bucketed estimate may err high by at most v_max x bucket width / window and
never low (beyond floating-point error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.exposure import STEL_S, TWA_S, Exposure, Window

EPS = 1e-9


def exact_window(intervals: Sequence[tuple[float, float, float]], now: float, window_s: float) -> float:
    """Exact average of (value, t0, t1) pieces over [now - window_s, now]."""
    lo_w = now - window_s
    total = 0.0
    for v, t0, t1 in intervals:
        lo, hi = max(t0, lo_w), min(t1, now)
        if hi > lo:
            total += v * (hi - lo)
    return total / window_s


def held_pieces(
    readings: Sequence[tuple[float, float]], now: float, max_gap: float
) -> list[tuple[float, float, float]]:
    """Readings (t, v) in time order -> pieces (v, t, end): held until the next reading, max_gap at most."""
    out = []
    for i, (t, v) in enumerate(readings):
        nxt = readings[i + 1][0] if i + 1 < len(readings) else now
        out.append((v, t, min(nxt, t + max_gap, max(now, t))))
    return out


def tol(vmax: float, window_s: float, width: float) -> tuple[float, float]:
    """(allowed below, allowed above) the exact average."""
    fp = EPS * (1.0 + vmax)
    return fp, vmax * width / window_s + fp


# --- worked examples ---


def test_empty_is_zero() -> None:
    e = Exposure()
    assert (e.stel(100.0), e.twa(100.0)) == (0.0, 0.0)


def test_divides_by_the_full_window() -> None:
    """10 ppm for 60 s is 10 * 60 / 900 = 0.667 ppm STEL, not 10 ppm (time before counts as zero)."""
    e = Exposure()
    for t in range(61):
        e = e.add(10.0, float(t), max_gap=5.0)
    assert math.isclose(e.stel(60.0), 10.0 * 60 / STEL_S)
    assert math.isclose(e.twa(60.0), 10.0 * 60 / TWA_S)


def test_value_never_held_across_a_stale_gap() -> None:
    e = Exposure().add(50.0, 0.0, max_gap=5.0).add(0.0, 600.0, max_gap=5.0)
    # 50 ppm held 5 s only, not for the 600 s without readings
    assert math.isclose(e.stel(601.0), 50.0 * 5 / STEL_S)
    assert math.isclose(Exposure().add(50.0, 0.0, max_gap=5.0).stel(600.0), 50.0 * 5 / STEL_S)


def test_steady_value_full_window_is_that_value() -> None:
    e = Exposure()
    for t in range(0, 1801):
        e = e.add(5.0, float(t), max_gap=5.0)
    assert 5.0 - EPS <= e.stel(1800.0) <= 5.0 + 5.0 * 15.0 / STEL_S


def test_old_exposure_leaves_the_window() -> None:
    e = Exposure()
    for t in range(0, 300):
        e = e.add(100.0, float(t), max_gap=5.0)
    e = e.add(0.0, 300.0, max_gap=5.0)
    for t in range(301, 1300):
        e = e.add(0.0, float(t), max_gap=5.0)
    assert e.stel(1300.0) == 0.0
    assert math.isclose(e.twa(1300.0), 100.0 * 300 / TWA_S)


@pytest.mark.parametrize(("window", "n"), [(STEL_S, 60), (TWA_S, 96), (100.0, 5)])
def test_window_single_interval(window: float, n: int) -> None:
    w = Window(window, n).add(3.0, 10.0, 20.0)
    assert math.isclose(w.average(20.0), 30.0 / window)
    assert w.add(3.0, 20.0, 20.0) == w  # empty interval: nothing


# --- properties: Window against the exact integral ---

_WIN = st.sampled_from([(100.0, 5), (STEL_S, 60), (TWA_S, 96), (7.0, 3)])


@st.composite
def window_run(draw: st.DrawFn) -> tuple[float, int, list[tuple[float, float, float]], float]:
    window, n = draw(_WIN)
    t = draw(st.floats(min_value=-2 * window, max_value=2 * window))
    pieces = []
    for _ in range(draw(st.integers(0, 25))):
        t += draw(st.floats(min_value=0.0, max_value=window / 2))
        dur = draw(st.floats(min_value=0.0, max_value=window * 1.5))
        v = draw(st.floats(min_value=0.0, max_value=1000.0))
        pieces.append((v, t, t + dur))
        t += dur
    now = t + draw(st.floats(min_value=0.0, max_value=window * 1.5))
    return window, n, pieces, now


@settings(max_examples=400, deadline=None)
@given(run=window_run())
def test_window_matches_reference_within_bound(run: tuple[float, int, list[tuple[float, float, float]], float]) -> None:
    window, n, pieces, now = run
    w = Window(window, n)
    for v, t0, t1 in pieces:
        w = w.add(v, t0, t1)
        assert len(w.ring) <= n + 1
    vmax = max((v for v, _, _ in pieces), default=0.0)
    below, above = tol(vmax, window, window / n)
    # evaluated at the end of the last piece and later
    for at in {pieces[-1][2] if pieces else now, now}:
        est, ref = w.average(at), exact_window(pieces, at, window)
        assert ref - below <= est <= ref + above, (est, ref)


# --- properties: Exposure (hold, stale gap, pending) against the exact integral ---


@st.composite
def reading_run(draw: st.DrawFn) -> tuple[float, list[tuple[float, float]], list[float]]:
    # stale_after_s is "at most 5 s" by the domain but not enforced by SignalCfg: go past the
    # STEL bucket width (15 s) too
    max_gap = draw(st.one_of(st.floats(min_value=0.5, max_value=5.0), st.floats(min_value=5.0, max_value=60.0)))
    t = draw(st.floats(min_value=0.0, max_value=1e5))
    readings = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.one_of(st.floats(0.0, 6.0), st.floats(6.0, 2000.0)))
        readings.append((t, draw(st.floats(min_value=0.0, max_value=500.0))))
    evals = [t + d for d in draw(st.lists(st.floats(0.0, 2000.0), min_size=1, max_size=4))]
    return max_gap, readings, evals


@settings(max_examples=300, deadline=None)
@given(run=reading_run())
def test_stel_twa_match_reference(run: tuple[float, list[tuple[float, float]], list[float]]) -> None:
    max_gap, readings, evals = run
    e = Exposure()
    for i, (t, v) in enumerate(readings):
        e = e.add(v, t, max_gap=max_gap)
        vmax = max(v for _, v in readings[: i + 1])
        pieces = held_pieces(readings[: i + 1], t, max_gap)
        for est, window, n in ((e.stel(t), STEL_S, 60), (e.twa(t), TWA_S, 96)):
            ref = exact_window(pieces, t, window)
            below, above = tol(vmax, window, window / n)
            assert ref - below <= est <= ref + above, (window, est, ref)
    vmax = max(v for _, v in readings)
    for now in evals:
        pieces = held_pieces(readings, now, max_gap)
        for est, window, n in ((e.stel(now), STEL_S, 60), (e.twa(now), TWA_S, 96)):
            ref = exact_window(pieces, now, window)
            below, above = tol(vmax, window, window / n)
            assert ref - below <= est <= ref + above, (window, est, ref)


# --- memory stays bounded whatever the sequence (times out of order included) ---


@settings(max_examples=300, deadline=None)
@given(
    adds=st.lists(
        st.tuples(st.floats(0.0, 1000.0), st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)),
        max_size=40,
    ),
    win=_WIN,
)
def test_window_ring_bounded_any_sequence(adds: list[tuple[float, float, float]], win: tuple[float, int]) -> None:
    w = Window(*win)
    for v, t0, t1 in adds:
        w = w.add(v, t0, t1)
        assert len(w.ring) <= win[1] + 1


@settings(max_examples=300, deadline=None)
@given(
    readings=st.lists(st.tuples(st.floats(-1e5, 1e5), st.floats(0.0, 1000.0)), max_size=80),
    max_gap=st.floats(0.1, 5.0),
)
def test_exposure_rings_bounded_any_sequence(readings: list[tuple[float, float]], max_gap: float) -> None:
    e = Exposure()
    for t, v in readings:
        e = e.add(v, t, max_gap=max_gap)
        assert len(e.stel_w.ring) <= e.stel_w.n + 1
        assert len(e.twa_w.ring) <= e.twa_w.n + 1


def test_rewinding_clock_does_not_grow_the_ring() -> None:
    """Minimal case: a full STEL ring, then samples with earlier times (a delayed MQTT batch)."""
    e = Exposure()
    for t in range(0, 905, 5):
        e = e.add(1.0, float(t), max_gap=5.0)
    for t in (-100.0, -95.0, -90.0):
        e = e.add(1.0, t, max_gap=5.0)
    assert len(e.stel_w.ring) <= 61


def test_long_hold_outside_the_window_is_not_counted() -> None:
    """Minimal case: max_gap 30 s (> the 15 s STEL bucket), one 100 ppm sample at t=0, STEL at t=930.

    The held piece [0, 30] lies wholly before the window [30, 930]: exact STEL is 0.
    """
    e = Exposure().add(100.0, 0.0, max_gap=30.0)
    assert e.stel(930.0) == 0.0
    assert math.isclose(e.stel(915.0), 100.0 * 15.0 / STEL_S)  # [15, 30] still inside
