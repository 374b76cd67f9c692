"""Table and property tests of rules.engine.step: alarms composed per zone, outputs derived fail-safe.

No event loop: every step gets its `now` injected. The shell's view of the coils is rebuilt
from the SetOutput actions alone (the engine only asks for changes) and must always agree
with the engine's own record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rules import engine
from rules.actions import Action, AlarmUpdate, EvacuationUpdate, HazardRecord, Note, SetOutput
from rules.config import Basis, EngineCfg, OutputCfg, OutputKind, Severity, SignalCfg, ZoneCfg, ZoneKind
from rules.confined import ConfinedState
from rules.engine import EngineError, EngineState, step
from rules.events import Ack, DeviceStatus, Event, OutputFeedback, Quality, Reading, Rejected, Silence, Tick
from rules.gas import LevelState, SignalState
from rules.profiles import resolve

UTC = "2024-05-01T10:00:00Z"
K = OutputKind


def signal(sid: str, profile: str, q: str, unit: str, zone: str, confined: bool = False) -> SignalCfg:
    r = resolve(profile, q, unit, confined=confined)
    return SignalCfg(
        id=sid,
        quantity=q,
        unit=unit,
        zone=zone,
        device=f"det-{zone}",
        limits=r.limits,
        stale_after_s=5.0,
        hot_work_max=r.hot_work_max,
        over_range=r.over_range,
    )


def make_cfg(horn_active_energized: bool = True, profile: str = "osha") -> EngineCfg:
    toxic_unit = "ppm" if profile == "osha" else "mg/m3"
    sigs = [
        signal("cs1.o2", profile, "o2", "%vol", "cs1", confined=True),
        signal("cs1.lel", profile, "lel", "%LEL", "cs1", confined=True),
        signal("cs1.h2s", profile, "h2s", toxic_unit, "cs1", confined=True),
        signal("cs1.co", profile, "co", toxic_unit, "cs1", confined=True),
        signal("gen.co", profile, "co", toxic_unit, "gen"),
    ]
    outs = [
        OutputCfg("perm", K.GAS_PERMISSIVE, "cs1"),
        # a horn wired de-energize-to-sound: its safe (fault) value is the sounding one
        OutputCfg("horn", K.HORN, "cs1", safe=not horn_active_energized, active_energized=horn_active_energized),
        OutputCfg("beacon", K.BEACON, "cs1"),
        OutputCfg("ign", K.IGNITION, "cs1"),
        OutputCfg("perm-gen", K.GAS_PERMISSIVE, "gen"),
    ]
    return EngineCfg(
        signals=MappingProxyType({s.id: s for s in sigs}),
        zones=MappingProxyType(
            {"cs1": ZoneCfg("cs1", ZoneKind.CONFINED_SPACE), "gen": ZoneCfg("gen", ZoneKind.GENERAL)}
        ),
        outputs=MappingProxyType({o.id: o for o in outs}),
        silence_s=60.0,
    )


CFG = make_cfg()
NORMAL = {"o2": 20.9, "lel": 0.0, "h2s": 0.0, "co": 0.0}
CS1 = [sid for sid, sc in CFG.signals.items() if sc.zone == "cs1"]


def ack(target: str, zone: str = "") -> Ack:
    return Ack(target, "alice", "supervisor", UTC, zone)


def run(
    events: Iterable[tuple[Event, float]], cfg: EngineCfg = CFG, s: EngineState | None = None
) -> tuple[EngineState, list[Action]]:
    s = engine.initial(cfg) if s is None else s
    acts: list[Action] = []
    for ev, now in events:
        s, a = step(s, ev, now, cfg)
        acts.extend(a)
    return s, acts


def all_good(t: float, cfg: EngineCfg = CFG, zone: str = "cs1") -> list[tuple[Event, float]]:
    return [(Reading(sid, NORMAL[sc.quantity], t), t) for sid, sc in cfg.signals.items() if sc.zone == zone]


def coil_on(s: EngineState, oid: str, cfg: EngineCfg = CFG) -> bool:
    """The output's function is active (polarity applied)."""
    return s.outputs[oid] == cfg.outputs[oid].coil(True)


# --- whole-result steps ---


def test_first_tick_changes_nothing_but_time() -> None:
    s0 = engine.initial(CFG)
    assert s0.outputs == {"perm": False, "horn": False, "beacon": False, "ign": False, "perm-gen": False}
    assert step(s0, Tick(), 0.0, CFG) == (replace(s0, started_at=0.0, steps=1), ())


def test_permissive_energizes_only_with_the_last_good_signal() -> None:
    s, acts = run(all_good(1.0)[:-1])
    assert not coil_on(s, "perm") and not any(isinstance(a, SetOutput) for a in acts)
    ev, now = all_good(1.0)[-1]
    s2, acts2 = step(s, ev, now, CFG)
    assert acts2 == (SetOutput("perm", True, "gas_permissive active"),)
    assert s2.outputs == {"perm": True, "horn": False, "beacon": False, "ign": False, "perm-gen": False}


@pytest.fixture
def ready() -> EngineState:
    """cs1 all good at t=10, permissive energized."""
    s, _ = run(all_good(10.0))
    assert coil_on(s, "perm")
    return s


def test_o2_low_whole_step(ready: EngineState) -> None:
    o2 = CFG.signals["cs1.o2"]
    expected_sig = SignalState(
        value=19.0,
        quality=Quality.GOOD,
        reason="",
        at=12.0,
        levels=MappingProxyType({"low": LevelState(True, True, 12.0), "low_low": LevelState(), "high": LevelState()}),
    )
    evac = ConfinedState(evacuating=True, evac_since=12.0, evac_reason="evacuate-level gas alarm")
    expected_state = replace(
        ready,
        signals=MappingProxyType({**ready.signals, "cs1.o2": expected_sig}),
        outputs=MappingProxyType({"perm": False, "horn": True, "beacon": True, "ign": False, "perm-gen": False}),
        plant=replace(ready.plant, confined=MappingProxyType({"cs1": evac})),
        steps=ready.steps + 1,
    )
    summary = {
        "severity": "evacuate",
        "levels": {"low": {"active": True, "latched": True}},
        "fault": None,
        "acked_by": None,
    }
    got_state, got_actions = step(ready, Reading("cs1.o2", 19.0, 12.0), 12.0, CFG)
    assert (got_state.hazards.raised, got_state.hazards.suppressed) == (2, 0)  # the gas and the evacuation hazard
    expected_state = replace(expected_state, hazards=got_state.hazards)
    assert (got_state, got_actions) == (
        expected_state,
        (
            AlarmUpdate("cs1", "cs1.o2", Severity.EVACUATE, summary),
            HazardRecord(
                zone="cs1",
                category="gas",
                level="major",
                title="o2 low in cs1",
                evidence={"signal": "cs1.o2", "value": 19.0, "limit": 19.5, "unit": "%vol"},
            ),
            # A confined space evacuates in the same step (nobody inside here, so nobody listed).
            HazardRecord(
                zone="cs1",
                category="confined_space",
                level="major",
                title="evacuation of cs1: evacuate-level gas alarm",
                evidence={"inside": [], "reason": "evacuate-level gas alarm"},
            ),
            EvacuationUpdate("cs1", True, (), "evacuate-level gas alarm"),
            SetOutput("perm", False, "gas_permissive inactive"),
            SetOutput("horn", True, "horn active"),
            SetOutput("beacon", True, "beacon active"),
        ),
    )
    assert expected_sig.severity(o2) is Severity.EVACUATE


def test_silence_mutes_horn_then_rearms(ready: EngineState) -> None:
    s, _ = step(ready, Reading("cs1.o2", 19.0, 12.0), 12.0, CFG)
    s, acts = step(s, Silence("cs1", "bob", UTC), 13.0, CFG)
    assert acts == (
        Note("zone_silenced", {"zone": "cs1", "user": "bob", "for_s": 60.0}),
        SetOutput("horn", False, "horn inactive"),
    )
    assert s.silenced_until == {"cs1": 73.0}
    assert coil_on(s, "beacon") and not coil_on(s, "perm")  # the beacon is never silenced
    s, acts = step(s, Tick(), 72.9, CFG)
    assert [a for a in acts if isinstance(a, SetOutput)] == []
    s, acts = step(s, Tick(), 73.0, CFG)  # re-arms after silence_s
    assert [a for a in acts if isinstance(a, SetOutput)] == [SetOutput("horn", True, "horn active")]


def test_latched_alarm_clears_only_by_ack_after_return(ready: EngineState) -> None:
    s, _ = run([(Reading("cs1.lel", 12.0, 11.0), 11.0)], s=ready)  # alarm1 (ALARM, latching)
    assert coil_on(s, "beacon") and not coil_on(s, "horn") and not coil_on(s, "perm")
    s, acts = step(s, ack("cs1.lel"), 11.5, CFG)  # while active: recorded, nothing clears
    assert acts == (
        AlarmUpdate(
            "cs1",
            "cs1.lel",
            Severity.ALARM,
            {
                "severity": "alarm",
                "levels": {"alarm1": {"active": True, "latched": True}},
                "fault": None,
                "acked_by": "alice",
            },
        ),
        Note("alarm_acknowledged", {"target": "cs1.lel", "zone": "", "user": "alice", "role": "supervisor"}),
    )
    s, _ = run([(r, 12.0) for r, _ in all_good(12.0)], s=s)  # back in range
    assert coil_on(s, "beacon") and not coil_on(s, "perm")
    s, acts = step(s, ack("*", zone="cs1"), 12.5, CFG)
    assert [a for a in acts if isinstance(a, SetOutput)] == [
        SetOutput("perm", True, "gas_permissive active"),
        SetOutput("beacon", False, "beacon inactive"),
    ]
    assert s.signals["cs1.lel"].levels["alarm1"] == LevelState(False, False, 11.0)


def test_non_latching_clears_by_itself(ready: EngineState) -> None:
    s, _ = step(ready, Reading("cs1.co", 30.0, 11.0), 11.0, CFG)  # CO alarm1: ALARM, not latching
    assert coil_on(s, "beacon") and not coil_on(s, "perm")
    s, _ = run([(r, 12.0) for r, _ in all_good(12.0)], s=s)
    assert coil_on(s, "perm") and not coil_on(s, "beacon")


def test_co_evacuate_sounds_horn(ready: EngineState) -> None:
    s, _ = step(ready, Reading("cs1.co", 50.0, 11.0), 11.0, CFG)
    assert coil_on(s, "beacon") and not coil_on(s, "horn")  # alarm2 is ALARM only
    s, _ = step(s, Reading("cs1.co", 200.0, 12.0), 12.0, CFG)
    assert coil_on(s, "horn") and coil_on(s, "beacon")


def test_other_zone_is_independent(ready: EngineState) -> None:
    s, _ = run(all_good(10.0, zone="gen"), s=ready)
    assert coil_on(s, "perm-gen")
    s, _ = step(s, Reading("gen.co", 300.0, 11.0), 11.0, CFG)
    assert not coil_on(s, "perm-gen") and coil_on(s, "perm") and not coil_on(s, "horn")


def test_stale_signal_drops_permissive_and_latches(ready: EngineState) -> None:
    # no Tick needed: freshness is judged at every step's `now`
    s, acts = step(ready, Reading("gen.co", 0.0, 15.01), 15.01, CFG)
    assert SetOutput("perm", False, "gas_permissive inactive") in acts
    s, acts = step(s, Tick(), 15.02, CFG)
    assert {a.signal for a in acts if isinstance(a, AlarmUpdate)} == set(CS1)
    assert all(s.signals[sid].fault.reason == "stale" for sid in CS1)
    s, _ = run([(r, 16.0) for r, _ in all_good(16.0)], s=s)
    assert not coil_on(s, "perm") and coil_on(s, "beacon")  # recovered but latched
    s, _ = step(s, ack("*", zone="cs1"), 16.5, CFG)
    assert coil_on(s, "perm") and not coil_on(s, "beacon")


def test_no_data_since_start_is_a_fault() -> None:
    s, _ = run([(Tick(), 100.0), (Tick(), 105.0)])
    assert not any(s.signals[sid].fault.active for sid in CFG.signals)
    s, acts = step(s, Tick(), 105.5, CFG)
    assert all(s.signals[sid].fault.reason == "stale:no_data_since_start" for sid in CFG.signals)
    assert SetOutput("beacon", True, "beacon active") in acts
    assert {a.event for a in acts if isinstance(a, Note)} == {"signal_fault"}


def test_bad_reading_drops_permissive_at_once(ready: EngineState) -> None:
    _, acts = step(ready, Reading("cs1.h2s", math.nan, 11.0, Quality.BAD, "timeout"), 11.0, CFG)
    assert acts[-2:] == (
        SetOutput("perm", False, "gas_permissive inactive"),
        SetOutput("beacon", True, "beacon active"),
    )
    assert Note("signal_fault", {"signal": "cs1.h2s", "reason": "timeout"}) in acts


def test_lel_over_range_is_fault_not_value(ready: EngineState) -> None:
    s, _ = step(ready, Reading("cs1.lel", 120.0, 11.0), 11.0, CFG)
    assert s.signals["cs1.lel"].fault.reason == "over_range:120"
    assert not coil_on(s, "perm") and coil_on(s, "beacon")


def test_output_mismatch_whole_step(ready: EngineState) -> None:
    s, _ = step(ready, Reading("cs1.o2", 19.0, 11.0), 11.0, CFG)
    assert s.outputs == {"perm": False, "horn": True, "beacon": True, "ign": False, "perm-gen": False}
    reason = "beacon: commanded True, observed False coil stuck"
    assert step(s, OutputFeedback("beacon", True, False, "coil stuck"), 12.0, CFG) == (
        replace(
            s,
            output_fault=reason,
            outputs=MappingProxyType({"perm": False, "horn": False, "beacon": False, "ign": False, "perm-gen": False}),
            steps=s.steps + 1,
        ),
        (
            Note("output_fault", {"output": "beacon", "reason": reason}),
            SetOutput("horn", False, f"output fault: {reason}"),
            SetOutput("beacon", False, f"output fault: {reason}"),
        ),
    )


def test_output_fault_until_ack(ready: EngineState) -> None:
    s, _ = step(ready, OutputFeedback("perm", True, None, "read failed"), 11.0, CFG)
    assert s.output_fault and s.outputs["perm"] is False
    s, _ = run([(r, 12.0) for r, _ in all_good(12.0)], s=s)
    s, acts = step(s, OutputFeedback("ign", False, False), 12.5, CFG)  # a matching read-back clears nothing
    assert s.output_fault and acts == ()
    s, acts = step(s, ack("outputs"), 13.0, CFG)
    assert s.output_fault == ""
    assert acts == (
        Note("output_fault_acknowledged", {"user": "alice", "was": "perm: commanded True, observed None read failed"}),
        SetOutput("perm", True, "gas_permissive active"),
    )


def test_matching_feedback_is_quiet(ready: EngineState) -> None:
    assert step(ready, OutputFeedback("perm", True, True), 11.0, CFG) == (replace(ready, steps=ready.steps + 1), ())


@pytest.mark.parametrize(
    ("ev", "match"),
    [
        (Reading("nope", 1.0, 1.0), "unknown signal 'nope'"),
        (ack("nope"), "unknown target 'nope'"),
        (ack("*", zone="nowhere"), "unknown zone 'nowhere'"),
        (Silence("nowhere", "bob", UTC), "unknown zone 'nowhere'"),
    ],
)
def test_illegal_events_raise(ev: Event, match: str) -> None:
    with pytest.raises(EngineError, match=match):
        step(engine.initial(CFG), ev, 1.0, CFG)


def test_rejected_and_device_status_are_recorded(ready: EngineState) -> None:
    s, acts = step(ready, Rejected("mqtt:x", "bad_payload"), 11.0, CFG)
    assert s.rejected == {"bad_payload": 1} and acts == ()
    s, acts = step(s, DeviceStatus("det-cs1", False, "timeout"), 11.0, CFG)
    assert acts[0] == Note("device_down", {"device": "det-cs1", "reason": "timeout"})
    s, acts = step(s, DeviceStatus("det-cs1", False, "timeout"), 11.1, CFG)
    assert acts == ()  # on change only


def test_gb_profile_zone() -> None:
    cfg = make_cfg(profile="gb")
    s, _ = run(all_good(1.0, cfg), cfg)
    assert coil_on(s, "perm", cfg)
    s, _ = step(s, Reading("cs1.h2s", 10.0, 2.0), 2.0, cfg)  # 10 mg/m3 = GB alarm 1
    assert not coil_on(s, "perm", cfg) and coil_on(s, "beacon", cfg) and not coil_on(s, "horn", cfg)
    s, _ = step(s, Reading("cs1.h2s", 20.0, 3.0), 3.0, cfg)  # alarm 2 evacuates
    assert coil_on(s, "horn", cfg)


# --- engine gaps found while testing (fixed in rules/engine.py) ---


def test_silence_does_not_pre_mute_a_later_alarm(ready: EngineState) -> None:
    s, _ = step(ready, Silence("cs1", "bob", UTC), 11.0, CFG)  # nothing active: nothing to mute
    s, _ = step(s, Reading("cs1.o2", 17.0, 20.0), 20.0, CFG)
    assert coil_on(s, "horn")


def test_device_down_drops_permissive_at_once(ready: EngineState) -> None:
    s, _ = step(ready, DeviceStatus("det-cs1", False, "timeout"), 10.5, CFG)
    assert not coil_on(s, "perm")


# --- properties ---

SIG_RANGE = {"o2": (0.0, 30.0), "lel": (0.0, 130.0), "h2s": (0.0, 30.0), "co": (0.0, 300.0)}
SIDS = sorted(CFG.signals)


@st.composite
def reading_op(draw: st.DrawFn) -> tuple[str, str, float]:
    sid = draw(st.sampled_from(SIDS))
    q = CFG.signals[sid].quantity
    lo, hi = SIG_RANGE[q]
    v = draw(st.one_of(st.just(NORMAL[q]), st.just(NORMAL[q]), st.floats(lo, hi)))
    return ("read", sid, v)


BURST = st.tuples(st.just("burst"), st.sampled_from(["cs1", "gen"]), st.just(0.0))
OPS = st.one_of(
    BURST,
    BURST,
    reading_op(),
    reading_op(),
    reading_op(),
    st.tuples(st.just("bad"), st.sampled_from(SIDS), st.just(0.0)),
    st.tuples(st.just("tick"), st.just(""), st.just(0.0)),
    st.tuples(st.just("ack"), st.sampled_from([*SIDS, "*"]), st.just(0.0)),
    st.tuples(st.just("silence"), st.just(""), st.just(0.0)),
)
DT = st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 2.0), st.floats(2.0, 80.0))


@dataclass
class Shell:
    """What the shell sees: coils driven only by SetOutput actions, starting at the safe values."""

    coils: dict[str, bool]

    @classmethod
    def start(cls, cfg: EngineCfg) -> Shell:
        return cls({oid: o.safe for oid, o in cfg.outputs.items()})

    def apply(self, acts: Iterable[Action]) -> None:
        for a in acts:
            if isinstance(a, SetOutput):
                assert self.coils[a.output] != a.value, f"redundant write {a}"
                self.coils[a.output] = a.value


def to_events(op: tuple[str, str, float], now: float) -> list[Event]:
    """One op -> its events; "burst" is a normal reading of every signal of a zone (a poll cycle)."""
    if op[0] == "burst":
        return [Reading(sc.id, NORMAL[sc.quantity], now) for sc in CFG.signals_in(op[1])]
    return [to_event(op, now)]


def to_event(op: tuple[str, str, float], now: float) -> Event:
    kind, arg, v = op
    match kind:
        case "read":
            return Reading(arg, v, now)
        case "bad":
            return Reading(arg, math.nan, now, Quality.BAD, "timeout")
        case "tick":
            return Tick()
        case "ack":
            return ack(arg, zone="cs1") if arg == "*" else ack(arg)
        case "silence":
            return Silence("cs1", "bob", UTC)
        case "mismatch":
            return OutputFeedback(arg, True, False, "stuck")
    raise AssertionError(kind)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.lists(st.tuples(OPS, DT), max_size=30),
    o2=st.floats(0.0, 19.5),
    dt=DT,
    horn_energized=st.booleans(),
)
def test_o2_low_always_alarms_and_denies(
    prefix: list[tuple[tuple[str, str, float], float]], o2: float, dt: float, horn_energized: bool
) -> None:
    cfg = make_cfg(horn_active_energized=horn_energized)
    s, now, shell = engine.initial(cfg), 0.0, Shell.start(cfg)
    for op, d in prefix:
        now += d
        for ev in to_events(op, now):
            s, acts = step(s, ev, now, cfg)
            shell.apply(acts)
    now += dt
    s, acts = step(s, Reading("cs1.o2", o2, now), now, cfg)
    shell.apply(acts)
    assert s.signals["cs1.o2"].levels["low"].active
    assert engine.zone_severity(s, "cs1", cfg) >= Severity.EVACUATE
    assert shell.coils == dict(s.outputs)
    assert not coil_on(s, "perm", cfg) and shell.coils["perm"] == cfg.outputs["perm"].coil(False)
    assert coil_on(s, "beacon", cfg)
    if s.silenced_until.get("cs1", -math.inf) <= now:
        assert coil_on(s, "horn", cfg)


LATCHING = {(sid, lim.name) for sid, sc in CFG.signals.items() for lim in sc.limits if lim.latching}
NO_ACK_OPS = st.one_of(
    BURST,
    BURST,
    reading_op(),
    reading_op(),
    st.tuples(st.just("bad"), st.sampled_from(SIDS), st.just(0.0)),
    st.tuples(st.just("tick"), st.just(""), st.just(0.0)),
    st.tuples(st.just("silence"), st.just(""), st.just(0.0)),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(NO_ACK_OPS, DT), max_size=40))
def test_no_reading_sequence_clears_a_latched_alarm(ops: list[tuple[tuple[str, str, float], float]]) -> None:
    s, now = engine.initial(CFG), 0.0
    latched: dict[tuple[str, str], Severity] = {}
    for op, d in ops:
        now += d
        for ev in to_events(op, now):
            s, _ = step(s, ev, now, CFG)
        for sid, name in LATCHING:
            if s.signals[sid].levels.get(name, LevelState()).active:
                (lim,) = [lim for lim in CFG.signals[sid].limits if lim.name == name]
                latched[(sid, name)] = lim.severity
        for (sid, name), sev in latched.items():
            assert s.signals[sid].levels[name].latched, (sid, name)
            assert engine.zone_severity(s, CFG.signals[sid].zone, CFG) >= sev
            if CFG.signals[sid].zone == "cs1" and sev >= Severity.ALARM:
                assert coil_on(s, "beacon") and not coil_on(s, "perm")


def _below_alarm(sc: SignalCfg, v: float) -> bool:
    return not any(
        lim.tripped(v) for lim in sc.limits if lim.basis is Basis.INSTANT and lim.severity >= Severity.ALARM
    ) and (sc.over_range is None or v <= sc.over_range)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(OPS, DT), max_size=40))
def test_permissive_only_with_every_signal_good_fresh_below_alarm(
    ops: list[tuple[tuple[str, str, float], float]],
) -> None:
    s, now, shell = engine.initial(CFG), 0.0, Shell.start(CFG)
    last: dict[str, tuple[Quality, float, float]] = {}  # sid -> (quality, value, at), as the test saw them
    for op, d in ops:
        now += d
        for ev in to_events(op, now):
            s, acts = step(s, ev, now, CFG)
            shell.apply(acts)
            if isinstance(ev, Reading):
                last[ev.signal] = (ev.quality, ev.value, ev.at)
            assert shell.coils == dict(s.outputs)
            for zone, perm in (("cs1", "perm"), ("gen", "perm-gen")):
                if not coil_on(s, perm):
                    continue
                event(f"{perm} energized")  # --hypothesis-show-statistics: the property is not vacuous
                for sc in CFG.signals_in(zone):
                    q, v, at = last[sc.id]  # KeyError here = energized without any reading
                    assert q is Quality.GOOD, sc.id
                    assert now - at <= sc.stale_after_s, sc.id
                    assert _below_alarm(sc, v), (sc.id, v)
                    sst = s.signals[sc.id]
                    assert not sst.fault.active and not sst.fault.latched, sc.id


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.tuples(OPS, DT), max_size=30),
    bad=st.sampled_from(CS1),
    how=st.sampled_from(["bad", "over", "stale"]),
    after=st.lists(st.tuples(NO_ACK_OPS, DT), max_size=15),
)
def test_stale_or_faulted_input_never_leaves_permissive_energized(
    ops: list[tuple[tuple[str, str, float], float]],
    bad: str,
    how: str,
    after: list[tuple[tuple[str, str, float], float]],
) -> None:
    s, now = engine.initial(CFG), 0.0
    for op, d in ops:
        now += d
        for ev in to_events(op, now):
            s, _ = step(s, ev, now, CFG)
    if how == "bad":
        s, _ = step(s, Reading(bad, math.nan, now, Quality.BAD, "crc_error"), now, CFG)
    elif how == "over":
        s, _ = step(s, Reading(bad, 1e6, now), now, CFG)
        if CFG.signals[bad].over_range is None:
            return  # only LEL has an over-range; a huge value is then an alarm, tested elsewhere
    else:
        if s.started_at is None:
            s, _ = step(s, Tick(), now, CFG)  # staleness counts from the first step
        now = max(now, s.signals[bad].at or now) + CFG.signals[bad].stale_after_s + 0.001
        s, _ = step(s, Tick(), now, CFG)
    assert not coil_on(s, "perm")
    assert s.signals[bad].fault.active
    for op, d in after:  # whatever comes later, without an acknowledgement
        now += d
        for ev in to_events(op, now):
            s, _ = step(s, ev, now, CFG)
        assert not coil_on(s, "perm")


MISMATCH = st.tuples(st.just("mismatch"), st.sampled_from(sorted(CFG.outputs)), st.just(0.0))


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.tuples(OPS, DT), max_size=20),
    after=st.lists(st.tuples(st.one_of(OPS, MISMATCH), DT), max_size=25),
    out=st.sampled_from(sorted(CFG.outputs)),
    horn_energized=st.booleans(),
)
def test_output_mismatch_forces_safe_until_ack(
    before: list[tuple[tuple[str, str, float], float]],
    after: list[tuple[tuple[str, str, float], float]],
    out: str,
    horn_energized: bool,
) -> None:
    cfg = make_cfg(horn_active_energized=horn_energized)
    safe = {oid: o.safe for oid, o in cfg.outputs.items()}
    s, now, shell = engine.initial(cfg), 0.0, Shell.start(cfg)
    for op, d in before:
        now += d
        for ev in to_events(op, now):
            s, acts = step(s, ev, now, cfg)
            shell.apply(acts)
    s, acts = step(s, OutputFeedback(out, not s.outputs[out], s.outputs[out], "forced"), now, cfg)
    shell.apply(acts)
    assert s.output_fault
    assert dict(s.outputs) == safe and shell.coils == safe  # in the same step
    for op, d in after:
        now += d
        for ev in to_events(op, now):
            s, acts = step(s, ev, now, cfg)
            shell.apply(acts)
        assert dict(s.outputs) == safe and shell.coils == safe
    s, acts = step(s, ack("outputs"), now, cfg)
    shell.apply(acts)
    assert not s.output_fault and shell.coils == dict(s.outputs)
    assert dict(s.outputs) == engine.desired_outputs(s, now, cfg)


def _mapping_eq(a: Mapping[str, bool], b: Mapping[str, bool]) -> bool:
    return dict(a) == dict(b)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(OPS, DT), max_size=40))
def test_ignition_never_released_and_state_agrees_with_derivation(
    ops: list[tuple[tuple[str, str, float], float]],
) -> None:
    s, now = engine.initial(CFG), 0.0
    for op, d in ops:
        now += d
        for ev in to_events(op, now):
            s, _ = step(s, ev, now, CFG)
        assert s.outputs["ign"] is False
        assert _mapping_eq(s.outputs, engine.desired_outputs(s, now, CFG))
