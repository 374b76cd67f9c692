"""engine.step_readings (a batch of telemetry readings in one step) against folding engine.step.

The batch is a speed-up only: for any sequence of readings (gas and non-gas, good, bad,
over-range, late, in and out of alarm) it must end in the same signals, alarms, hazards,
confined-space and output state as stepping them one by one, and every drop of an output
must come at the reading that caused it (never deferred to the end of the batch).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import engine
from rules.actions import Action, SetOutput
from rules.config import Direction, EngineCfg, Limit, OutputCfg, OutputKind, Severity, SignalCfg, ZoneCfg, ZoneKind
from rules.engine import EngineError, EngineState
from rules.events import Quality, Reading, Tick
from rules.profiles import resolve

K = OutputKind
TEMP_LIMITS = (
    Limit("high", Direction.HIGH, 60.0, 2.0, False, Severity.WARNING),
    Limit("high_high", Direction.HIGH, 80.0, 2.0, True, Severity.ALARM),
)


def _gas(sid: str, q: str, unit: str, zone: str) -> SignalCfg:
    r = resolve("osha", q, unit, confined=True)
    return SignalCfg(sid, q, unit, zone, f"det-{zone}", r.limits, 5.0, r.hot_work_max, r.over_range)


def _temp(sid: str, zone: str) -> SignalCfg:
    return SignalCfg(sid, "temperature", "degC", zone, f"t-{zone}", TEMP_LIMITS, 5.0, None, 150.0)


SIGNALS = (
    _gas("cs.o2", "o2", "%vol", "cs"),
    _gas("cs.h2s", "h2s", "ppm", "cs"),
    _temp("cs.t1", "cs"),
    _temp("gen.t1", "gen"),
    _temp("gen.t2", "gen"),
    _temp("far.t1", "far"),
)
CFG = EngineCfg(
    signals=MappingProxyType({s.id: s for s in SIGNALS}),
    zones=MappingProxyType(
        {
            "cs": ZoneCfg("cs", ZoneKind.CONFINED_SPACE),
            "gen": ZoneCfg("gen", ZoneKind.GENERAL),
            "far": ZoneCfg("far", ZoneKind.GENERAL),
        }
    ),
    outputs=MappingProxyType(
        {
            o.id: o
            for o in (
                OutputCfg("cs-perm", K.GAS_PERMISSIVE, "cs"),
                OutputCfg("cs-beacon", K.BEACON, "cs"),
                OutputCfg("gen-perm", K.GAS_PERMISSIVE, "gen"),
                OutputCfg("gen-beacon", K.BEACON, "gen"),
                OutputCfg("far-perm", K.GAS_PERMISSIVE, "far"),
            )
        }
    ),
    silence_s=60.0,
)
NORMAL = {"o2": 20.9, "h2s": 0.0, "temperature": 25.0}


def ready(now: float = 0.0) -> EngineState:
    s = engine.initial(CFG)
    s, _ = engine.step(s, Tick(), now, CFG)
    for sc in SIGNALS:
        s, _ = engine.step(s, Reading(sc.id, NORMAL[sc.quantity], now), now, CFG)
    return s


def fold(s: EngineState, evs: list[Reading], now: float) -> tuple[EngineState, list[Action]]:
    acts: list[Action] = []
    for ev in evs:
        s, out = engine.step(s, ev, now, CFG)
        acts.extend(out)
    return s, acts


VALUE = {
    "o2": st.sampled_from([20.9, 19.4, 23.6, 21.0]),
    "h2s": st.sampled_from([0.0, 7.0, 12.0, 2.0]),
    "temperature": st.sampled_from([25.0, 61.0, 59.0, 81.0, 77.0, 200.0, math.nan]),
}


@st.composite
def readings(draw: st.DrawFn, now: float) -> Reading:
    sc = draw(st.sampled_from(SIGNALS))
    if draw(st.integers(0, 9)) == 0:
        return Reading(sc.id, math.nan, now - draw(st.floats(0, 1)), Quality.BAD, "comm_timeout")
    v = draw(VALUE[sc.quantity])
    if math.isnan(v):
        return Reading(sc.id, v, now, Quality.BAD, "sensor_fault")
    # A late sample (older than what the engine holds) must be dropped the same way in both.
    return Reading(sc.id, v, now - draw(st.sampled_from([0.0, 0.0, 0.5, 3.0])))


def _comparable(s: EngineState) -> str:
    """repr, not ==: a BAD reading keeps NaN values, and NaN != NaN."""
    return repr(replace(s, steps=0))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), warm=st.lists(st.integers(0, 5), max_size=3))
def test_batch_ends_where_one_by_one_ends(data: st.DataObject, warm: list[int]) -> None:
    s = ready()
    now = 1.0
    for w in warm:  # start from a state that already has alarms and faults in it
        sc = SIGNALS[w]
        s, _ = engine.step(s, Reading(sc.id, 1e9 if sc.quantity == "temperature" else 0.0, now), now, CFG)
    now = 2.0
    evs = data.draw(st.lists(readings(now), min_size=1, max_size=40))
    one, acts1 = fold(s, evs, now)
    batch, acts2 = engine.step_readings(s, evs, now, CFG)
    assert _comparable(batch) == _comparable(one)
    # Same alarms, hazards and notes (as multisets: quiet readings' derivations move to the end).
    assert Counter(repr(a) for a in acts2 if not isinstance(a, SetOutput)) == Counter(
        repr(a) for a in acts1 if not isinstance(a, SetOutput)
    )
    # Replaying the commanded changes gives the same final coils.
    coils1, coils2 = dict(s.outputs), dict(s.outputs)
    for a in acts1:
        if isinstance(a, SetOutput):
            coils1[a.output] = a.value
    for a in acts2:
        if isinstance(a, SetOutput):
            coils2[a.output] = a.value
    assert coils1 == coils2 == dict(one.outputs)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_drop_happens_at_its_reading(data: st.DataObject) -> None:
    """Within a batch, a reading that drops an output drops it in the actions before any later
    reading of the batch is applied: a trip followed by a return in the same batch still trips."""
    s = ready()
    now = 2.0
    evs = data.draw(st.lists(readings(now), min_size=1, max_size=30))
    _, acts1 = fold(s, evs, now)
    _, acts2 = engine.step_readings(s, evs, now, CFG)
    safe = {oid: o.safe for oid, o in CFG.outputs.items()}
    drops1 = [a for a in acts1 if isinstance(a, SetOutput) and a.value == safe[a.output]]
    drops2 = [a for a in acts2 if isinstance(a, SetOutput) and a.value == safe[a.output]]
    assert drops2 == drops1


def test_trip_and_return_inside_one_batch_still_drops() -> None:
    s = ready()
    assert s.outputs["gen-perm"] is True
    evs = [Reading("gen.t1", 25.0, 2.0), Reading("gen.t2", 85.0, 2.0), Reading("gen.t2", 25.0, 2.0)]
    s2, acts = engine.step_readings(s, evs, 2.0, CFG)
    sets = [(a.output, a.value) for a in acts if isinstance(a, SetOutput)]
    assert ("gen-perm", False) in sets and ("gen-beacon", True) in sets
    assert s2.outputs["gen-perm"] is False  # high_high latches: it stays off until acknowledged


def test_quiet_readings_take_one_derivation_and_count_one_step() -> None:
    s = ready()
    evs = [Reading(sc.id, NORMAL[sc.quantity] + 0.1 * i, 2.0) for i in range(5) for sc in SIGNALS[2:]]
    s2, acts = engine.step_readings(s, evs, 2.0, CFG)
    assert acts == ()
    assert s2.steps == s.steps + 1
    assert s2.signals["gen.t2"].value == pytest.approx(25.4)


def test_stale_zone_comes_back_only_with_the_batch() -> None:
    s = ready()
    s, _ = engine.step(s, Tick(), 10.0, CFG)  # everything stale: all permissives off, faults latched
    assert not any(s.outputs[o] for o in ("cs-perm", "gen-perm", "far-perm"))
    evs = [Reading(sc.id, NORMAL[sc.quantity], 10.0) for sc in SIGNALS]
    one, _ = fold(s, evs, 10.0)
    batch, _ = engine.step_readings(s, evs, 10.0, CFG)
    assert _comparable(batch) == _comparable(one)


def test_unknown_signal_refuses_the_whole_batch() -> None:
    s = ready()
    with pytest.raises(EngineError, match="unknown signal 'nope'"):
        engine.step_readings(s, [Reading("gen.t1", 30.0, 1.0), Reading("nope", 1.0, 1.0)], 1.0, CFG)
