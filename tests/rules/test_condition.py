"""Table and property tests of rules.condition: temperature, vibration, latches, burnout risk."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.actions import HazardRecord
from rules.condition import (
    INSULATION_LIMITS_C,
    BaselineLearned,
    ConditionAction,
    ConditionAlert,
    Hazard,
    InsulationClass,
    Kind,
    Level,
    MachineCfg,
    MachineCfgError,
    MachineState,
    MachineStop,
    hazard_record,
    initial_state,
    slope,
    step,
    step_many,
)
from rules.events import Ack, DeviceStatus, Event, Quality, Reading, Tick
from rules.vibration import Baseline, BaselineCfg, IsoCfg

CFG = MachineCfg("m1", "z1", "vib1", "temp1", stop_output="run-m1")
ACK = Ack("m1", "alice", "supervisor", "2024-05-01T10:00:00Z")


def vib(v: float, at: float) -> Reading:
    return Reading("vib1", v, at)


def temp(t: float, at: float) -> Reading:
    return Reading("temp1", t, at)


def bad(signal: str, at: float, reason: str = "timeout") -> Reading:
    return Reading(signal, math.nan, at, Quality.BAD, reason)


def run(
    s: MachineState, events: Iterable[tuple[float, Event]], cfg: MachineCfg = CFG
) -> tuple[MachineState, list[ConditionAction]]:
    out: list[ConditionAction] = []
    for now, ev in events:
        s, acts = step(s, ev, now, cfg)
        out.extend(acts)
    return s, out


def running(cfg: MachineCfg = CFG, v: float = 1.0, t: float = 60.0) -> MachineState:
    """A machine with good data and its stop released, at t=1."""
    s, acts = run(initial_state(0.0), [(0.5, vib(v, 0.5)), (1.0, temp(t, 1.0))], cfg)
    assert acts == [MachineStop("m1", False, "condition_ok", cfg.stop_output)]
    return s


def kinds(acts: Iterable[ConditionAction]) -> list[tuple[str, bool]]:
    return [(a.kind.value, a.active) for a in acts if isinstance(a, ConditionAlert)]


def stops(acts: Iterable[ConditionAction]) -> list[tuple[bool, str]]:
    return [(a.stop, a.reason) for a in acts if isinstance(a, MachineStop)]


# --- start-up and routing -------------------------------------------------------------


def test_machine_stays_stopped_until_both_inputs_are_good() -> None:
    s = initial_state(0.0)
    assert s.stopped
    s, acts = step(s, vib(1.0, 0.5), 0.5, CFG)
    assert (s.stopped, acts) == (True, ())
    s, acts = step(s, temp(50.0, 1.0), 1.0, CFG)
    assert acts == (MachineStop("m1", False, "condition_ok", "run-m1"),)
    assert not s.stopped


def test_foreign_events_change_nothing() -> None:
    s = running()
    for ev in (Reading("other", 999.0, 2.0), DeviceStatus("dev", False, "x"), Ack("other", "a", "r", "u")):
        assert step(s, ev, 2.0, CFG) == (s, ())


def test_no_data_at_start_becomes_a_fault_after_the_stale_period() -> None:
    s, acts = run(initial_state(0.0), [(4.9, Tick())])
    assert acts == []
    s, acts = run(s, [(5.1, Tick())])
    assert [(a.signal, a.evidence["reason"]) for a in acts if isinstance(a, ConditionAlert)] == [
        ("vib1", "stale:no_data"),
        ("temp1", "stale:no_data"),
    ]
    assert s.stopped  # was stopped from the start: no new MachineStop
    assert stops(acts) == []


# --- temperature ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "alarm", "trip"),
    [(InsulationClass.B, 120.0, 130.0), (InsulationClass.F, 130.0, 155.0), (InsulationClass.H, 155.0, 180.0)],
)
def test_insulation_class_limits(cls: InsulationClass, alarm: float, trip: float) -> None:
    # Long stale periods: the steps are far apart so that rate-of-rise stays out of this table.
    cfg = replace(CFG, insulation=cls, vibration_stale_s=1e4, temperature_stale_s=1e4)
    assert INSULATION_LIMITS_C[cls] == (alarm, trip) == cfg.temperature_limits
    s = running(cfg)
    table: list[tuple[float, list[tuple[str, bool]], list[tuple[bool, str]]]] = [
        (alarm - 0.1, [], []),
        (alarm, [("temperature_alarm", True)], []),
        (trip - 0.1, [], []),
        (trip, [("temperature_trip", True)], [(True, "temperature_trip:temp1")]),
    ]
    for i, (t, want_alerts, want_stops) in enumerate(table):
        at = 2.0 + i * 1000.0
        s, acts = step(s, temp(t, at), at, cfg)
        assert (kinds(acts), stops(acts)) == (want_alerts, want_stops), t


def test_temperature_trip_latches_until_ack_after_return() -> None:
    s = running()
    s, acts = run(s, [(2.0, vib(1.0, 2.0)), (3.0, temp(156.0, 3.0))])
    assert kinds(acts) == [("temperature_alarm", True), ("temperature_trip", True)]
    trip = next(a for a in acts if isinstance(a, ConditionAlert) and a.kind is Kind.TEMPERATURE_TRIP)
    assert (trip.level, trip.hazard, dict(trip.evidence)) == (
        Level.TRIP,
        Hazard.ELECTRICAL,
        {"temperature_c": 156.0, "limit_c": 155.0},
    )
    assert stops(acts) == [(True, "temperature_trip:temp1")]
    # Ack while still hot: nothing.
    s, acts = run(s, [(4.0, ACK)])
    assert acts == []
    # Inside the deadband (155 - 2): still not cleared, even with an ack.
    s, acts = run(s, [(5.0, temp(153.5, 5.0)), (5.1, ACK)])
    assert acts == []
    # Back in range: the latch holds until acknowledged.
    s, acts = run(s, [(6.0, vib(1.0, 6.0)), (6.0, temp(140.0, 6.0))])
    assert acts == []
    s, acts = run(s, [(7.0, temp(140.0, 7.0)), (7.0, vib(1.0, 7.0)), (7.5, ACK)])
    assert kinds(acts) == [("temperature_trip", False)]
    assert stops(acts) == [(False, "condition_ok")]
    # The alarm (non-latching) clears by itself below 130 - 2.
    s, acts = run(s, [(8.0, temp(128.5, 8.0))])
    assert acts == []
    s, acts = run(s, [(9.0, temp(127.9, 9.0))])
    assert kinds(acts) == [("temperature_alarm", False)]


@pytest.mark.parametrize(
    ("ack", "clears"),
    [
        (Ack("temp1", "a", "r", "u"), True),
        (Ack("m1", "a", "r", "u"), True),
        (Ack("*", "a", "r", "u", zone="z1"), True),
        (Ack("*", "a", "r", "u", zone="z2"), False),
        (Ack("*", "a", "r", "u"), False),
        (Ack("vib1", "a", "r", "u"), False),  # the vibration point cannot clear a winding trip
    ],
)
def test_ack_scope(ack: Ack, clears: bool) -> None:
    s, _ = run(
        running(), [(2.0, vib(1.0, 2.0)), (2.0, temp(160.0, 2.0)), (3.0, vib(1.0, 3.0)), (3.0, temp(100.0, 3.0))]
    )
    s, acts = step(s, ack, 3.5, CFG)
    assert (("temperature_trip", False) in kinds(acts)) is clears


def test_rate_of_rise_over_a_window() -> None:
    cfg = replace(
        CFG, rate_of_rise_k_per_min=5.0, rate_window_s=120.0, vibration_stale_s=15.0, temperature_stale_s=15.0
    )
    s = running(cfg)
    # 6 K/min: 1 K every 10 s. Needs >= 3 points spanning >= 60 s before it may decide.
    events: list[tuple[float, Event]] = []
    for i in range(13):
        at = 10.0 + 10.0 * i
        events += [(at, vib(1.0, at)), (at, temp(60.0 + i, at))]
    s, acts = run(s, events, cfg)
    alerts = [a for a in acts if isinstance(a, ConditionAlert)]
    assert [(a.kind, a.active) for a in alerts] == [(Kind.RATE_OF_RISE, True)]
    # The window still holds the start-up reading (60 degC at t=1): a bit under 6 K/min.
    assert alerts[0].evidence["rate_k_per_min"] == pytest.approx(6.0, rel=0.1)
    assert alerts[0].level is Level.ALARM
    # Flat again: the least-squares slope over the window falls below 5 - 0.5.
    events = []
    for i in range(13):
        at = 140.0 + 10.0 * i
        events += [(at, vib(1.0, at)), (at, temp(72.0, at))]
    s, acts = run(s, events, cfg)
    assert kinds(acts) == [("rate_of_rise", False)]
    assert len(s.temp_history) <= 13


def test_slow_rise_is_no_alarm() -> None:
    cfg = replace(CFG, vibration_stale_s=15.0, temperature_stale_s=15.0)
    s = running(cfg)
    events: list[tuple[float, Event]] = []
    for i in range(30):
        at = 10.0 + 10.0 * i
        events += [(at, vib(1.0, at)), (at, temp(60.0 + 0.5 * i, at))]  # 3 K/min
    _, acts = run(s, events, cfg)
    assert acts == []


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (bad("temp1", 2.0, "loop_fault"), "loop_fault"),
        (temp(-60.0, 2.0), "under_range:-60.0 degC"),
        (temp(400.0, 2.0), "over_range:400.0 degC"),
    ],
)
def test_bad_or_implausible_temperature_is_a_latched_fault(reading: Reading, reason: str) -> None:
    s, acts = run(running(), [(2.0, reading)])
    assert acts == [
        ConditionAlert(
            "m1", "z1", Kind.SENSOR_FAULT, "temp1", Level.FAULT, Hazard.ELECTRICAL, True, {"reason": reason}
        ),
        MachineStop("m1", True, "sensor_fault:temp1", "run-m1"),
    ]
    s, acts = run(s, [(3.0, vib(1.0, 3.0)), (3.0, temp(60.0, 3.0))])
    assert acts == []  # latched though the data is good again
    s, acts = run(s, [(3.5, ACK)])
    assert kinds(acts) == [("sensor_fault", False)] and stops(acts) == [(False, "condition_ok")]


def test_stale_input_is_a_fault_and_holds_its_conditions() -> None:
    s, _ = run(running(), [(2.0, vib(1.0, 2.0)), (2.0, temp(135.0, 2.0))])
    assert (Kind.TEMPERATURE_ALARM, "temp1") in s.active
    s, acts = run(s, [(6.9, Tick())])
    assert acts == []
    s, acts = run(s, [(7.1, Tick())])
    assert kinds(acts) == [("sensor_fault", True), ("sensor_fault", True)]
    assert stops(acts) == [(True, "sensor_fault:temp1,sensor_fault:vib1")]
    assert (Kind.TEMPERATURE_ALARM, "temp1") in s.active  # not cleared on data we do not have


def test_fault_can_be_configured_not_to_stop() -> None:
    cfg = replace(CFG, fault_stops_machine=False)
    _, acts = run(running(cfg), [(2.0, bad("vib1", 2.0))], cfg)
    assert kinds(acts) == [("sensor_fault", True)] and stops(acts) == []


def test_late_good_reading_is_ignored() -> None:
    s, _ = run(running(), [(5.0, temp(70.0, 5.0))])
    assert step(s, temp(200.0, 4.0), 5.1, CFG) == (s, ())


# --- vibration ------------------------------------------------------------------------


def test_vibration_zones_alert_and_trip() -> None:
    s = running()  # group 2 rigid: 1.4 / 2.8 / 4.5
    s, acts = run(s, [(2.0, temp(60.0, 2.0)), (2.0, vib(2.8, 2.0))])
    assert acts == [
        ConditionAlert(
            "m1",
            "z1",
            Kind.VIBRATION_ALERT,
            "vib1",
            Level.ALARM,
            Hazard.MECHANICAL,
            True,
            {"rms_mm_s": 2.8, "iso_zone": "C", "limit_mm_s": 2.8},
        )
    ]
    s, acts = run(s, [(3.0, temp(60.0, 3.0)), (3.0, vib(4.5, 3.0))])
    assert kinds(acts) == [("vibration_trip", True)] and stops(acts) == [(True, "vibration_trip:vib1")]
    s, acts = run(s, [(4.0, temp(60.0, 4.0)), (4.0, vib(2.0, 4.0)), (4.5, Ack("vib1", "a", "r", "u"))])
    assert kinds(acts) == [("vibration_alert", False), ("vibration_trip", False)]
    assert stops(acts) == [(False, "condition_ok")]


def test_negative_rms_is_a_fault() -> None:
    _, acts = run(running(), [(2.0, vib(-1.0, 2.0))])
    assert kinds(acts) == [("sensor_fault", True)]


def test_baseline_learns_then_change_alert() -> None:
    cfg = replace(CFG, baseline=BaselineCfg(learn_count=5))
    events: list[tuple[float, Event]] = []
    for i in range(6):
        at = 1.0 + i
        events += [(at, temp(60.0, at)), (at, vib(1.0 + 0.01 * i, at))]
    s, acts = run(initial_state(0.0), events, cfg)
    learned = [a for a in acts if isinstance(a, BaselineLearned)]
    assert learned == [BaselineLearned("m1", Baseline(value=1.02))]
    assert Baseline.from_dict(learned[0].baseline.to_dict()) == s.baseline
    s, acts = run(s, [(8.0, temp(60.0, 8.0)), (8.0, vib(1.27, 8.0))], cfg)
    assert acts == []  # 1.02 x 1.25 = 1.275
    s, acts = run(s, [(9.0, temp(60.0, 9.0)), (9.0, vib(1.28, 9.0))], cfg)
    assert kinds(acts) == [("baseline_change", True)]
    assert acts[0].evidence["baseline_mm_s"] == pytest.approx(1.02)  # type: ignore[union-attr]


def test_zone_c_values_are_not_learned_and_restored_baseline_is_used() -> None:
    cfg = replace(CFG, baseline=BaselineCfg(learn_count=3))
    s, _ = run(initial_state(0.0), [(0.5, temp(60.0, 0.5))] + [(1.0 + i, vib(3.0, 1.0 + i)) for i in range(5)], cfg)
    assert s.baseline == Baseline()
    s = initial_state(0.0, Baseline.restored(1.0))
    _, acts = run(s, [(0.5, temp(60.0, 0.5)), (1.0, vib(1.25, 1.0))], cfg)
    assert kinds(acts) == [("baseline_change", True)]


# --- combined rule --------------------------------------------------------------------


def burn(acts: Iterable[ConditionAction]) -> list[ConditionAlert]:
    return [a for a in acts if isinstance(a, ConditionAlert) and a.kind is Kind.MOTOR_BURNOUT_RISK]


def test_burnout_risk_needs_rising_vibration_and_hot_winding() -> None:
    s = running()
    events: list[tuple[float, Event]] = []
    for i in range(10):  # hot (>= 130) but vibration flat: no risk
        at = 2.0 + i
        events += [(at, temp(135.0, at)), (at, vib(1.0 + 0.001 * (-1) ** i, at))]
    s, acts = run(s, events)
    assert burn(acts) == []
    events = []
    for i in range(10):  # vibration rising steadily
        at = 12.0 + i
        events += [(at, temp(135.0, at)), (at, vib(1.0 + 0.05 * i, at))]
    s, acts = run(s, events)
    (alert,) = burn(acts)
    assert (alert.active, alert.level, alert.hazard, alert.signal) == (True, Level.WARNING, Hazard.ELECTRICAL, "m1")
    ev = alert.evidence
    assert (ev["temperature_c"], ev["temperature_alarm_c"], ev["trend"]) == (135.0, 130.0, "slope")
    assert float(ev["slope_mm_s_per_min"]) > 0.0 and float(ev["slope_t"]) >= 2.0
    s, acts = run(s, [(22.0, temp(127.0, 22.0)), (22.0, vib(1.5, 22.0))])
    assert [(a.active) for a in burn(acts)] == [False]


def test_burnout_risk_by_baseline_ratio() -> None:
    s = initial_state(0.0, Baseline.restored(1.0))
    _, acts = run(s, [(0.5, temp(131.0, 0.5)), (1.0, vib(1.09, 1.0))])
    assert burn(acts) == []
    _, acts = run(s, [(0.5, temp(131.0, 0.5)), (1.0, vib(1.1, 1.0))])
    (alert,) = burn(acts)
    assert alert.evidence["trend"] == "baseline" and alert.evidence["rms_mm_s"] == 1.1


def test_slope_statistics() -> None:
    assert slope(()) == (0.0, 0.0)
    assert slope(((1.0, 2.0), (1.0, 3.0))) == (0.0, 0.0)
    b, t = slope(((0.0, 0.0), (1.0, 1.0), (2.0, 2.0)))
    assert b == pytest.approx(1.0) and t == math.inf
    b, t = slope(((0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 4.0)))
    # sxx = 5, residuals -0.3 0.9 -0.9 0.3: ssr = 1.8, stderr = sqrt(1.8 / 2 / 5)
    assert b == pytest.approx(0.8) and t == pytest.approx(0.8 / math.sqrt(1.8 / 2 / 5.0))


# --- plumbing -------------------------------------------------------------------------


def test_hazard_record_from_alert() -> None:
    a = ConditionAlert("m1", "z1", Kind.VIBRATION_TRIP, "vib1", Level.TRIP, Hazard.MECHANICAL, True, {"rms_mm_s": 5.0})
    assert hazard_record(a) == HazardRecord(
        "z1", "mechanical", "major", "m1: vibration_trip", {"signal": "vib1", "level": "trip", "rms_mm_s": 5.0}
    )
    assert hash(a) == hash(replace(a, evidence={"other": 1.0}))  # hashable despite the mapping


def test_step_many_routes_by_signal() -> None:
    cfg2 = MachineCfg("m2", "z2", "vib2", "temp2")
    cfgs = {"m1": CFG, "m2": cfg2}
    states, acts = step_many({}, temp(170.0, 1.0), 1.0, cfgs)
    assert set(states) == {"m1", "m2"}
    assert [(a.machine, a.kind) for a in acts if isinstance(a, ConditionAlert)] == [
        ("m1", Kind.TEMPERATURE_ALARM),
        ("m1", Kind.TEMPERATURE_TRIP),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": ""}, "id"),
        ({"temperature_signal": "vib1"}, "temperature_signal"),
        ({"temperature_alarm_c": 160.0}, "temperature_alarm_c"),
        ({"temperature_range_c": (0.0, 150.0)}, "temperature_range_c"),
        ({"rate_window_s": 0.0}, "rate_window_s"),
        ({"vibration_deadband_mm_s": -1.0}, "vibration_deadband_mm_s"),
        ({"trend_count": 2}, "trend_count"),
        ({"burnout_baseline_ratio": 1.0}, "burnout_baseline_ratio"),
    ],
)
def test_machine_cfg_rejects_nonsense(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(MachineCfgError) as exc:
        replace(CFG, **kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field and field in str(exc.value)


# --- properties -----------------------------------------------------------------------

_STOP_KINDS = {Kind.VIBRATION_TRIP, Kind.TEMPERATURE_TRIP, Kind.SENSOR_FAULT}

event_st = st.one_of(
    st.tuples(st.just("vib"), st.floats(0.0, 8.0)),
    st.tuples(st.just("temp"), st.floats(-60.0, 260.0)),
    st.tuples(st.just("bad"), st.sampled_from(["vib1", "temp1"])),
    st.tuples(st.just("tick"), st.just(0.0)),
    st.tuples(st.just("ack"), st.just(0.0)),
)


def _event(kind: str, x: float | str, now: float) -> Event:
    match kind:
        case "vib":
            return vib(float(x), now)
        case "temp":
            return temp(float(x), now)
        case "bad":
            return bad(str(x), now)
        case "tick":
            return Tick()
    return ACK


@settings(max_examples=150, deadline=None)
@given(script=st.lists(st.tuples(event_st, st.floats(0.0, 8.0)), max_size=60))
def test_stop_is_demanded_whenever_a_trip_or_fault_is_active(
    script: list[tuple[tuple[str, float | str], float]],
) -> None:
    cfg = replace(CFG, iso=IsoCfg(2, "rigid"))
    s, now = initial_state(0.0), 0.0
    stopped = True
    for (kind, x), dt in script:
        now += dt
        ev = _event(kind, x, now)
        s, acts = step(s, ev, now, cfg)
        for a in acts:
            if isinstance(a, MachineStop):
                assert a.stop != stopped  # on change only
                stopped = a.stop
        assert stopped == s.stopped
        latched = any(k in _STOP_KINDS for k, _ in s.active)
        assert s.stopped == (latched or s.vibration.at is None or s.temperature.at is None)
        # A fresh good value at or past a trip limit is always tripped.
        if s.temperature.ok(now, cfg.temperature_stale_s) and s.temperature.value >= 155.0:
            assert (Kind.TEMPERATURE_TRIP, "temp1") in s.active and s.stopped
        if s.vibration.ok(now, cfg.vibration_stale_s) and s.vibration.value >= 4.5:
            assert (Kind.VIBRATION_TRIP, "vib1") in s.active and s.stopped
        assert len(s.vib_history) <= cfg.trend_count
