"""Table and property tests of rules.gas: the per-signal ALMA alarm machine, pure.

Trip at once and inclusively at the limit, clear only past the deadband, latching levels
stay until an acknowledgement given after the return, and BAD / over-range / stale inputs
are a latched fault (never "safe").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import gas
from rules.config import Basis, Direction, Severity, SignalCfg
from rules.events import Quality, Reading
from rules.gas import FaultState, LevelState, SignalState
from rules.profiles import resolve

USER, UTC = "alice", "2024-05-01T10:00:00Z"

# (profile, quantity, unit) -> a value far from every limit
NORMAL = {"o2": 20.9, "lel": 0.0, "h2s": 0.0, "co": 0.0}
SIGNALS = [
    ("osha", "o2", "%vol"),
    ("osha", "lel", "%LEL"),
    ("osha", "h2s", "ppm"),
    ("osha", "co", "ppm"),
    ("gb", "o2", "%vol"),
    ("gb", "lel", "%LEL"),
    ("gb", "h2s", "mg/m3"),
    ("gb", "co", "mg/m3"),
    ("gb", "h2s", "ppm"),  # GB limits converted: 10 mg/m3 = 7.17 ppm
    ("gb", "co", "ppm"),  # 20 mg/m3 = 17.46 ppm
]


def sig(profile: str, q: str, unit: str, stale_after_s: float = 5.0) -> SignalCfg:
    r = resolve(profile, q, unit)
    return SignalCfg(
        id=q,
        quantity=q,
        unit=unit,
        zone="cs1",
        device="det1",
        limits=r.limits,
        stale_after_s=stale_after_s,
        hot_work_max=r.hot_work_max,
        over_range=r.over_range,
    )


def instant_levels() -> list[tuple[str, str, str, str]]:
    out = []
    for profile, q, unit in SIGNALS:
        for lim in sig(profile, q, unit).limits:
            if lim.basis is Basis.INSTANT:
                out.append((profile, q, unit, lim.name))
    return out


class Runner:
    """Feeds one signal readings one second apart (time injected, nothing else)."""

    def __init__(self, cfg: SignalCfg, t: float = 0.0) -> None:
        self.cfg, self.t = cfg, t
        self.st = gas.initial(cfg)

    def read(self, v: float, dt: float = 1.0) -> SignalState:
        self.t += dt
        self.st = gas.on_reading(self.st, Reading(self.cfg.id, v, self.t), self.cfg)
        return self.st

    def bad(self, reason: str = "timeout", dt: float = 1.0) -> SignalState:
        self.t += dt
        self.st = gas.on_reading(self.st, Reading(self.cfg.id, math.nan, self.t, Quality.BAD, reason), self.cfg)
        return self.st

    def tick(self, dt: float = 1.0, started_at: float = 0.0) -> SignalState:
        self.t += dt
        self.st = gas.on_tick(self.st, self.cfg, self.t, started_at)
        return self.st

    def ack(self) -> SignalState:
        self.st = gas.on_ack(self.st, USER, UTC)
        return self.st

    def level(self, name: str) -> tuple[bool, bool]:
        ls = self.st.levels.get(name, LevelState())
        return ls.active, ls.latched


# --- every instant level of both profiles: inclusive trip, deadband clear, latch, ack ---


@pytest.mark.parametrize(("profile", "q", "unit", "name"), instant_levels())
def test_level_trip_clear_latch_ack(profile: str, q: str, unit: str, name: str) -> None:
    cfg = sig(profile, q, unit)
    (lim,) = [lim for lim in cfg.limits if lim.name == name]
    toward_safe = math.inf if lim.direction is Direction.LOW else -math.inf
    boundary = lim.value + lim.deadband if lim.direction is Direction.LOW else lim.value - lim.deadband
    r = Runner(cfg)
    r.read(NORMAL[q])
    assert r.level(name) == (False, False)
    r.read(math.nextafter(lim.value, toward_safe))  # a hair short of the limit: nothing
    assert r.level(name) == (False, False)
    r.read(lim.value)  # reaching the limit trips, at once (no on-delay)
    assert r.level(name) == (True, lim.latching)
    assert r.st.levels[name].since == r.t
    assert r.st.severity(cfg) >= lim.severity
    r.ack()  # an acknowledgement while active is recorded but clears nothing
    assert r.level(name) == (True, lim.latching)
    assert r.st.acked_by == USER
    r.read(boundary)  # exactly at limit -/+ deadband: not yet past it
    assert r.level(name) == (True, lim.latching)
    r.read(math.nextafter(boundary, toward_safe))  # past the deadband: the condition is gone
    assert r.level(name) == (False, lim.latching)
    if lim.latching:
        assert r.st.severity(cfg) >= lim.severity  # still in force until acknowledged
        r.read(NORMAL[q])
        assert r.level(name) == (False, True)
    r.ack()  # an acknowledgement after the return clears
    assert r.level(name) == (False, False)
    r.read(NORMAL[q])
    assert r.st.severity(cfg) is Severity.NORMAL


# Concrete documented values, stated independently of the profile code:
# profile, quantity, unit, value that must trip, level, value just short that must not
CONCRETE = [
    ("osha", "o2", "%vol", 19.5, "low", 19.51),
    ("osha", "o2", "%vol", 18.0, "low_low", 18.01),
    ("osha", "o2", "%vol", 23.5, "high", 23.49),
    ("osha", "lel", "%LEL", 10.0, "alarm1", 9.99),
    ("osha", "lel", "%LEL", 20.0, "alarm2", 19.99),
    ("osha", "h2s", "ppm", 5.0, "alarm1", 4.99),
    ("osha", "h2s", "ppm", 10.0, "alarm2", 9.99),
    ("osha", "co", "ppm", 25.0, "alarm1", 24.99),
    ("osha", "co", "ppm", 50.0, "alarm2", 49.99),
    ("osha", "co", "ppm", 200.0, "evacuate", 199.99),
    ("gb", "lel", "%LEL", 25.0, "alarm1", 24.99),
    ("gb", "lel", "%LEL", 50.0, "alarm2", 49.99),
    ("gb", "h2s", "mg/m3", 10.0, "alarm1", 9.99),
    ("gb", "h2s", "mg/m3", 20.0, "alarm2", 19.99),
    ("gb", "co", "mg/m3", 20.0, "alarm1", 19.99),
    ("gb", "co", "mg/m3", 40.0, "alarm2", 39.99),
    ("gb", "h2s", "ppm", 7.18, "alarm1", 7.17),  # 10 mg/m3 = 7.174 ppm
    ("gb", "co", "ppm", 17.46, "alarm1", 17.45),  # 20 mg/m3 = 17.458 ppm
    ("gb", "h2s", "ppm", 14.35, "alarm2", 14.34),  # 20 mg/m3 = 14.349 ppm
    ("gb", "co", "ppm", 34.92, "alarm2", 34.91),  # 40 mg/m3 = 34.916 ppm
]


@pytest.mark.parametrize(("profile", "q", "unit", "trip", "name", "short"), CONCRETE)
def test_documented_trip_points(profile: str, q: str, unit: str, trip: float, name: str, short: float) -> None:
    cfg = sig(profile, q, unit)
    st0 = gas.initial(cfg)
    assert gas.on_reading(st0, Reading(q, short, 1.0), cfg).levels.get(name, LevelState()).active is False
    assert gas.on_reading(st0, Reading(q, trip, 1.0), cfg).levels[name].active is True


# --- scripted transitions (whole sequences, expected (active, latched) after each step) ---

# op: ("r", value) reading | ("ack",) ; expect: (active, latched) of `level` after the op
SCRIPTS = [
    pytest.param(
        ("osha", "co", "ppm"),
        "alarm1",
        [(("r", 30.0), (True, False)), (("r", 20.0), (True, False)), (("r", 19.9), (False, False))],
        id="co-alarm1-non-latching-clears-by-itself",
    ),
    pytest.param(
        ("osha", "h2s", "ppm"),
        "alarm1",
        [(("r", 5.0), (True, False)), (("r", 4.0), (True, False)), (("r", 3.9), (False, False))],
        id="h2s-alarm1-non-latching-clears-by-itself",
    ),
    pytest.param(
        ("osha", "lel", "%LEL"),
        "alarm1",
        [
            (("r", 12.0), (True, True)),
            (("ack",), (True, True)),
            (("r", 0.0), (False, True)),  # the earlier ack does not count: given while active
            (("r", 15.0), (True, True)),  # re-trip while latched
            (("r", 0.0), (False, True)),
            (("ack",), (False, False)),
        ],
        id="lel-alarm1-ack-while-active-then-after-return",
    ),
    pytest.param(
        ("osha", "o2", "%vol"),
        "low",
        [
            (("r", 19.5), (True, True)),
            (("r", 19.7), (True, True)),  # 19.5 + 0.2 deadband: not past it
            (("r", 19.71), (False, True)),
            (("r", 19.6), (False, True)),  # inside the deadband after clearing: no re-trip
            (("r", 19.5), (True, True)),
            (("ack",), (True, True)),
            (("r", 20.9), (False, True)),
            (("ack",), (False, False)),
        ],
        id="o2-low-hysteresis",
    ),
    pytest.param(
        ("gb", "co", "mg/m3"),
        "alarm2",
        [
            (("r", 40.0), (True, True)),
            (("r", 35.0), (True, True)),
            (("r", 34.9), (False, True)),
            (("ack",), (False, False)),
        ],
        id="gb-co-alarm2-latching",
    ),
]


@pytest.mark.parametrize(("sigargs", "level", "script"), SCRIPTS)
def test_scripted_transitions(
    sigargs: tuple[str, str, str], level: str, script: Sequence[tuple[tuple[object, ...], tuple[bool, bool]]]
) -> None:
    r = Runner(sig(*sigargs))
    for i, (op, expect) in enumerate(script):
        if op[0] == "r":
            assert isinstance(op[1], float)
            r.read(op[1])
        else:
            r.ack()
        assert r.level(level) == expect, f"step {i}: {op}"


def test_whole_state_after_o2_low() -> None:
    cfg = sig("osha", "o2", "%vol")
    s1 = gas.on_reading(gas.initial(cfg), Reading("o2", 19.0, 3.0), cfg)
    assert s1 == SignalState(
        value=19.0,
        quality=Quality.GOOD,
        reason="",
        at=3.0,
        levels=MappingProxyType(
            {
                "low": LevelState(active=True, latched=True, since=3.0),
                "low_low": LevelState(),
                "high": LevelState(),
            }
        ),
    )
    assert s1.severity(cfg) is Severity.EVACUATE
    assert s1.summary(cfg) == {
        "severity": "evacuate",
        "levels": {"low": {"active": True, "latched": True}},
        "fault": None,
        "acked_by": None,
    }
    assert gas.newly_tripped(gas.initial(cfg), s1) == ("low",)


# --- faults: BAD quality, over-range, stale ---


@pytest.mark.parametrize("reason", ["timeout", "crc_error", "warm_up", "loop_fault:3.1mA", "device_fault"])
def test_bad_quality_is_a_latched_fault(reason: str) -> None:
    cfg = sig("osha", "h2s", "ppm")
    r = Runner(cfg)
    r.read(0.0)
    assert r.st.good(r.t, cfg)
    r.bad(reason)
    assert r.st.fault == FaultState(active=True, latched=True, reason=reason, since=r.t)
    assert not r.st.good(r.t, cfg)
    assert r.st.severity(cfg) is Severity.ALARM
    r.ack()  # while still BAD: nothing clears
    assert r.st.fault.active and r.st.fault.latched
    r.bad(reason)
    assert r.st.fault.since == r.t - 1.0  # a repeated reason keeps the first time
    r.read(0.0)  # GOOD again: the fault stays latched, never "safe" until acknowledged
    assert (r.st.fault.active, r.st.fault.latched) == (False, True)
    assert r.st.severity(cfg) is Severity.ALARM
    r.ack()
    assert r.st.fault == FaultState()
    assert r.st.severity(cfg) is Severity.NORMAL
    assert r.st.good(r.t, cfg)


@pytest.mark.parametrize(
    ("profile", "value", "fault"),
    [("osha", 100.0, False), ("osha", 100.01, True), ("osha", 250.0, True), ("gb", 100.0, False), ("gb", 101.0, True)],
)
def test_lel_over_range_is_a_fault(profile: str, value: float, fault: bool) -> None:
    cfg = sig(profile, "lel", "%LEL")
    s1 = gas.on_reading(gas.initial(cfg), Reading("lel", value, 1.0), cfg)
    assert s1.fault.active is fault
    if fault:
        assert s1.fault.latched and s1.fault.reason == f"over_range:{value:g}"
        assert s1.quality is Quality.BAD
        assert not s1.good(1.0, cfg)
        # a saturated detector is not a value: it never clears a level by itself
        s2 = gas.on_reading(s1, Reading("lel", 0.0, 2.0), cfg)
        assert (s2.fault.active, s2.fault.latched) == (False, True)
        assert s2.severity(cfg) >= Severity.ALARM
    else:
        assert s1.quality is Quality.GOOD and s1.levels["alarm2"].active


def test_stale_none_since_start() -> None:
    cfg = sig("osha", "co", "ppm", stale_after_s=5.0)
    st0 = gas.initial(cfg)
    assert not st0.good(0.0, cfg)  # no reading yet: never good
    assert gas.on_tick(st0, cfg, 15.0, started_at=10.0) == st0
    assert gas.on_tick(st0, cfg, 15.0 + 1e-9, started_at=10.0).fault == FaultState(
        active=True, latched=True, reason="stale:no_data_since_start", since=15.0 + 1e-9
    )


def test_stale_after_last_reading_latched_until_ack() -> None:
    cfg = sig("osha", "co", "ppm", stale_after_s=3.0)
    r = Runner(cfg)
    r.read(1.0)  # t=1
    r.tick(dt=3.0)  # t=4: exactly stale_after_s old, still fresh
    assert not r.st.fault.active and r.st.good(r.t, cfg)
    r.tick(dt=0.5)  # t=4.5
    assert r.st.fault == FaultState(active=True, latched=True, reason="stale", since=4.5)
    assert r.st.quality is Quality.BAD and not r.st.good(r.t, cfg)
    r.tick(dt=10.0)
    assert r.st.fault.since == 4.5
    r.read(1.0)
    assert (r.st.fault.active, r.st.fault.latched) == (False, True)
    assert r.st.severity(cfg) is Severity.ALARM
    r.ack()
    assert r.st.fault == FaultState() and r.st.severity(cfg) is Severity.NORMAL


def test_fresh_is_judged_at_now_not_at_reading() -> None:
    cfg = sig("osha", "co", "ppm", stale_after_s=5.0)
    s1 = gas.on_reading(gas.initial(cfg), Reading("co", 1.0, 10.0), cfg)
    assert s1.good(15.0, cfg) and not s1.good(15.01, cfg)


def test_late_reading_does_not_overwrite_a_newer_one() -> None:
    """An MQTT reading carries its device time: a delayed older sample must not clear a newer alarm."""
    cfg = sig("osha", "co", "ppm")
    s1 = gas.on_reading(gas.initial(cfg), Reading("co", 30.0, 10.0), cfg)
    s2 = gas.on_reading(s1, Reading("co", 5.0, 9.0), cfg)
    assert s2.levels["alarm1"].active
    assert (s2.value, s2.at) == (30.0, 10.0)


# --- STEL / TWA through the alarm machine ---


def test_h2s_stel_trips_within_the_documented_bound() -> None:
    """6 ppm steady: exact STEL reaches 5 ppm at t = 750 s; the estimate errs high by <= 6*15/900."""
    cfg = sig("osha", "h2s", "ppm")
    r = Runner(cfg, t=-1.0)  # first reading at t=0
    tripped_at = None
    while r.t < 900.0:
        r.read(6.0)
        if tripped_at is None and r.level("stel")[0]:
            tripped_at = r.t
    assert tripped_at is not None and 735.0 <= tripped_at <= 750.0
    assert r.level("alarm1") == (True, False)  # the instant 5 ppm level too
    assert not r.level("twa")[0]  # 6 ppm for 15 min = 0.19 ppm over 8 h
    # back to clean air: STEL falls; latched until acknowledged once below 5 - 0.5
    for _ in range(900):
        r.read(0.0)
    assert r.level("stel") == (False, True) and r.level("alarm1") == (False, False)
    r.ack()
    assert r.level("stel") == (False, False)


def test_h2s_twa_trips_within_the_documented_bound() -> None:
    """2 ppm steady: exact TWA reaches 1 ppm at t = 4 h; the estimate errs high by <= 2*300/28800."""
    cfg = sig("osha", "h2s", "ppm")
    r = Runner(cfg, t=-5.0)  # first reading at t=0
    tripped_at = None
    while r.t < 5 * 3600.0:
        r.read(2.0, dt=5.0)
        if tripped_at is None and r.level("twa")[0]:
            tripped_at = r.t
    assert tripped_at is not None and 4 * 3600.0 - 300.0 <= tripped_at <= 4 * 3600.0
    assert not r.level("stel")[0] and not r.level("alarm1")[0]


def test_stel_moves_on_ticks_and_is_not_held_across_a_stale_gap() -> None:
    cfg = sig("osha", "h2s", "ppm", stale_after_s=5.0)
    r = Runner(cfg)
    r.read(100.0)  # t=1, one very high sample then silence
    r.tick(dt=4.0)  # t=5: 4 s held at 100 ppm = 400 ppm.s / 900 s = 0.44 ppm
    assert not r.level("stel")[0]
    assert r.st.exposure is not None and math.isclose(r.st.exposure.stel(r.t), 400.0 / 900.0)
    r.tick(dt=100.0)  # stale: the value is held for stale_after_s only (500 ppm.s), and a fault latches
    assert math.isclose(r.st.exposure.stel(r.t), 500.0 / 900.0)
    assert r.st.fault.active and r.st.fault.reason == "stale"


def test_no_exposure_for_signals_without_averages() -> None:
    assert gas.initial(sig("osha", "co", "ppm")).exposure is None
    assert gas.initial(sig("osha", "h2s", "ppm")).exposure is not None
    assert gas.initial(sig("gb", "h2s", "mg/m3")).exposure is None


# --- properties ---

CO = sig("osha", "co", "ppm")
LATCHING_CO = [lim for lim in CO.limits if lim.latching]

_readings = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=400.0, allow_nan=False).map(lambda v: ("r", v)),
        st.just(("bad", math.nan)),
        st.floats(min_value=0.1, max_value=20.0).map(lambda dt: ("tick", dt)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(first=st.floats(min_value=0.0, max_value=400.0, allow_nan=False), ops=_readings)
def test_no_reading_sequence_clears_a_latch(first: float, ops: list[tuple[str, float]]) -> None:
    r = Runner(CO)
    r.read(first)
    latched = {lim.name for lim in LATCHING_CO if lim.tripped(first)}
    for op, x in ops:
        if op == "r":
            r.read(x)
        elif op == "bad":
            r.bad()
        else:
            r.tick(dt=x)
        for lim in LATCHING_CO:
            if r.st.levels.get(lim.name, LevelState()).active:
                latched.add(lim.name)
            if lim.name in latched:
                assert r.st.levels[lim.name].latched, lim.name
                assert r.st.severity(CO) >= lim.severity


@settings(max_examples=300, deadline=None)
@given(ops=_readings)
def test_good_only_when_good_fresh_and_no_fault(ops: list[tuple[str, float]]) -> None:
    r = Runner(CO)
    seen_fault = False
    for op, x in ops:
        if op == "r":
            r.read(x)
        elif op == "bad":
            r.bad()
        else:
            r.tick(dt=x)
        seen_fault |= r.st.fault.active
        if r.st.good(r.t, CO):
            assert r.st.quality is Quality.GOOD and r.st.at is not None and r.t - r.st.at <= CO.stale_after_s
        if seen_fault:  # never acknowledged here: the fault stays in force
            assert r.st.fault.latched and r.st.severity(CO) >= Severity.ALARM


def test_a_retrip_does_not_carry_the_previous_acknowledger() -> None:
    from rules.events import Reading as R
    from rules.gas import initial as fresh
    from rules.gas import on_ack, on_reading
    from rules.profiles import resolve as res

    r = res("osha", "o2", "%vol")
    scfg = SignalCfg("o2", "o2", "%vol", "z", "d", r.limits)
    st = on_reading(fresh(scfg), R("o2", 19.0, 1.0), scfg)
    st = on_reading(st, R("o2", 20.9, 2.0), scfg)
    st = on_ack(st, "ann", "t1")
    assert st.acked_by == "ann" and st.summary(scfg)["severity"] == "normal"
    st = on_reading(st, R("o2", 19.0, 3.0), scfg)
    assert st.acked_by == "" and st.summary(scfg)["acked_by"] is None


# ---- implausible values are BAD (issue 15.4) --------------------------------------------
@pytest.mark.parametrize(
    ("value", "quality", "reason"),
    [
        (-20.0, Quality.BAD, "under_range:-20"),
        (-2.01, Quality.BAD, "under_range:-2.01"),
        (-2.0, Quality.GOOD, ""),  # at the floor: still a value (zero drift within NE43's band)
        (0.0, Quality.GOOD, ""),
        (100.0, Quality.GOOD, ""),
        (100.5, Quality.BAD, "over_range:100.5"),
    ],
)
def test_screen_turns_implausible_lel_into_bad(value: float, quality: Quality, reason: str) -> None:
    cfg = SignalCfg("lel", "lel", "%LEL", "z", "d", over_range=100.0, under_range=-2.0)
    out = gas.screen(Reading("lel", value, 1.0), cfg)
    assert (out.quality, out.reason) == (quality, reason)
    assert math.isnan(out.value) if quality is Quality.BAD else out.value == value


def test_negative_drift_latches_a_fault_like_any_other() -> None:
    cfg = SignalCfg("lel", "lel", "%LEL", "z", "d", under_range=-2.0, stale_after_s=5.0)
    st = gas.on_reading(gas.initial(cfg), Reading("lel", 0.0, 1.0), cfg)
    assert st.good(1.0, cfg)
    st = gas.on_reading(st, Reading("lel", -20.0, 2.0), cfg)
    assert st.quality is Quality.BAD and st.fault.latched and st.fault.reason == "under_range:-20"
    st = gas.on_reading(st, Reading("lel", 0.0, 3.0), cfg)
    # Back in range, but the fault stays latched (an alarm that denies permissives) until acknowledged.
    assert st.fault.latched and st.severity(cfg) >= Severity.ALARM
    st = gas.on_ack(st, "op-1", "2026-12-05T00:00:00Z")
    assert not st.fault.latched and st.severity(cfg) is Severity.NORMAL
