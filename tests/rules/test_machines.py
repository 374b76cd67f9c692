"""rules.machines: condition monitoring as the engine sees it (alarms, hazards, stop demand, notes)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import machines
from rules.actions import Action, AlarmUpdate, HazardRecord, Note
from rules.condition import Kind, Level, MachineCfg
from rules.config import Severity
from rules.events import Ack, DeviceStatus, Event, Quality, Reading, Tick
from rules.machines import MachinesState, alarm_signal, machine_json, machine_stopped
from rules.vibration import Baseline, BaselineCfg

M1 = MachineCfg("m1", "z1", "vib1", "temp1", stop_output="run-m1")
M2 = MachineCfg("m2", "z2", "vib2", "temp2", stop_output="run-m2")
MACHINES: Mapping[str, MachineCfg] = MappingProxyType({"m1": M1, "m2": M2})
ACK_M1 = Ack("m1", "alice", "supervisor", "2024-05-01T10:00:00Z")


def run(
    s: MachinesState, events: Iterable[tuple[float, Event]], cfgs: Mapping[str, MachineCfg] = MACHINES
) -> tuple[MachinesState, list[Action]]:
    out: list[Action] = []
    for now, ev in events:
        s, acts = machines.step(s, ev, now, cfgs)
        out.extend(acts)
    return s, out


def good(t: float, vib: float = 1.0, temp: float = 60.0, m: str = "1") -> list[tuple[float, Event]]:
    """Both inputs of machine m<n> at time t."""
    return [(t, Reading(f"vib{m}", vib, t)), (t, Reading(f"temp{m}", temp, t))]


def running() -> MachinesState:
    s, acts = run(machines.initial(), good(1.0) + good(1.0, m="2"))
    assert [a for a in acts if isinstance(a, Note)] == [
        Note("machine_released", {"machine": "m1", "zone": "z1", "reason": "condition_ok", "output": "run-m1"}),
        Note("machine_released", {"machine": "m2", "zone": "z2", "reason": "condition_ok", "output": "run-m2"}),
    ]
    assert not machine_stopped(s, "run-m1", MACHINES)
    return s


def alarms(acts: Iterable[Action]) -> list[tuple[str, str, Severity]]:
    return [(a.zone, a.signal, a.severity) for a in acts if isinstance(a, AlarmUpdate)]


def hazards(acts: Iterable[Action]) -> list[HazardRecord]:
    return [a for a in acts if isinstance(a, HazardRecord)]


def notes(acts: Iterable[Action], event: str) -> list[Note]:
    return [a for a in acts if isinstance(a, Note) and a.event == event]


# --- start-up and routing -------------------------------------------------------------


def test_stopped_before_any_event_and_for_an_output_no_machine_names() -> None:
    s = machines.initial()
    assert machine_stopped(s, "run-m1", MACHINES)
    assert machine_stopped(running(), "run-unknown", MACHINES)  # nobody monitors it: never released


def test_events_of_no_machine_return_the_same_state() -> None:
    s = running()
    for ev in (Reading("gas-o2", 20.9, 2.0), DeviceStatus("dev", False, "x"), Reading("vib9", 9.0, 2.0)):
        s2, acts = machines.step(s, ev, 2.0, MACHINES)
        assert (s2 is s, acts) == (True, ())


def test_a_reading_steps_only_its_own_machine() -> None:
    s = running()
    s2, _ = machines.step(s, Reading("vib1", 1.1, 2.0), 2.0, MACHINES)
    assert s2.machines["m2"] is s.machines["m2"]
    assert s2.machines["m1"].vibration.value == 1.1


def test_state_is_created_at_the_first_event_so_the_grace_period_runs_from_then() -> None:
    # A monotonic clock at 10 000 s: a machine created at 0 would be "stale since start" at once.
    s, acts = run(machines.initial(), [(10_000.0, Tick())])
    assert acts == [] and s.machines["m1"].started == 10_000.0
    s, acts = run(s, [(10_005.1, Tick())])
    assert ("z1", "machine:m1:sensor_fault", Severity.ALARM) in alarms(acts)


# --- vibration zone D: trip, stop, latch, ack ------------------------------------------


def test_zone_d_trips_and_latches_the_stop_until_ack_after_back_in_range() -> None:
    s = running()
    s, acts = run(s, [(2.0, Reading("vib1", 4.6, 2.0))])  # group 2 rigid: C/D = 4.5 mm/s
    assert alarms(acts) == [
        ("z1", "machine:m1:vibration_alert", Severity.ALARM),
        ("z1", "machine:m1:vibration_trip", Severity.ALARM),
    ]
    trip = next(h for h in hazards(acts) if h.title == "m1: vibration_trip")
    assert (trip.zone, trip.category, trip.level) == ("z1", "mechanical", "major")
    assert trip.evidence["rms_mm_s"] == 4.6 and trip.evidence["iso_zone"] == "D"
    assert notes(acts, "machine_stop")[0].fields["reason"] == "vibration_trip:vib1"
    assert machine_stopped(s, "run-m1", MACHINES)
    assert not machine_stopped(s, "run-m2", MACHINES)  # the other machine runs on

    # Ack while still in zone D: nothing changes.
    s, acts = run(s, [(2.5, ACK_M1)])
    assert acts == [] and machine_stopped(s, "run-m1", MACHINES)
    # Back in zone B: the alert clears (not latching), the trip stays latched, still stopped.
    s, acts = run(s, good(3.0, vib=2.0))
    assert alarms(acts) == [("z1", "machine:m1:vibration_alert", Severity.NORMAL)]
    assert hazards(acts) == []  # a clearing is published, never a new hazard
    assert machine_stopped(s, "run-m1", MACHINES)
    # An Ack for another zone does not reach it; the machine's own Ack releases it.
    s, acts = run(s, [(3.5, Ack("*", "bob", "supervisor", "u", zone="z2"))])
    assert machine_stopped(s, "run-m1", MACHINES)
    s, acts = run(s, [(4.0, ACK_M1)])
    assert alarms(acts) == [("z1", "machine:m1:vibration_trip", Severity.NORMAL)]
    assert notes(acts, "machine_released")[0].fields["machine"] == "m1"
    assert not machine_stopped(s, "run-m1", MACHINES)


def test_zone_c_alerts_without_a_stop() -> None:
    s, acts = run(running(), [(2.0, Reading("vib1", 3.0, 2.0))])
    assert alarms(acts) == [("z1", "machine:m1:vibration_alert", Severity.ALARM)]
    assert [(h.category, h.level) for h in hazards(acts)] == [("mechanical", "general")]
    assert not machine_stopped(s, "run-m1", MACHINES)


# --- temperature trip ------------------------------------------------------------------


def test_temperature_trip_latches_the_stop_until_ack_after_back_in_range() -> None:
    s = running()
    s, acts = run(s, [(2.0, Reading("temp1", 156.0, 2.0))])  # class F: alarm 130, trip 155 degC
    assert alarms(acts) == [
        ("z1", "machine:m1:temperature_alarm", Severity.ALARM),
        ("z1", "machine:m1:temperature_trip", Severity.ALARM),
    ]
    assert {(h.title, h.category, h.level) for h in hazards(acts)} == {
        ("m1: temperature_alarm", "electrical", "general"),
        ("m1: temperature_trip", "electrical", "major"),
    }
    assert machine_stopped(s, "run-m1", MACHINES)
    s, _ = run(s, [(2.5, Ack("temp1", "alice", "supervisor", "u"))])  # still hot
    assert machine_stopped(s, "run-m1", MACHINES)
    s, _ = run(s, good(3.0, temp=100.0))
    assert machine_stopped(s, "run-m1", MACHINES)
    s, acts = run(s, [(3.5, Ack("*", "alice", "supervisor", "u", zone="z1"))])
    assert alarms(acts) == [("z1", "machine:m1:temperature_trip", Severity.NORMAL)]
    assert not machine_stopped(s, "run-m1", MACHINES)


def test_alarm_update_state_is_json_ready_and_names_the_condition() -> None:
    _, acts = run(running(), [(2.0, Reading("temp1", 156.0, 2.0))])
    upd = next(a for a in acts if isinstance(a, AlarmUpdate) and a.signal.endswith("temperature_trip"))
    assert dict(upd.state) == {
        "severity": "alarm",
        "machine": "m1",
        "kind": "temperature_trip",
        "level": "trip",
        "active": True,
        "signal": "temp1",
        "hazard": "electrical",
        "evidence": {"temperature_c": 156.0, "limit_c": 155.0},
    }
    assert upd.signal == alarm_signal("m1", "temperature_trip")


# --- burnout risk, baseline --------------------------------------------------------------


def test_burnout_risk_warning_carries_both_values() -> None:
    s = running()
    events: list[tuple[float, Event]] = []
    for i in range(10):  # a steady climb in zone B, then a hot winding (alarm, below trip)
        t = 2.0 + i
        events += good(t, vib=1.5 + 0.1 * i, temp=140.0 if i == 9 else 80.0)
    s, acts = run(s, events)
    warn = [a for a in acts if isinstance(a, AlarmUpdate) and a.signal == "machine:m1:motor_burnout_risk"]
    assert [(w.severity, w.state["level"]) for w in warn] == [(Severity.WARNING, "warning")]
    ev = warn[0].state["evidence"]
    assert (ev["rms_mm_s"], ev["temperature_c"], ev["trend"]) == (2.4, 140.0, "slope")
    hz = next(h for h in hazards(acts) if h.title == "m1: motor_burnout_risk")
    assert (hz.category, hz.level, hz.evidence["rms_mm_s"], hz.evidence["temperature_c"]) == (
        "electrical",
        "general",
        2.4,
        140.0,
    )
    assert not machine_stopped(s, "run-m1", MACHINES)  # a warning never stops the machine


def test_baseline_learned_becomes_a_note_with_the_persistable_dict() -> None:
    cfg = MappingProxyType({"m1": MachineCfg("m1", "z1", "vib1", "temp1", baseline=BaselineCfg(learn_count=3))})
    s, acts = run(machines.initial(), [(0.0, Reading("temp1", 50.0, 0.0))], cfg)
    s, acts = run(s, [(t, Reading("vib1", v, t)) for t, v in ((1.0, 1.0), (2.0, 1.2), (3.0, 1.1))], cfg)
    assert notes(acts, "baseline_learned") == [Note("baseline_learned", {"machine": "m1",
                                                                         "baseline": {"value": 1.1, "learning": []}})]
    assert Baseline.from_dict(notes(acts, "baseline_learned")[0].fields["baseline"]).value == 1.1


def test_a_restored_baseline_flags_a_change_without_relearning() -> None:
    s = machines.initial({"m1": Baseline.restored(1.0)})
    s, acts = run(s, good(1.0, vib=1.3))  # 1.3 >= 1.0 x 1.25, still zone B
    assert ("z1", "machine:m1:baseline_change", Severity.WARNING) in alarms(acts)
    assert notes(acts, "baseline_learned") == []


def test_level_table_matches_the_rule() -> None:
    """machine_json's kind -> level table agrees with the levels rules.condition emits."""
    s = running()
    scenario: list[tuple[float, Event]] = [
        (2.0, Reading("vib1", 4.6, 2.0)),
        (2.0, Reading("temp1", 156.0, 2.0)),
        (3.0, Reading("vib2", math.nan, 3.0, Quality.BAD, "timeout")),
    ]
    _, acts = run(s, scenario)
    seen = {(a.state["kind"], a.state["level"]) for a in acts if isinstance(a, AlarmUpdate)}
    assert seen >= {("vibration_trip", "trip"), ("temperature_trip", "trip"), ("sensor_fault", "fault")}
    for kind, level in seen:
        assert machines._LEVEL_OF[Kind(kind)] is Level(level)


def test_machine_json_for_the_status_page() -> None:
    s, _ = run(running(), [(2.0, Reading("vib1", 4.6, 2.0))])
    j = machine_json(s, "m1", 2.5, M1)
    assert j == {
        "id": "m1",
        "zone": "z1",
        "level": "trip",
        "stopped": True,
        "rms_mm_s": 4.6,
        "temperature_c": 60.0,
        "baseline_mm_s": None,
        "conditions": [{"kind": "vibration_alert", "signal": "vib1"}, {"kind": "vibration_trip", "signal": "vib1"}],
        "signals": {"vibration": "vib1", "temperature": "temp1", "stop_output": "run-m1"},
    }
    # Stale data is never shown as a value.
    assert machine_json(s, "m1", 60.0, M1)["rms_mm_s"] is None
    assert machine_json(machines.initial(), "m1", 0.0, M1)["stopped"] is True


def test_latched_trips_survive_a_restart_and_still_need_an_ack() -> None:
    s, _ = run(running(), [(2.0, Reading("vib1", 4.6, 2.0))])
    saved = machines.latched(s)
    assert saved == {"m1": [["vibration_trip", "vib1"]]}
    s2 = machines.initial(latches={**saved, "m2": [["vibration_alert", "vib2"], "junk"]})
    assert machines.latched(s2) == saved  # kept even before the machine's first event
    s2, acts = run(s2, good(500.0) + good(500.0, m="2"))  # calm data after the restart
    assert machine_stopped(s2, "run-m1", MACHINES)  # the trip is still latched
    assert not machine_stopped(s2, "run-m2", MACHINES)  # a non-latching kind is not restored
    s2, acts = run(s2, [(501.0, ACK_M1)])
    assert alarms(acts) == [("z1", "machine:m1:vibration_trip", Severity.NORMAL)]
    assert not machine_stopped(s2, "run-m1", MACHINES) and machines.latched(s2) == {}


def test_latching_kinds_match_the_rule() -> None:
    from rules.condition import _LATCHING

    assert machines._LATCHING_KINDS == {k.value for k in _LATCHING}


# --- property: a zone-D value is never followed by a release without an Ack --------------


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 8.0), st.floats(40.0, 170.0), st.booleans()), min_size=1, max_size=25))
def test_no_release_after_a_trip_without_an_ack_once_back_in_range(
    steps: list[tuple[float, float, bool]],
) -> None:
    s = running()
    # Trip values seen and not yet cleared by an Ack given once back past the deadband.
    vib_trip = temp_trip = False
    for i, (v, t, ack) in enumerate(steps):
        now = 2.0 + i
        s, _ = run(s, good(now, vib=v, temp=t))
        vib_trip, temp_trip = vib_trip or v >= 4.5, temp_trip or t >= 155.0
        if ack:
            s, _ = run(s, [(now, ACK_M1)])
            vib_trip = vib_trip and not v < 4.5 - 0.1
            temp_trip = temp_trip and not t < 155.0 - 2.0
        if vib_trip or temp_trip:
            assert machine_stopped(s, "run-m1", MACHINES)
        else:
            assert not machine_stopped(s, "run-m1", MACHINES)
        assert s.stopped["m1"] == s.machines["m1"].stopped


def test_machine_trip_survives_a_restart_through_the_state_file() -> None:
    """persist.latched/restore carry a machine's latched trip; the machine stays stopped after a restart."""
    from rules import machines as mach
    from rules import persist

    latches = {"p201": [["vibration_trip", "p201_vib"]]}
    restored = mach.initial(None, latches)
    assert mach.latched(restored) == latches  # kept until the machine's state is re-created
    saved = {"version": persist.VERSION, "signals": {}, "evacuations": {}, "output_fault": None, "machines": latches}
    assert saved["machines"] == mach.latched(mach.initial(None, saved["machines"]))
