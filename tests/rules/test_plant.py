"""The engine's people-and-permits layer, pure: confined spaces, evacuation, the interlock's coil."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.actions import EvacuationUpdate, HazardRecord, PeopleUpdate, SetOutput
from rules.confined import ATTENDANT_ABSENT, OVER_OCCUPANCY, UNAUTHORIZED_ENTRANT
from rules.engine import EngineState, initial, step
from rules.events import Ack, FaceMatch, PermitUpdate, Reading, Sighting, Tick
from rules.interlock import Ignition
from tests.support.plantcfg import (
    ATTENDANT,
    BADGE,
    CFG,
    ENTRANT_A,
    ENTRANT_B,
    GOOD,
    OFFSET,
    STRANGER,
    WATCH,
    WELDER,
    hot_work_permit,
)


class Run:
    """Feed events at increasing times; keep the state, the last actions and every coil."""

    def __init__(self) -> None:
        self.s: EngineState = initial(CFG)
        self.t = 0.0
        self.acts: tuple[object, ...] = ()
        self.coils = {oid: o.safe for oid, o in CFG.outputs.items()}

    def ev(self, e: object, dt: float = 0.1) -> tuple[object, ...]:
        self.t += dt
        self.s, self.acts = step(self.s, e, self.t, CFG)  # type: ignore[arg-type]
        for a in self.acts:
            if isinstance(a, SetOutput):
                self.coils[a.output] = a.value
        return self.acts

    def gas(self, **over: float) -> None:
        for sid, v in {**GOOD, **{k.replace("_", "."): x for k, x in over.items()}}.items():
            self.ev(Reading(sid, v, self.t + 0.1))

    def seen(self, person: str | None, rx: str, badge: str | None = None) -> None:
        self.ev(Sighting(badge or BADGE[person or ""], rx, -60.0, self.t + 0.1))

    def tick(self, dt: float) -> None:
        self.ev(Tick(), dt)


def test_evacuation_lists_who_is_inside_updates_as_they_leave_and_needs_empty_plus_ack() -> None:
    r = Run()
    r.gas()
    r.seen(ENTRANT_A, "rx-tank")
    r.seen(ENTRANT_B, "rx-tank")
    r.seen(ATTENDANT, "rx-manway")
    r.gas()
    assert not r.coils["horn"]
    acts = r.ev(Reading("tank.o2", 19.0, r.t + 0.1))
    evac = [a for a in acts if isinstance(a, EvacuationUpdate)]
    assert evac == [EvacuationUpdate("tank", True, (ENTRANT_A, ENTRANT_B), "evacuate-level gas alarm")]
    assert any(isinstance(a, HazardRecord) and a.category == "confined_space" for a in acts)
    assert r.coils["horn"] and r.coils["beacon"]  # in the same step
    # A walks out to the manway: the notice is updated with who is still inside.
    r.seen(ENTRANT_A, "rx-manway")
    r.tick(3.5)  # hysteresis: 6 dB stronger for 3 s
    r.seen(ENTRANT_A, "rx-manway")
    inside_now = [a for a in r.acts if isinstance(a, EvacuationUpdate)]
    assert inside_now == [] or inside_now[-1].people == (ENTRANT_B,)
    # Ventilation restored, but B is still inside: an ack does not end it.
    r.gas(tank_o2=20.9)
    r.seen(ENTRANT_B, "rx-tank")
    r.ev(Ack("*", "sup", "operator", "t", "tank"))
    assert r.s.plant.confined["tank"].evacuating and r.coils["horn"]
    # B leaves (silence: absent after 10 s), then an ack ends it.
    for _ in range(12):
        r.seen(ATTENDANT, "rx-manway")
        r.seen(ENTRANT_A, "rx-manway")
        r.gas()
        r.tick(1.0)
    assert ENTRANT_B not in r.s.plant.confined["tank"].inside
    acts = r.ev(Ack("*", "sup", "operator", "t", "tank"))
    assert EvacuationUpdate("tank", False, ()) in acts
    assert not r.s.plant.confined["tank"].evacuating and not r.coils["horn"]


def test_detector_fault_while_occupied_evacuates_but_not_when_empty() -> None:
    from rules.events import Quality

    empty = Run()
    empty.gas()
    empty.ev(Reading("tank.lel", float("nan"), empty.t, Quality.BAD, "timeout"))
    assert "tank" not in empty.s.plant.confined or not empty.s.plant.confined["tank"].evacuating
    occ = Run()
    occ.gas()
    occ.seen(ENTRANT_A, "rx-tank")
    occ.ev(Reading("tank.lel", float("nan"), occ.t, Quality.BAD, "timeout"))
    assert occ.s.plant.confined["tank"].evacuating
    assert occ.s.plant.confined["tank"].evac_reason == "gas detector fault while occupied"


@pytest.mark.parametrize(
    ("who", "attendant_at", "condition"),
    [
        ((ENTRANT_A,), None, ATTENDANT_ABSENT),
        ((ENTRANT_A,), "rx-tank", ATTENDANT_ABSENT),  # the attendant must stay outside
        ((ENTRANT_A, ENTRANT_B, WELDER), "rx-manway", OVER_OCCUPANCY),
        ((ENTRANT_A, WELDER), "rx-manway", UNAUTHORIZED_ENTRANT),
        ((ENTRANT_A, "stranger"), "rx-manway", UNAUTHORIZED_ENTRANT),
    ],
)
def test_people_conditions(who: tuple[str, ...], attendant_at: str | None, condition: str) -> None:
    r = Run()
    r.gas()
    for p in who:
        r.seen(None if p == "stranger" else p, "rx-tank", STRANGER if p == "stranger" else None)
    if attendant_at:
        r.seen(ATTENDANT, attendant_at)
    assert condition in r.s.plant.confined["tank"].conditions
    assert r.coils["beacon"] and not r.coils["horn"]
    updates = [a for a in r.acts if isinstance(a, PeopleUpdate)]
    assert all(condition in u.conditions for u in updates)


def test_no_condition_when_the_roster_is_kept() -> None:
    r = Run()
    r.gas()
    r.seen(ENTRANT_A, "rx-tank")
    r.seen(ATTENDANT, "rx-manway")
    assert dict(r.s.plant.confined["tank"].conditions) == {}
    assert not r.coils["beacon"]
    log = r.s.plant.confined["tank"].log
    assert [(m.who, m.kind) for m in log] == [(ENTRANT_A, "enter")]


def release(r: Run) -> None:
    r.ev(PermitUpdate(hot_work_permit(), OFFSET))
    r.gas()
    r.seen(WELDER, "rx-bay")
    r.seen(WATCH, "rx-bay")
    r.ev(FaceMatch("ft-bay", WELDER, r.t + 0.05, "utc", 1, "bay"))


def test_interlock_releases_the_ignition_coil_only_when_everything_holds_and_drops_in_the_same_step() -> None:
    r = Run()
    r.ev(PermitUpdate(hot_work_permit(), OFFSET))
    r.gas()
    r.seen(WELDER, "rx-bay")
    r.seen(WATCH, "rx-bay")
    assert not r.coils["ign"]  # no face yet
    acts = r.ev(FaceMatch("ft-bay", WELDER, r.t + 0.05, "utc", 1, "bay"))
    assert r.coils["ign"] and any(isinstance(a, Ignition) and a.released for a in acts)
    acts = r.ev(Reading("bay.lel", 12.0, r.t + 0.1))
    assert not r.coils["ign"]
    assert SetOutput("ign", False, "ignition inactive") in acts  # in the step that saw the LEL
    # LEL back to zero: still latched, a fresh face verification is needed.
    r.gas()
    r.seen(WELDER, "rx-bay")
    r.seen(WATCH, "rx-bay")
    assert not r.coils["ign"]


def test_overdue_bump_test_blocks_release_and_a_fresh_one_allows_it() -> None:
    from dataclasses import replace as dc_replace

    from rules.events import SensorDates

    cfg = dc_replace(CFG, sensor_intervals=MappingProxyType({"det-bay": (86400.0, 180 * 86400.0)}))
    s = initial(cfg)
    t = 1.0
    events: list[object] = [PermitUpdate(hot_work_permit(), OFFSET)]
    events += [Reading(sid, v, t) for sid, v in GOOD.items()]
    events += [Sighting(BADGE[WELDER], "rx-bay", -60.0, t), Sighting(BADGE[WATCH], "rx-bay", -60.0, t)]
    events += [SensorDates("det-bay", OFFSET - 2 * 86400, OFFSET - 86400, OFFSET)]  # bump test 2 days old
    events += [FaceMatch("ft-bay", WELDER, t, "utc", 1, "bay")]
    for e in events:
        s, _ = step(s, e, t, cfg)  # type: ignore[arg-type]
    hw = s.plant.hot_work["HW-1"]
    assert not hw.released
    assert hw.checklist is not None
    assert not next(i for i in hw.checklist.items if i.name == "sensors_in_date").ok
    s, _ = step(s, SensorDates("det-bay", OFFSET - 600, OFFSET - 86400, OFFSET), t, cfg)
    s, _ = step(s, FaceMatch("ft-bay", WELDER, t, "utc", 2, "bay"), t, cfg)
    assert s.plant.hot_work["HW-1"].released


def test_a_safety_drop_is_a_fire_hazard_and_activation_is_reported() -> None:
    from rules.interlock import PermitNotice

    r = Run()
    acts = r.ev(PermitUpdate(hot_work_permit(), OFFSET))
    assert PermitNotice("HW-1", "active", {"zone": "bay"}) in acts
    release(r)
    assert r.coils["ign"]
    acts = r.ev(Reading("bay.lel", 12.0, r.t + 0.1))
    fire = [a for a in acts if isinstance(a, HazardRecord) and a.category == "fire"]
    assert len(fire) == 1 and "gas_ok" in fire[0].title and fire[0].evidence["permit"] == "HW-1"


def test_the_operator_leaving_is_a_stop_not_a_hazard() -> None:
    r = Run()
    release(r)
    hazards: list[object] = []
    for _ in range(12):
        r.seen(WATCH, "rx-bay")
        r.gas()
        r.tick(1.0)
        hazards += [a for a in r.acts if isinstance(a, HazardRecord)]
    assert not r.coils["ign"] and hazards == []


def test_face_at_another_zones_terminal_never_releases() -> None:
    r = Run()
    r.ev(PermitUpdate(hot_work_permit(), OFFSET))
    r.gas()
    r.seen(WELDER, "rx-bay")
    r.seen(WATCH, "rx-bay")
    r.ev(FaceMatch("ft-tank", WELDER, r.t + 0.05, "utc", 1, "tank"))
    assert not r.coils["ign"]


def test_operator_walking_out_drops_ignition() -> None:
    r = Run()
    release(r)
    assert r.coils["ign"]
    for _ in range(12):  # the welder is no longer heard in the bay: UNKNOWN after 10 s
        r.seen(WATCH, "rx-bay")
        r.gas()
        r.tick(1.0)
        if not r.coils["ign"]:
            break
    assert not r.coils["ign"]


def test_permit_expiry_stops_ignition() -> None:
    r = Run()
    r.ev(PermitUpdate(hot_work_permit(valid_to_mono=20.0), OFFSET))
    r.gas()
    r.seen(WELDER, "rx-bay")
    r.seen(WATCH, "rx-bay")
    r.ev(FaceMatch("ft-bay", WELDER, r.t + 0.05, "utc", 1, "bay"))
    assert r.coils["ign"]
    while r.t < 21.0:
        r.seen(WELDER, "rx-bay")
        r.seen(WATCH, "rx-bay")
        r.gas()
        r.tick(0.5)
    assert not r.coils["ign"]


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("gas"), st.sampled_from(["bay.lel", "bay.o2"]), st.floats(0, 30)),
        st.tuples(st.just("seen"), st.sampled_from([WELDER, WATCH]), st.sampled_from(["rx-bay", "rx-tank"])),
        st.tuples(st.just("face"), st.sampled_from(["bay", "tank"]), st.just(0.0)),
        st.tuples(st.just("tick"), st.just(""), st.floats(0.1, 20)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_ignition_coil_on_implies_interlock_released_at_that_step(events: list[tuple[str, str, float]]) -> None:
    r = Run()
    release(r)
    for kind, what, x in events:
        if kind == "gas":
            r.ev(Reading(what, x, r.t + 0.1))
        elif kind == "seen":
            r.seen(what, x if isinstance(x, str) else "rx-bay")  # type: ignore[arg-type]
        elif kind == "face":
            r.ev(FaceMatch(f"ft-{what}", WELDER, r.t + 0.05, "utc", 9, what))
        else:
            r.tick(x)
        hw = r.s.plant.hot_work["HW-1"]
        assert r.coils["ign"] == hw.released
        if hw.released:
            assert hw.checklist is not None and hw.checklist.ok
            lel = r.s.signals["bay.lel"]
            assert lel.value < 10.0 and lel.good(r.t, CFG.signals["bay.lel"])
