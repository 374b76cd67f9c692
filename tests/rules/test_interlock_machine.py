"""rules.interlock under random interleavings of the world (Hypothesis RuleBasedStateMachine).

The machine keeps its own model of the world (gas readings through rules.gas, badge
sightings, accepted face events, the permit's lifecycle, output faults, overdue bumps)
and, after EVERY step, checks the safety invariants against an oracle written here
independently of rules.interlock_checks.
"""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from rules import gas as gasrule
from rules.config import Severity, SignalCfg, ZoneKind
from rules.events import FaceMatch, Quality, Reading
from rules.interlock import (
    EXPIRED,
    HotWorkCfg,
    HotWorkState,
    Ignition,
    Inputs,
    PermitNotice,
    PermitView,
    initial,
    step,
)
from rules.permit import (
    TERMINAL,
    Competency,
    GasTest,
    IllegalTransition,
    Permit,
    PermitState,
    PermitType,
    Person,
    Role,
    add_gas_test,
    gas_test_passed,
    last_gas_test,
    last_suspension_utc,
    transition,
)
from rules.profiles import OSHA

S = PermitState
T0 = 1_714_550_400.0
H = 3600.0
CFG = HotWorkCfg()
O2 = SignalCfg("o2-1", "o2", "%vol", "z1", "gas-1", OSHA["o2"].limits)
# A hot-work limit below alarm 1, so that gas_ok alone (not the alarm) must deny between the two.
LEL = SignalCfg("lel-1", "lel", "%LEL", "z1", "gas-1", OSHA["lel"].limits, hot_work_max=5.0, over_range=100.0)
STATS: Counter[str] = Counter()


def gtest(at: float, o2: float = 20.9) -> GasTest:
    return GasTest(at, "t1", o2, 0.0, 0.0, 0.0, "GX-1", at - H, at + 30 * 24 * H)


class Interlock(RuleBasedStateMachine):
    """World model + the rule under test. `self.s` is the interlock state after the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    @initialize(
        off=st.floats(-1e9, 2e9, allow_nan=False, allow_infinity=False),
        length=st.sampled_from([1200.0, 2400.0, 4 * H]),
        test_age=st.sampled_from([0.0, 600.0, 1700.0, 1900.0]),
    )
    def setup(self, off: float, length: float, test_age: float) -> None:
        self.off = off
        u = self.now + off
        self.permit = Permit(
            permit_id="HW-1",
            type=PermitType.HOT_WORK,
            grade="first",
            site_id="s",
            zone_id="z1",
            valid_from=u - 60,
            valid_to=u + length,
            state=S.ACTIVE,
            people=(Person("op1", Role.OPERATOR), Person("fw1", Role.FIRE_WATCH), Person("is1", Role.ISSUER)),
            gas_tests=(gtest(u - test_age),),
            competencies=(Competency("op1", "C", "hot_work", u + 365 * 24 * H),),
        )
        self.signals = {
            O2.id: gasrule.on_reading(gasrule.initial(O2), Reading(O2.id, 20.9, self.now), O2),
            LEL.id: gasrule.on_reading(gasrule.initial(LEL), Reading(LEL.id, 0.0, self.now), LEL),
        }
        self.seen: dict[str, float | None] = {"op1": self.now, "fw1": self.now}
        self.faces: dict[str, FaceMatch] = {}
        self.accepted: list[FaceMatch] = []
        self.seq = 0
        self.output_fault = False
        self.overdue: frozenset[str] = frozenset()
        self.s: HotWorkState = initial("HW-1")
        self.last_trip: float | None = None
        self.last_end: float | None = None
        self.session_start: float | None = None
        self.ended_ever = False
        self.expired_notices = 0
        self._accept_face("op1", "z1", self.now)
        self._step()

    # --- helpers ----------------------------------------------------------------------

    def utc(self) -> float:
        return self.now + self.off

    def _accept_face(self, person: str, zone: str, at: float) -> None:
        self.seq += 1
        f = FaceMatch(f"term-{zone}", person, at, "2024-05-01T08:00:00Z", self.seq, zone)
        self.faces[person] = f
        self.accepted.append(f)

    def inputs(self) -> Inputs:
        sev = max(self.signals[c.id].severity(c) for c in (O2, LEL))
        return Inputs(
            permit=PermitView(self.permit, self.off),
            zone="z1",
            zone_kind=ZoneKind.HOT_WORK,
            gas=((O2, self.signals[O2.id]), (LEL, self.signals[LEL.id])),
            zone_severity=sev,
            present=dict(self.seen),
            faces=dict(self.faces),
            overdue=self.overdue,
            output_fault=self.output_fault,
        )

    def _reading(self, c: SignalCfg, r: Reading) -> None:
        self.signals[c.id] = gasrule.on_reading(self.signals[c.id], r, c)

    def _transition(self, to: PermitState) -> None:
        try:
            self.permit = transition(self.permit, to, self.utc(), "machine")
        except IllegalTransition:
            pass  # the ledger refused it: the permit is unchanged
        if self.permit.state in TERMINAL:
            self.ended_ever = True

    # --- the rule under test, and the invariants after every step --------------------

    def _step(self, forged: bool = False) -> None:
        before = self.s
        inp = self.inputs()
        after, acts = step(before, inp, self.now, CFG)
        STATS["steps"] += 1
        cl = after.checklist
        assert cl is not None
        # Ignition is emitted exactly on a change of `released`, and says the new value.
        ign = [a for a in acts if isinstance(a, Ignition)]
        assert len(ign) == (before.released != after.released)
        assert all(a.released == after.released for a in ign)
        self.expired_notices += sum(1 for a in acts if isinstance(a, PermitNotice) and a.kind == EXPIRED)
        assert self.expired_notices <= 1
        if self.utc() >= self.permit.valid_to:
            self.ended_ever = True
        # Any failing item => not released after that same step; released => every item ok.
        if not cl.ok:
            assert not after.released, cl.reasons()
        if after.released:
            assert cl.ok and all(c.ok for c in cl.items)
            self._oracle(inp, released_now=not before.released)
            STATS["released_steps"] += 1
        if forged:
            # A replayed/forged face event produced no FaceMatch: it can never cause a release.
            assert after.released <= before.released
        if before.released and not after.released:
            self.last_end = self.now
            if after.trip_latched:
                self.last_trip = self.now
                STATS["trips"] += 1
        if after.released and not before.released:
            STATS["releases"] += 1
            if self.session_start is None or self.last_end is None or self.now - self.last_end > CFG.break_retest_s:
                self.session_start = self.now
        self.s = after

    def _oracle(self, inp: Inputs, released_now: bool) -> None:
        """Independent statement of what a release requires (not using rules.interlock_checks)."""
        p, now = self.permit, self.now
        assert not self.ended_ever, "released after valid_to / CLOSED / CANCELLED / EXPIRED"
        assert p.state is S.ACTIVE and p.valid_from <= self.utc() < p.valid_to
        for person in ("op1", "fw1"):
            seen = self.seen[person]
            assert seen is not None and 0 <= now - seen < CFG.presence_fresh_s, person
        for c in (O2, LEL):
            s = self.signals[c.id]
            assert s.quality is Quality.GOOD and s.at is not None and now - s.at <= c.stale_after_s
            assert not s.fault.active and s.severity(c) < Severity.ALARM
        assert self.signals[LEL.id].value < 5.0
        assert 19.5 < self.signals[O2.id].value < 23.5
        assert not self.output_fault and LEL.id not in self.overdue
        test = last_gas_test(p)
        assert test is not None and gas_test_passed(test)
        susp = last_suspension_utc(p)
        assert susp is None or test.at_utc >= susp
        f = self.faces["op1"]
        assert f in self.accepted and f.zone == "z1" and f.person == "op1"
        if released_now:
            assert now - f.at <= CFG.face_window_s
            # After a trip, release needs a face verification newer than the trip.
            assert self.last_trip is None or f.at > self.last_trip
            t = test.at_utc - self.off
            short_break = self.last_end is not None and now - self.last_end <= CFG.break_retest_s
            if short_break and self.session_start is not None:
                assert t >= self.session_start - CFG.gas_test_validity_s or now - t <= CFG.gas_test_validity_s
            else:
                assert now - t <= CFG.gas_test_validity_s
                assert self.last_end is None or t > self.last_end
        else:
            assert self.s.face_at_release is not None and f.at >= self.s.face_at_release

    @invariant()
    def never_released_after_the_end(self) -> None:
        if self.ended_ever:
            assert not self.s.released

    # --- time ---------------------------------------------------------------------------

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 6.0, 11.0, 45.0, 61.0, 300.0, 1900.0, 3700.0]), tick=st.booleans())
    def time_passes(self, dt: float, tick: bool) -> None:
        """Time passes; with a Tick the gas rule marks stale signals, without one (another
        event arrives first) the interlock must see the staleness by itself."""
        self.now += dt
        if tick:
            self.signals = {c.id: gasrule.on_tick(self.signals[c.id], c, self.now, 1000.0) for c in (O2, LEL)}
        self._step()

    @rule()
    def plant_keeps_reporting(self) -> None:
        """What a healthy plant does every second: detectors read, badges are heard."""
        self._reading(O2, Reading(O2.id, 20.9, self.now))
        self._reading(LEL, Reading(LEL.id, 0.0, self.now))
        self.seen = {"op1": self.now, "fw1": self.now}
        self._step()

    # --- gas ----------------------------------------------------------------------------

    @rule(
        sig=st.sampled_from([O2, LEL]),
        value=st.sampled_from(["good", "high_lel", "lel_over_hot_work", "lel_near_limit", "o2_low", "o2_high", "bad"]),
    )
    def reading(self, sig: SignalCfg, value: str) -> None:
        v = {
            "good": 20.9 if sig is O2 else 0.0,
            "high_lel": 12.0,
            "lel_over_hot_work": 6.0,
            "lel_near_limit": 4.9,
            "o2_low": 19.4,
            "o2_high": 23.6,
        }.get(value)
        if v is None:
            r = Reading(sig.id, math.nan, self.now, Quality.BAD, "timeout")
        else:
            r = Reading(sig.id, v, self.now)
        self._reading(sig, r)
        self._step()

    @rule()
    def acknowledge(self) -> None:
        self.signals = {c.id: gasrule.on_ack(self.signals[c.id], "sup1", "2024-05-01T08:00:00Z") for c in (O2, LEL)}
        self._step()

    @rule()
    def toggle_overdue(self) -> None:
        self.overdue = frozenset() if self.overdue else frozenset({LEL.id})
        self._step()

    @rule()
    def toggle_output_fault(self) -> None:
        self.output_fault = not self.output_fault
        self._step()

    # --- presence -----------------------------------------------------------------------

    @rule(person=st.sampled_from(["op1", "fw1"]), where=st.sampled_from(["zone", "elsewhere", "unknown"]))
    def presence(self, person: str, where: str) -> None:
        # The engine passes last-seen-in-this-zone; elsewhere and UNKNOWN both arrive as None.
        self.seen[person] = self.now if where == "zone" else None
        self._step()

    # --- faces --------------------------------------------------------------------------

    @rule(kind=st.sampled_from(["good", "other_zone", "old", "other_person", "stranger"]))
    def face(self, kind: str) -> None:
        match kind:
            case "good":
                self._accept_face("op1", "z1", self.now)
            case "other_zone":
                self._accept_face("op1", "z2", self.now)
            case "old":
                self._accept_face("op1", "z1", self.now - 90.0)
            case "other_person":
                self._accept_face("fw1", "z1", self.now)
            case _:
                self._accept_face("x9", "z1", self.now)
        self._step()

    @rule()
    def forged_or_replayed_face(self) -> None:
        # The face driver rejects it: no FaceMatch reaches the rule (a Rejected event is counted).
        STATS["forged"] += 1
        self._step(forged=True)

    # --- the permit ---------------------------------------------------------------------

    @rule(to=st.sampled_from([S.SUSPENDED, S.ACTIVE, S.CLOSED, S.CANCELLED]))
    def permit_change(self, to: PermitState) -> None:
        self._transition(to)
        self._step()

    @rule(passed=st.booleans())
    def new_gas_test(self, passed: bool) -> None:
        self.permit = add_gas_test(self.permit, gtest(self.utc(), 20.9 if passed else 18.0))
        self._step()


def test_interlock_state_machine() -> None:
    STATS.clear()
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        Interlock,
        settings=settings(
            max_examples=400,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(f"\ninterlock machine: {dict(STATS)}")
    # The machine must actually exercise releases, trips and forged events (else it proves nothing).
    assert STATS["releases"] > 50 and STATS["trips"] > 20 and STATS["released_steps"] > 100
    assert STATS["forged"] > 0
