"""rules.interlock: each condition and its reason (tables), the state machine's rules, time model."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import gas as gasrule
from rules.config import Severity, SignalCfg, ZoneKind
from rules.events import FaceMatch, Quality, Reading
from rules.interlock import (
    CHECK_NAMES,
    EXPIRED,
    FIRE_WATCH_UNTIL,
    IGNITION_DROPPED,
    IGNITION_RELEASED,
    Check,
    Checklist,
    ChecklistChanged,
    HotWorkCfg,
    HotWorkState,
    Ignition,
    Inputs,
    InterlockError,
    PermitNotice,
    PermitView,
    can_close,
    evaluate,
    fire_watch_release_at,
    initial,
    step,
)
from rules.interlock_checks import FACE_HELD
from rules.permit import (
    Competency,
    GasTest,
    Permit,
    PermitState,
    PermitType,
    Person,
    Role,
    StateChange,
    add_gas_test,
)
from rules.profiles import OSHA

S = PermitState
T0 = 1_714_550_400.0  # 2024-05-01T08:00:00Z, the UTC time at NOW
NOW = 5_000.0  # monotonic
OFF = T0 - NOW  # utc_offset taken when the permit arrived
H = 3600.0
CFG = HotWorkCfg()


def gtest(at: float, **kw: object) -> GasTest:
    base: dict[str, object] = dict(
        at_utc=at, tester="t1", o2_pct=20.9, lel_pct=0.0, h2s_ppm=0.0, co_ppm=0.0,
        instrument="GX-1", bump_utc=at - H, cal_due_utc=at + 30 * 24 * H,
    )  # fmt: skip
    base.update(kw)
    return GasTest(**base)  # type: ignore[arg-type]


def permit(**kw: object) -> Permit:
    p = Permit(
        permit_id="HW-1",
        type=PermitType.HOT_WORK,
        grade="first",
        site_id="site-a",
        zone_id="z1",
        valid_from=T0 - 600,
        valid_to=T0 + 4 * H,
        state=S.ACTIVE,
        people=(Person("op1", Role.OPERATOR), Person("fw1", Role.FIRE_WATCH), Person("is1", Role.ISSUER)),
        gas_tests=(gtest(T0 - 300),),
        competencies=(Competency("op1", "C-1", "hot_work", T0 + 365 * 24 * H),),
    )
    return replace(p, **kw)  # type: ignore[arg-type]


O2 = SignalCfg("o2-1", "o2", "%vol", "z1", "gas-1", OSHA["o2"].limits)
LEL = SignalCfg("lel-1", "lel", "%LEL", "z1", "gas-1", OSHA["lel"].limits, hot_work_max=10.0, over_range=100.0)


def sig(cfg: SignalCfg, value: float, at: float = NOW - 1) -> tuple[SignalCfg, gasrule.SignalState]:
    return cfg, gasrule.on_reading(gasrule.initial(cfg), Reading(cfg.id, value, at), cfg)


def bad(cfg: SignalCfg, reason: str = "timeout") -> tuple[SignalCfg, gasrule.SignalState]:
    return cfg, gasrule.on_reading(gasrule.initial(cfg), Reading(cfg.id, math.nan, NOW - 1, Quality.BAD, reason), cfg)


def face(at: float = NOW - 20, person: str = "op1", zone: str = "z1", terminal: str = "term-1") -> FaceMatch:
    return FaceMatch(terminal, person, at, "2024-05-01T08:00:00Z", 1, zone)


def inputs(p: Permit | None = None, off: float = OFF, **kw: object) -> Inputs:
    base = Inputs(
        permit=PermitView(p if p is not None else permit(), off),
        zone="z1",
        zone_kind=ZoneKind.HOT_WORK,
        gas=(sig(O2, 20.9), sig(LEL, 0.0)),
        zone_severity=Severity.NORMAL,
        present={"op1": NOW - 1, "fw1": NOW - 2},
        faces={"op1": face()},
        overdue=frozenset(),
        output_fault=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def failing(cl: Checklist) -> dict[str, str]:
    return {c.name: c.reason for c in cl.failing()}


def test_baseline_all_ok() -> None:
    cl = evaluate(inputs(), NOW, CFG)
    assert cl == Checklist(tuple(Check(n, True) for n in CHECK_NAMES), True, 4 * H)


# --- each condition failing alone, with its reason -----------------------------------

P = permit
F = "operator op1 has no face verification: verify at a terminal of zone z1"
Mut = Callable[[], tuple[Inputs, HotWorkCfg, HotWorkState | None]]


def _i(**kw: object) -> Mut:
    return lambda: (inputs(**kw), CFG, None)  # type: ignore[arg-type]


def _p(**kw: object) -> Mut:
    return lambda: (inputs(P(**kw)), CFG, None)


def _c(cfg: HotWorkCfg, **kw: object) -> Mut:
    return lambda: (inputs(**kw), cfg, None)  # type: ignore[arg-type]


def _s(**kw: object) -> Mut:
    return lambda: (inputs(), CFG, replace(initial("HW-1"), **kw))  # type: ignore[arg-type]


SUSP = (StateChange(S.ACTIVE, S.SUSPENDED, T0 - 200, "gas"), StateChange(S.SUSPENDED, S.ACTIVE, T0 - 100, "resume"))
CONFINED_HW = SignalCfg("lel-1", "lel", "%LEL", "z1", "gas-1", OSHA["lel"].limits, hot_work_max=1.0)

CASES: list[tuple[str, Mut, dict[str, str]]] = [
    # permit_active
    ("suspended", _p(state=S.SUSPENDED), {"permit_active": "permit HW-1 is suspended, not active"}),
    ("approved", _p(state=S.APPROVED), {"permit_active": "permit HW-1 is approved, not active"}),
    ("before valid_from", _p(valid_from=T0 + 1),
     {"permit_active": "permit HW-1 is not valid yet (valid_from not reached)"}),
    ("at valid_to", _p(valid_to=T0),
     {"permit_active": "permit HW-1 reached valid_to: it never releases ignition again"}),
    ("confined-space permit", _p(type=PermitType.CONFINED_SPACE),
     {"permit_active": "permit HW-1 is a confined_space permit, not hot work"}),
    ("other zone", _p(zone_id="z2"), {"permit_active": "permit HW-1 is for zone z2, not zone z1"}),
    ("state closed", _s(closed=True),
     {"permit_active": "permit HW-1 was closed or cancelled: it never releases ignition again"}),
    ("state expired", _s(expired=True),
     {"permit_active": "permit HW-1 reached valid_to: it never releases ignition again"}),
    # operator_present
    ("operator stale", _i(present={"op1": NOW - 10, "fw1": NOW - 2}),
     {"operator_present": "operator op1's badge not heard in zone z1 for 10 s"}),
    ("operator from the future", _i(present={"op1": NOW + 1, "fw1": NOW - 2}),
     {"operator_present": "operator op1's badge not heard in zone z1 for 10 s"}),
    ("operator not located", _i(present={"fw1": NOW - 2}), {
        "operator_present": "operator op1 is not located in zone z1",
        "face_verified": "operator op1's badge was not seen in zone z1 within 60 s of the face verification",
    }),
    # fire_watch_present
    ("fire watch absent", _i(present={"op1": NOW - 1}),
     {"fire_watch_present": "no fire watch (fw1) heard in zone z1 within 10 s"}),
    ("fire watch stale", _i(present={"op1": NOW - 1, "fw1": NOW - 10.5}),
     {"fire_watch_present": "no fire watch (fw1) heard in zone z1 within 10 s"}),
    ("no fire watch listed", _p(people=(Person("op1", Role.OPERATOR),)),
     {"fire_watch_present": "the permit lists no fire watch (other than the operator)"}),
    ("operator as own fire watch", _p(people=(Person("op1", Role.OPERATOR), Person("op1", Role.FIRE_WATCH))),
     {"fire_watch_present": "the permit lists no fire watch (other than the operator)"}),
    # face_verified
    ("no face", _i(faces={}), {"face_verified": F}),
    ("face of someone else only", _i(faces={"fw1": face(person="fw1")}), {"face_verified": F}),
    ("mis-keyed face", _i(faces={"op1": face(person="fw1")}), {"face_verified": F}),
    ("face at another zone", _i(faces={"op1": face(zone="z2", terminal="term-9")}),
     {"face_verified": "operator op1 was last verified at terminal term-9 of zone z2: "
                       "verify at a terminal of zone z1"}),
    ("face at unmapped terminal", _i(faces={"op1": face(zone="")}),
     {"face_verified": "operator op1 was last verified at terminal term-1 of zone (unmapped): "
                       "verify at a terminal of zone z1"}),
    ("face too old", _i(faces={"op1": face(at=NOW - 60.5)}),
     {"face_verified": "operator op1's face verification is older than 60 s: verify again at a terminal of zone z1"}),
    ("face from the future", _i(faces={"op1": face(at=NOW + 1)}),
     {"face_verified": "operator op1's face verification is dated in the future: "
                       "verify again at a terminal of zone z1"}),
    ("badge far from face time", _c(HotWorkCfg(face_presence_s=5.0)),
     {"face_verified": "operator op1's badge was not seen in zone z1 within 5 s of the face verification"}),
    # gas_ok
    ("no gas signal", _i(gas=()), {"gas_ok": "no gas detector in zone z1: missing data is never good"}),
    ("no LEL detector", _i(gas=(sig(O2, 20.9),)), {"gas_ok": "no LEL (flammable gas) detector in zone z1"}),
    ("LEL at limit", _i(gas=(sig(O2, 20.9), sig(LEL, 10.0))),
     {"gas_ok": "lel-1: at or above the hot-work limit 10 %LEL"}),
    ("LEL confined limit", _i(gas=(sig(O2, 20.9), sig(CONFINED_HW, 1.0))),
     {"gas_ok": "lel-1: at or above the hot-work limit 1 %LEL"}),
    ("LEL without hot-work limit", _i(gas=(sig(O2, 20.9), sig(replace(LEL, hot_work_max=None), 0.0))),
     {"gas_ok": "lel-1: no hot-work limit configured for this LEL signal"}),
    ("LEL stale", _i(gas=(sig(O2, 20.9), sig(LEL, 0.0, at=NOW - 5.5))),
     {"gas_ok": "lel-1: stale (no reading for 5 s)"}),
    ("LEL BAD", _i(gas=(sig(O2, 20.9), bad(LEL))), {"gas_ok": "lel-1: fault (timeout)"}),
    ("LEL no reading", _i(gas=(sig(O2, 20.9), (LEL, gasrule.initial(LEL)))), {"gas_ok": "lel-1: no reading yet"}),
    ("O2 at low limit", _i(gas=(sig(O2, 19.5), sig(LEL, 0.0))), {"gas_ok": "o2-1: O2 outside 19.5..23.5 %vol"}),
    ("O2 enriched", _i(gas=(sig(O2, 23.5), sig(LEL, 0.0))), {"gas_ok": "o2-1: O2 outside 19.5..23.5 %vol"}),
    ("two problems", _i(gas=(sig(O2, 18.0), sig(LEL, 12.0))),
     {"gas_ok": "o2-1: O2 outside 19.5..23.5 %vol; lel-1: at or above the hot-work limit 10 %LEL"}),
    # gas_test_valid
    ("no gas test", _p(gas_tests=()), {"gas_test_valid": "no gas test recorded on the permit"}),
    ("gas test too old", _p(gas_tests=(gtest(T0 - 1800.5),)),
     {"gas_test_valid": "the latest gas test is older than 30 min: re-test"}),
    ("gas test in the future", _p(gas_tests=(gtest(T0 + 1),)),
     {"gas_test_valid": "the latest gas test is dated in the future"}),
    ("gas test failed O2", _p(gas_tests=(gtest(T0 - 300, o2_pct=19.0),)),
     {"gas_test_valid": "the latest gas test failed: O2 19 %vol outside 19.5..23.5"}),
    ("failed re-test masks older pass", _p(gas_tests=(gtest(T0 - 300), gtest(T0 - 60, lel_pct=12.0))),
     {"gas_test_valid": "the latest gas test failed: LEL 12 % not below 10"}),
    ("gas test without bump", _p(gas_tests=(gtest(T0 - 300, bump_utc=None),)),
     {"gas_test_valid": "the latest gas test failed: instrument GX-1 not bump-tested within 86400 s before the test"}),
    ("gas test older than suspension", _p(history=SUSP),
     {"gas_test_valid": "the latest gas test is older than the last suspension: re-test before resuming"}),
    ("confined space test limits", lambda: (inputs(P(gas_tests=(gtest(T0 - 300, lel_pct=2.0, co_ppm=None),)),
                                                   zone_kind=ZoneKind.CONFINED_SPACE), CFG, None),
     {"gas_test_valid": "the latest gas test failed: LEL 2 % not below 1; CO not measured"}),
    # sensors_in_date
    ("LEL bump overdue", _i(overdue=frozenset({"lel-1", "other-zone-sig"})),
     {"sensors_in_date": "bump test or calibration overdue: lel-1"}),
    # competency
    ("no certificate", _p(competencies=()),
     {"competency": "operator op1 holds no unexpired 'hot_work' certificate"}),
    ("certificate expired", _p(competencies=(Competency("op1", "C-1", "hot_work", T0),)),
     {"competency": "operator op1 holds no unexpired 'hot_work' certificate"}),
    ("wrong kind", _p(competencies=(Competency("op1", "C-1", "welding", T0 + H),)),
     {"competency": "operator op1 holds no unexpired 'hot_work' certificate"}),
    # no_alarm
    ("zone alarm", _i(zone_severity=Severity.ALARM), {"no_alarm": "zone z1 is in alarm"}),
    ("zone evacuate", _i(zone_severity=Severity.EVACUATE), {"no_alarm": "zone z1 is in evacuate"}),
    ("output fault", _i(output_fault=True), {"no_alarm": "an output fault is latched (outputs held safe)"}),
    # rearm
    ("tripped, face older than trip", _s(trip_latched=True, tripped_at=NOW - 10),
     {"rearm": "ignition tripped: operator op1 must verify their face again at a terminal of zone z1"}),
]  # fmt: skip


@pytest.mark.parametrize(("mut", "want"), [(m, w) for _, m, w in CASES], ids=[c[0] for c in CASES])
def test_condition_table(mut: Mut, want: dict[str, str]) -> None:
    inp, cfg, state = mut()
    cl = evaluate(inp, NOW, cfg, state)
    assert failing(cl) == want
    assert not cl.ok
    assert [c.name for c in cl.items] == list(CHECK_NAMES)


OK_CASES: list[tuple[str, Mut]] = [
    ("one of two fire watches present", _p(people=(*P().people, Person("fw2", Role.FIRE_WATCH)))),
    ("LEL just below limit", _i(gas=(sig(O2, 20.9), sig(LEL, 9.99)))),
    ("face exactly 60 s old", _i(faces={"op1": face(at=NOW - 60)})),
    ("gas test exactly 30 min old", _p(gas_tests=(gtest(T0 - 1800),))),
    ("gas test after suspension", _p(history=SUSP, gas_tests=(gtest(T0 - 50),))),
    ("older failed test, newer pass", _p(gas_tests=(gtest(T0 - 600, lel_pct=50.0), gtest(T0 - 60)))),
    ("warning only in zone", _i(zone_severity=Severity.WARNING)),
    ("overdue sensor of another zone", _i(overdue=frozenset({"o2-9"}))),
    ("competency not required", _c(HotWorkCfg(require_competency=False), p=P(competencies=()))),
    ("no LEL allowed by config", _c(HotWorkCfg(require_lel=False), gas=(sig(O2, 20.9),))),
    ("tripped, newer face", _s(trip_latched=True, tripped_at=NOW - 25)),
]


@pytest.mark.parametrize("mut", [m for _, m in OK_CASES], ids=[c[0] for c in OK_CASES])
def test_ok_table(mut: Mut) -> None:
    inp, cfg, state = mut()
    assert failing(evaluate(inp, NOW, cfg, state)) == {}


def test_no_permit_fails_everything_permit_bound() -> None:
    cl = evaluate(inputs(permit=None), NOW, CFG)
    assert cl.seconds_left is None
    assert failing(cl) == {
        "permit_active": "no permit held for this interlock",
        "operator_present": "the permit lists no operator",
        "fire_watch_present": "no permit: no fire watch listed",
        "face_verified": "the permit lists no operator to verify",
        "gas_test_valid": "no permit: no gas test",
        "competency": "the permit lists no operator",
    }


def test_checklist_cannot_claim_ok_with_a_failing_item() -> None:
    with pytest.raises(ValueError, match="every item ok"):
        Checklist((Check("gas_ok", False, "x"),), True, None)
    with pytest.raises(ValueError, match="every item ok"):
        Checklist((), True, None)


@pytest.mark.parametrize(
    "kw",
    [{"face_window_s": 0.0}, {"presence_fresh_s": math.nan}, {"warn_before_s": (300, 300)}, {"o2_min": 24.0}],
)
def test_cfg_validation(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="interlock"):
        HotWorkCfg(**kw)  # type: ignore[arg-type]


def test_permit_view_needs_finite_offset() -> None:
    with pytest.raises(ValueError, match="utc_offset"):
        PermitView(permit(), math.inf)


# --- time model ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    shift=st.floats(-1e8, 1e8, allow_nan=False),
    dt=st.floats(-2 * H, 5 * H, allow_nan=False),
)
def test_decisions_depend_on_the_anchor_only(shift: float, dt: float) -> None:
    """Moving every UTC time of the permit and its anchor together (another wall clock,
    or a clock that jumped before arrival) changes nothing: only monotonic time decides."""

    def shifted(s: float) -> Inputs:
        p = permit()
        p = replace(
            p,
            valid_from=p.valid_from + s,
            valid_to=p.valid_to + s,
            gas_tests=tuple(gtest(t.at_utc + s) for t in p.gas_tests),
            competencies=tuple(replace(c, expires_utc=c.expires_utc + s) for c in p.competencies),
        )
        return inputs(p, off=OFF + s)

    a = evaluate(shifted(0.0), NOW + dt, CFG)
    b = evaluate(shifted(shift), NOW + dt, CFG)
    assert [(c.name, c.ok) for c in a.items] == [(c.name, c.ok) for c in b.items]
    assert a.ok == b.ok


def test_wall_clock_jump_after_arrival_changes_nothing() -> None:
    """The anchor is fixed at arrival: the engine keeps the same PermitView when the system
    clock later jumps, so 10 min of monotonic time are 10 min of permit time."""
    view = PermitView(permit(valid_to=T0 + 900), OFF)
    s0, _ = step(initial("HW-1"), replace(inputs(), permit=view), NOW, CFG)
    assert s0.released
    later = replace(inputs(), permit=view, present={"op1": NOW + 899, "fw1": NOW + 899})
    later = replace(later, gas=(sig(O2, 20.9, at=NOW + 899), sig(LEL, 0.0, at=NOW + 899)))
    s1, _ = step(s0, later, NOW + 899.5, CFG)
    assert s1.released
    s2, _ = step(s1, later, NOW + 900, CFG)
    assert not s2.released and s2.expired


# --- the state machine -----------------------------------------------------------------


def released_state() -> HotWorkState:
    s, _ = step(initial("HW-1"), inputs(), NOW, CFG)
    assert s.released
    return s


def test_release_when_all_ok() -> None:
    s, acts = step(initial("HW-1"), inputs(), NOW, CFG)
    cl = evaluate(inputs(), NOW, CFG)
    assert s == replace(
        initial("HW-1"), released=True, released_at=NOW, work_started_at=NOW, face_at_release=NOW - 20, checklist=cl
    )
    assert acts == (
        Ignition("HW-1", "z1", True, (), cl),
        PermitNotice(
            "HW-1", IGNITION_RELEASED, {"at_mono": NOW, "at_utc": T0, "face_terminal": "term-1", "face_seq": 1}
        ),
        ChecklistChanged("HW-1", cl),
    )


def test_no_release_when_one_condition_fails_and_no_trip() -> None:
    s, acts = step(initial("HW-1"), inputs(zone_severity=Severity.ALARM), NOW, CFG)
    assert not s.released and not s.trip_latched
    assert [type(a) for a in acts] == [ChecklistChanged]


def test_drop_in_the_same_step_and_latch() -> None:
    s0 = released_state()
    inp = inputs(gas=(sig(O2, 20.9), sig(LEL, 11.0)))
    s1, acts = step(s0, inp, NOW + 1, CFG)
    reasons = ("gas_ok: lel-1: at or above the hot-work limit 10 %LEL",)
    assert (s1.released, s1.trip_latched, s1.tripped_at, s1.trip_reasons) == (False, True, NOW + 1, reasons)
    assert (s1.ignition_ended_at, s1.fire_watch_until, s1.face_at_release) == (NOW + 1, NOW + 1 + 1800, None)
    cl = s1.checklist
    assert cl is not None
    assert acts == (
        Ignition("HW-1", "z1", False, reasons, cl),
        PermitNotice("HW-1", IGNITION_DROPPED, {"reasons": list(reasons), "tripped": True, "at_mono": NOW + 1,
                                                "at_utc": T0 + 1}),
        PermitNotice("HW-1", FIRE_WATCH_UNTIL, {"until_mono": NOW + 1801, "until_utc": T0 + 1801}),
        ChecklistChanged("HW-1", cl),
    )  # fmt: skip


def test_rearm_needs_a_face_newer_than_the_trip() -> None:
    s0 = released_state()
    s1, _ = step(s0, inputs(output_fault=True), NOW + 1, CFG)
    assert s1.trip_latched
    # Cause gone, face (NOW-20) still inside the 60 s window but older than the trip: stays dropped.
    s2, acts = step(s1, inputs(), NOW + 2, CFG)
    assert not s2.released
    assert failing(s2.checklist or evaluate(inputs(), 0, CFG)) == {
        "rearm": "ignition tripped: operator op1 must verify their face again at a terminal of zone z1"
    }
    assert not any(isinstance(a, Ignition) for a in acts)
    # A face at another zone's terminal does not re-arm.
    s3, _ = step(s2, inputs(faces={"op1": face(at=NOW + 3, zone="z2")}), NOW + 3, CFG)
    assert not s3.released
    s4, acts = step(s3, inputs(faces={"op1": face(at=NOW + 4)}), NOW + 4, CFG)
    assert s4.released and not s4.trip_latched and s4.face_at_release == NOW + 4
    assert isinstance(acts[0], Ignition) and acts[0].released


def _live(t: float, **kw: object) -> Inputs:
    """Everything fresh at monotonic t (presence and gas), face as given."""
    base = inputs(
        present={"op1": t - 1, "fw1": t - 1},
        gas=(sig(O2, 20.9, at=t - 1), sig(LEL, 0.0, at=t - 1)),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_face_holds_for_the_release_but_not_elsewhere() -> None:
    s = released_state()
    t = NOW
    for _ in range(20):  # 20 min of work, face scanned once, operator always present
        t += 60
        s, acts = step(s, _live(t), t, CFG)
        assert s.released, acts
    # The operator's face is then seen at another zone's terminal: they are not here.
    s, acts = step(s, _live(t + 1, faces={"op1": face(at=t + 1, zone="z2", terminal="t-z2")}), t + 1, CFG)
    assert not s.released and s.trip_latched
    assert isinstance(acts[0], Ignition)
    assert acts[0].reasons == (
        "face_verified: operator op1 was last verified at terminal t-z2 of zone z2: verify at a terminal of zone z1",
    )


def test_the_held_face_says_so_on_the_checklist_and_face_hold_s_bounds_it() -> None:
    """Issue 15.5: the checklist names what a passing face_verified rests on during a release,
    and a plant's face_hold_s ends the hold (a drop that needs a fresh face), never silently."""
    s = released_state()
    s, _ = step(s, _live(NOW + 120), NOW + 120, CFG)
    assert s.released and s.checklist is not None
    held = next(c for c in s.checklist.items if c.name == "face_verified")
    assert held == Check("face_verified", True, FACE_HELD)
    hold = replace(CFG, face_hold_s=600.0)
    s = released_state()
    s, _ = step(s, _live(NOW + 500), NOW + 500, hold)
    assert s.released  # within the hold: no re-scan asked of a welder in a helmet
    s, acts = step(s, _live(NOW + 700), NOW + 700, hold)
    assert not s.released and s.trip_latched
    assert isinstance(acts[0], Ignition) and acts[0].reasons == (
        "face_verified: operator op1's face verification held for the 600 s allowed during a release: "
        "verify again at a terminal of zone z1",
    )


def test_presence_lapse_ends_the_face_hold() -> None:
    s = released_state()
    s, _ = step(s, _live(NOW + 120, present={"fw1": NOW + 119}), NOW + 120, CFG)
    assert not s.released
    # Back in the zone: the release-time face is gone (too old, older than the trip).
    s, _ = step(s, _live(NOW + 130), NOW + 130, CFG)
    assert not s.released
    assert set(failing(s.checklist or evaluate(inputs(), 0, CFG))) == {"face_verified", "rearm"}


def test_countdown_warnings_once_each_and_only_while_active() -> None:
    p = permit(valid_to=T0 + 1000)
    s = initial("HW-1")
    kinds: list[str] = []
    for t in (NOW, NOW + 99, NOW + 100, NOW + 101, NOW + 500, NOW + 699, NOW + 700, NOW + 800, NOW + 999):
        s, acts = step(s, _live(t, permit=PermitView(p, OFF)), t, CFG)
        kinds += [a.kind for a in acts if isinstance(a, PermitNotice) and a.kind.startswith("warning")]
    assert kinds == ["warning_15min", "warning_5min"]
    assert s.warned == {900, 300}
    # Suspended at the thresholds: no warning; a late resume gives only the nearest.
    sp = replace(p, state=S.SUSPENDED)
    s = initial("HW-1")
    for t in (NOW + 200, NOW + 750):
        s, acts = step(s, _live(t, permit=PermitView(sp, OFF)), t, CFG)
        assert not [a for a in acts if isinstance(a, PermitNotice)]
    s, acts = step(s, _live(NOW + 760, permit=PermitView(p, OFF)), NOW + 760, CFG)
    assert [a.kind for a in acts if isinstance(a, PermitNotice) and a.kind.startswith("warning")] == ["warning_5min"]
    assert s.warned == {900, 300}


def test_automatic_stop_at_valid_to_and_never_again() -> None:
    p = permit(valid_to=T0 + 600)
    s, _ = step(initial("HW-1"), inputs(p), NOW, CFG)
    assert s.released
    s, acts = step(s, _live(NOW + 600, permit=PermitView(p, OFF)), NOW + 600, CFG)
    assert not s.released and s.expired and not s.trip_latched
    kinds = [a.kind for a in acts if isinstance(a, PermitNotice)]
    assert kinds == [EXPIRED, IGNITION_DROPPED, FIRE_WATCH_UNTIL]
    assert isinstance(acts[0], Ignition) and not acts[0].released  # the output first
    assert isinstance(acts[1], PermitNotice) and acts[1].data["valid_to_utc"] == T0 + 600
    # Even if a later version of the permit extends valid_to, with a fresh face: never again.
    p2 = replace(p, valid_to=T0 + 4 * H)
    s, acts = step(s, _live(NOW + 610, permit=PermitView(p2, OFF), faces={"op1": face(NOW + 609)}), NOW + 610, CFG)
    assert not s.released and not any(isinstance(a, Ignition) for a in acts)
    assert not any(isinstance(a, PermitNotice) and a.kind == EXPIRED for a in acts)  # said once


@pytest.mark.parametrize("end", [S.CLOSED, S.CANCELLED, S.EXPIRED])
def test_permit_end_drops_and_never_releases_again(end: PermitState) -> None:
    s = released_state()
    s, acts = step(s, inputs(permit(state=end)), NOW + 1, CFG)
    assert not s.released and (s.closed or s.expired)
    assert isinstance(acts[0], Ignition) and not acts[0].released
    assert not any(isinstance(a, PermitNotice) and a.kind == EXPIRED for a in acts)  # already terminal
    s, acts = step(s, inputs(faces={"op1": face(NOW + 2)}), NOW + 2, CFG)  # "re-opened": ignored
    assert not s.released


def test_short_break_keeps_the_gas_test_long_break_needs_a_new_one() -> None:
    # Released 5 min after the test; operator leaves at +25 min; back at +50 min (test 55 min old).
    s = released_state()
    s, _ = step(s, _live(NOW + 1500, present={"fw1": NOW + 1499}), NOW + 1500, CFG)
    assert not s.released and s.ignition_ended_at == NOW + 1500
    t = NOW + 3000
    s2, _ = step(s, _live(t, faces={"op1": face(t - 5)}), t, CFG)
    assert s2.released and s2.work_started_at == NOW
    # Same, but back after 61 min without ignition: a gas test newer than the break is needed.
    t = NOW + 1500 + 3660
    s3, _ = step(s, _live(t, faces={"op1": face(t - 5)}), t, CFG)
    assert not s3.released
    assert failing(s3.checklist or evaluate(inputs(), 0, CFG)) == {
        "gas_test_valid": "no ignition for more than 60 min: a gas test newer than the break is needed"
    }
    p = add_gas_test(permit(), gtest(OFF + t - 60))
    s4, _ = step(s3, _live(t + 1, permit=PermitView(p, OFF), faces={"op1": face(t - 5)}), t + 1, CFG)
    assert s4.released and s4.work_started_at == t + 1


def test_first_release_needs_a_test_at_most_30_min_old() -> None:
    t = NOW + 1600  # test taken at NOW-300: 31.7 min old, nothing released yet
    s, _ = step(initial("HW-1"), _live(t, faces={"op1": face(t - 5)}), t, CFG)
    assert not s.released
    assert set(failing(s.checklist or evaluate(inputs(), 0, CFG))) == {"gas_test_valid"}


def test_fire_watch_and_close() -> None:
    s = initial("HW-1")
    assert fire_watch_release_at(s) is None and can_close(s, NOW, CFG) == (True, "")
    s = released_state()
    assert fire_watch_release_at(s) is None
    assert can_close(s, NOW, CFG) == (False, "permit HW-1: ignition is still released: stop hot work first")
    s, _ = step(s, inputs(permit(state=S.SUSPENDED)), NOW + 10, CFG)
    assert fire_watch_release_at(s) == NOW + 10 + 1800
    assert can_close(s, NOW + 11, CFG) == (
        False,
        "permit HW-1: the fire watch must stay 30 min after hot work ends (1799 s left)",
    )
    assert can_close(s, NOW + 1810, CFG) == (True, "")


def test_checklist_changed_only_on_change() -> None:
    s, acts = step(initial("HW-1"), inputs(output_fault=True), NOW, CFG)
    assert [type(a) for a in acts] == [ChecklistChanged]
    s, acts = step(s, inputs(output_fault=True), NOW + 0.5, CFG)  # same failing set: silence
    assert acts == ()
    s, acts = step(s, inputs(output_fault=True, zone_severity=Severity.ALARM), NOW + 1, CFG)
    assert [type(a) for a in acts] == [ChecklistChanged]
    assert isinstance(acts[0], ChecklistChanged)
    assert acts[0].checklist.reasons() == (
        "no_alarm: zone z1 is in alarm; an output fault is latched (outputs held safe)",
    )


def test_wrong_permit_or_time_raises_and_keeps_state() -> None:
    s = initial("HW-2")
    with pytest.raises(InterlockError, match=r"HW-2.*HW-1"):
        step(s, inputs(), NOW, CFG)
    with pytest.raises(InterlockError, match="not finite"):
        step(released_state(), inputs(), math.nan, CFG)
    with pytest.raises(InterlockError, match="empty"):
        initial("")
