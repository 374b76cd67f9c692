"""rules.permit: lifecycle tables, validation tables, helpers, and a Hypothesis property."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.config import ZoneKind
from rules.permit import (
    GB_MAX_VALIDITY_S,
    Approval,
    Competency,
    GasTest,
    GasTestLimits,
    IllegalTransition,
    Permit,
    PermitCfg,
    PermitState,
    PermitType,
    Person,
    ProblemCode,
    Role,
    StateChange,
    add_gas_test,
    competency_valid,
    expire_if_due,
    fire_watch_until,
    fire_watches,
    gas_test_passed,
    gas_test_valid,
    last_gas_test,
    operator,
    releases_ignition,
    transition,
    validate,
)

S = PermitState
T0 = 1_714_550_400.0  # 2024-05-01T08:00:00Z
H = 3600.0


def gas(at: float, **kw: object) -> GasTest:
    base: dict[str, object] = dict(
        at_utc=at, tester="t1", o2_pct=20.9, lel_pct=0.0, h2s_ppm=0.0, co_ppm=0.0,
        instrument="GX-1", bump_utc=at - H, cal_due_utc=at + 30 * 24 * H,
    )  # fmt: skip
    base.update(kw)
    return GasTest(**base)  # type: ignore[arg-type]


def hot(**kw: object) -> Permit:
    p = Permit(
        permit_id="HW-1",
        type=PermitType.HOT_WORK,
        grade="first",
        site_id="site-a",
        zone_id="z1",
        valid_from=T0,
        valid_to=T0 + 8 * H,
        state=S.APPROVED,
        people=(
            Person("op1", Role.OPERATOR),
            Person("fw1", Role.FIRE_WATCH),
            Person("is1", Role.ISSUER),
            Person("sv1", Role.SUPERVISOR),
        ),
        gas_tests=(gas(T0),),
        approvals=(Approval("is1", Role.ISSUER, T0 - 600, "sig"),),
        competencies=(Competency("op1", "C-1", "hot_work", T0 + 365 * 24 * H),),
    )
    return replace(p, **kw)  # type: ignore[arg-type]


def confined(**kw: object) -> Permit:
    p = Permit(
        permit_id="CS-1",
        type=PermitType.CONFINED_SPACE,
        grade="first",
        site_id="site-a",
        zone_id="tank",
        valid_from=T0,
        valid_to=T0 + 8 * H,
        state=S.APPROVED,
        people=(
            Person("e1", Role.ENTRANT),
            Person("e2", Role.ENTRANT),
            Person("a1", Role.ATTENDANT),
            Person("is1", Role.ISSUER),
        ),
        gas_tests=(gas(T0),),
        approvals=(Approval("is1", Role.ISSUER, T0 - 600, "sig"),),
        max_entrants=2,
    )
    return replace(p, **kw)  # type: ignore[arg-type]


# --- transitions ---------------------------------------------------------------------

# Written out independently of rules.permit.TRANSITIONS, so that a change to the graph shows here.
LEGAL = {
    (S.DRAFT, S.SUBMITTED), (S.DRAFT, S.CANCELLED), (S.DRAFT, S.EXPIRED),
    (S.SUBMITTED, S.APPROVED), (S.SUBMITTED, S.CANCELLED), (S.SUBMITTED, S.EXPIRED),
    (S.APPROVED, S.ACTIVE), (S.APPROVED, S.CANCELLED), (S.APPROVED, S.EXPIRED),
    (S.ACTIVE, S.SUSPENDED), (S.ACTIVE, S.CLOSED), (S.ACTIVE, S.CANCELLED), (S.ACTIVE, S.EXPIRED),
    (S.SUSPENDED, S.ACTIVE), (S.SUSPENDED, S.CLOSED), (S.SUSPENDED, S.CANCELLED), (S.SUSPENDED, S.EXPIRED),
}  # fmt: skip
ALL_PAIRS = list(itertools.product(S, S))


def _time_for(to: PermitState) -> float:
    # EXPIRED needs valid_to reached; everything else happens 10 min into the window.
    return T0 + 8 * H if to is S.EXPIRED else T0 + 600


@pytest.mark.parametrize(("frm", "to"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_transition_table(frm: PermitState, to: PermitState) -> None:
    p = hot(state=frm)
    at = _time_for(to)
    if (frm, to) in LEGAL:
        got = transition(p, to, at, "because")
        assert got == replace(p, state=to, history=(StateChange(frm, to, at, "because"),))
    else:
        with pytest.raises(IllegalTransition) as ei:
            transition(p, to, at, "because")
        assert (ei.value.permit_id, ei.value.from_state, ei.value.to_state) == ("HW-1", frm, to)
        assert p == hot(state=frm)  # input untouched


SUSPENDED_AT = T0 + 900
# A permit suspended at T0+900 whose only gas test is from T0.
SUSPENDED = hot(
    state=S.SUSPENDED,
    history=(
        StateChange(S.APPROVED, S.ACTIVE, T0 + 60, "go"),
        StateChange(S.ACTIVE, S.SUSPENDED, SUSPENDED_AT, "gas alarm"),
    ),
)

GUARD_REFUSALS = [
    ("before valid_from", hot(), S.ACTIVE, T0 - 1),
    ("at valid_to", hot(gas_tests=(gas(T0 + 8 * H - 60),)), S.ACTIVE, T0 + 8 * H),
    ("no gas test", hot(gas_tests=()), S.ACTIVE, T0 + 60),
    ("gas test 30 min + 1 s old", hot(), S.ACTIVE, T0 + 1801),
    ("gas test from the future", hot(gas_tests=(gas(T0 + 120),)), S.ACTIVE, T0 + 60),
    ("O2 low", hot(gas_tests=(gas(T0, o2_pct=19.4),)), S.ACTIVE, T0 + 60),
    ("O2 enriched", hot(gas_tests=(gas(T0, o2_pct=23.6),)), S.ACTIVE, T0 + 60),
    ("LEL at limit", hot(gas_tests=(gas(T0, lel_pct=10.0),)), S.ACTIVE, T0 + 60),
    ("H2S at limit", hot(gas_tests=(gas(T0, h2s_ppm=5.0),)), S.ACTIVE, T0 + 60),
    ("CO at limit", hot(gas_tests=(gas(T0, co_ppm=25.0),)), S.ACTIVE, T0 + 60),
    ("LEL NaN", hot(gas_tests=(gas(T0, lel_pct=math.nan),)), S.ACTIVE, T0 + 60),
    ("bump unknown", hot(gas_tests=(gas(T0, bump_utc=None),)), S.ACTIVE, T0 + 60),
    ("bump older than 24 h", hot(gas_tests=(gas(T0, bump_utc=T0 - 24 * H - 1),)), S.ACTIVE, T0 + 60),
    ("calibration overdue", hot(gas_tests=(gas(T0, cal_due_utc=T0),)), S.ACTIVE, T0 + 60),
    ("latest test failed, older passed", hot(gas_tests=(gas(T0), gas(T0 + 30, lel_pct=12.0))), S.ACTIVE, T0 + 60),
    ("confined: H2S not measured", confined(gas_tests=(gas(T0, h2s_ppm=None),)), S.ACTIVE, T0 + 60),
    ("resume on the pre-suspension test", SUSPENDED, S.ACTIVE, SUSPENDED_AT + 60),
    ("time goes backwards", SUSPENDED, S.CLOSED, SUSPENDED_AT - 1),
    ("time NaN", hot(), S.CANCELLED, math.nan),
    ("EXPIRED before valid_to", hot(), S.EXPIRED, T0 + 8 * H - 1),
    ("APPROVED without approval", hot(state=S.SUBMITTED, approvals=()), S.APPROVED, T0),
]


@pytest.mark.parametrize(("case", "p", "to", "at"), GUARD_REFUSALS, ids=[c[0] for c in GUARD_REFUSALS])
def test_guard_refusals(case: str, p: Permit, to: PermitState, at: float) -> None:
    before = replace(p)
    with pytest.raises(IllegalTransition):
        transition(p, to, at, case)
    assert p == before


def test_hot_work_in_confined_space_needs_lel_below_1() -> None:
    p = hot(gas_tests=(gas(T0, lel_pct=1.0),))
    assert transition(p, S.ACTIVE, T0 + 60, "go").state is S.ACTIVE  # open air: < 10 %LEL
    with pytest.raises(IllegalTransition):
        transition(p, S.ACTIVE, T0 + 60, "go", zone_kind=ZoneKind.CONFINED_SPACE)
    ok = hot(gas_tests=(gas(T0, lel_pct=0.9),))
    assert transition(ok, S.ACTIVE, T0 + 60, "go", zone_kind=ZoneKind.CONFINED_SPACE).state is S.ACTIVE


def test_resume_after_fresh_gas_test() -> None:
    fresh = add_gas_test(SUSPENDED, gas(SUSPENDED_AT + 30))
    got = transition(fresh, S.ACTIVE, SUSPENDED_AT + 60, "re-tested")
    assert got.state is S.ACTIVE
    assert got.history[-1] == StateChange(S.SUSPENDED, S.ACTIVE, SUSPENDED_AT + 60, "re-tested")
    assert gas_test_valid(got, SUSPENDED_AT + 60)


def test_gas_test_validity_boundary_and_configurable() -> None:
    p = hot()
    assert gas_test_valid(p, T0 + 1800)
    assert not gas_test_valid(p, T0 + 1800.001)
    assert gas_test_valid(p, T0 + 3000, validity_s=3600)
    cfg = PermitCfg(gas_test_validity_s=600)
    with pytest.raises(IllegalTransition):
        transition(p, S.ACTIVE, T0 + 601, "go", cfg)


def test_gas_test_passed_limits() -> None:
    assert gas_test_passed(gas(T0, h2s_ppm=None, co_ppm=None))
    assert not gas_test_passed(gas(T0, h2s_ppm=None), GasTestLimits(require_toxics=True))
    assert gas_test_passed(gas(T0, bump_utc=None, cal_due_utc=None), GasTestLimits(check_instrument=False))


def test_expire_if_due_and_releases_ignition() -> None:
    act = transition(hot(), S.ACTIVE, T0 + 60, "go")
    assert releases_ignition(act, T0 + 60)
    assert not releases_ignition(act, T0 + 8 * H)
    assert expire_if_due(act, T0 + 8 * H - 0.001) is act
    exp = expire_if_due(act, T0 + 8 * H)
    assert exp.history[-1] == StateChange(S.ACTIVE, S.EXPIRED, T0 + 8 * H, "valid_to reached")
    assert exp.state is S.EXPIRED
    assert not releases_ignition(exp, T0 + 60)
    assert expire_if_due(exp, T0 + 9 * H) is exp
    assert not releases_ignition(hot(), T0 + 60)  # APPROVED does not release


# --- helpers -------------------------------------------------------------------------


def test_people_helpers() -> None:
    p = hot(people=(*hot().people, Person("fw2", Role.FIRE_WATCH), Person("op2", Role.OPERATOR)))
    assert operator(p) == Person("op1", Role.OPERATOR)
    assert fire_watches(p) == (Person("fw1", Role.FIRE_WATCH), Person("fw2", Role.FIRE_WATCH))
    assert operator(hot(people=())) is None


def test_last_gas_test_is_by_time_not_list_order() -> None:
    a, b = gas(T0 + 100), gas(T0 + 50)
    assert last_gas_test(hot(gas_tests=(a, b))) == a
    assert last_gas_test(hot(gas_tests=())) is None


def test_competency_valid() -> None:
    p = hot()
    exp = T0 + 365 * 24 * H
    assert competency_valid(p, Person("op1", Role.OPERATOR), "hot_work", exp - 1)
    assert competency_valid(p, "op1", "hot_work", T0)
    assert not competency_valid(p, "op1", "hot_work", exp)
    assert not competency_valid(p, "op1", "confined_space", T0)
    assert not competency_valid(p, "fw1", "hot_work", T0)


def test_fire_watch_until() -> None:
    assert fire_watch_until(hot(), T0 + 100) == T0 + 100 + 1800
    assert fire_watch_until(confined(), T0 + 100) is None


# --- validation ----------------------------------------------------------------------

PC = ProblemCode
GB = PermitCfg(max_validity_s=GB_MAX_VALIDITY_S)


def _without(p: Permit, pid: str, role: Role) -> tuple[Person, ...]:
    return tuple(x for x in p.people if not (x.id == pid and x.role is role))


VALIDATION = [
    ("hot ok", hot(), ZoneKind.HOT_WORK, PermitCfg(), ()),
    ("hot ok in a general zone", hot(), ZoneKind.GENERAL, PermitCfg(), ()),
    ("confined ok", confined(), ZoneKind.CONFINED_SPACE, PermitCfg(), ()),
    ("wrong site", hot(site_id="site-b"), ZoneKind.HOT_WORK, PermitCfg(), (PC.WRONG_SITE,)),
    ("valid_to == valid_from", hot(valid_to=T0), ZoneKind.HOT_WORK, PermitCfg(), (PC.BAD_WINDOW,)),
    ("valid_to < valid_from", hot(valid_to=T0 - 1), ZoneKind.HOT_WORK, PermitCfg(), (PC.BAD_WINDOW,)),
    ("valid_to NaN", hot(valid_to=math.nan), ZoneKind.HOT_WORK, PermitCfg(), (PC.BAD_WINDOW,)),
    ("first grade 8 h ok (GB)", hot(), ZoneKind.HOT_WORK, GB, ()),
    ("first grade 8 h + 1 s (GB)", hot(valid_to=T0 + 8 * H + 1), ZoneKind.HOT_WORK, GB, (PC.VALIDITY_TOO_LONG,)),
    ("second grade 72 h ok (GB)", hot(grade="second", valid_to=T0 + 72 * H), ZoneKind.HOT_WORK, GB, ()),
    ("second grade 73 h (GB)", hot(grade="second", valid_to=T0 + 73 * H), ZoneKind.HOT_WORK, GB,
     (PC.VALIDITY_TOO_LONG,)),
    ("unknown grade (GB)", hot(grade="third"), ZoneKind.HOT_WORK, GB, (PC.UNKNOWN_GRADE,)),
    ("no cap without a profile", hot(valid_to=T0 + 100 * H), ZoneKind.HOT_WORK, PermitCfg(), ()),
    ("no issuer", hot(people=_without(hot(), "is1", Role.ISSUER)), ZoneKind.HOT_WORK, PermitCfg(), (PC.NO_ISSUER,)),
    ("active without approval", hot(state=S.ACTIVE, approvals=()), ZoneKind.HOT_WORK, PermitCfg(), (PC.NO_APPROVAL,)),
    ("draft without approval is fine", hot(state=S.DRAFT, approvals=()), ZoneKind.HOT_WORK, PermitCfg(), ()),
    ("no operator", hot(people=_without(hot(), "op1", Role.OPERATOR)), ZoneKind.HOT_WORK, PermitCfg(),
     (PC.NO_OPERATOR,)),
    ("no fire watch", hot(people=_without(hot(), "fw1", Role.FIRE_WATCH)), ZoneKind.HOT_WORK, PermitCfg(),
     (PC.NO_FIRE_WATCH,)),
    ("issuer is operator", hot(people=(*hot().people, Person("is1", Role.OPERATOR))), ZoneKind.HOT_WORK,
     PermitCfg(hot_work_competency=None), (PC.ISSUER_IS_OPERATOR,)),
    ("fire watch is operator", hot(people=(*hot().people, Person("op1", Role.FIRE_WATCH))), ZoneKind.HOT_WORK,
     PermitCfg(), (PC.FIRE_WATCH_IS_OPERATOR,)),
    ("operator without certificate", hot(competencies=()), ZoneKind.HOT_WORK, PermitCfg(),
     (PC.OPERATOR_NOT_COMPETENT,)),
    ("operator certificate expired", hot(competencies=(Competency("op1", "C-1", "hot_work", T0),)),
     ZoneKind.HOT_WORK, PermitCfg(), (PC.OPERATOR_NOT_COMPETENT,)),
    ("competency check off", hot(competencies=()), ZoneKind.HOT_WORK, PermitCfg(hot_work_competency=None), ()),
    ("confined in a non-confined zone", confined(), ZoneKind.GENERAL, PermitCfg(), (PC.ZONE_KIND_MISMATCH,)),
    ("no entrants", confined(people=(Person("a1", Role.ATTENDANT), Person("is1", Role.ISSUER))),
     ZoneKind.CONFINED_SPACE, PermitCfg(), (PC.NO_ENTRANTS,)),
    ("no attendant", confined(people=_without(confined(), "a1", Role.ATTENDANT)), ZoneKind.CONFINED_SPACE,
     PermitCfg(), (PC.NO_ATTENDANT,)),
    ("attendant is entrant", confined(people=(*confined().people, Person("a1", Role.ENTRANT)), max_entrants=3),
     ZoneKind.CONFINED_SPACE, PermitCfg(), (PC.ATTENDANT_IS_ENTRANT,)),
    ("max_entrants missing", confined(max_entrants=None), ZoneKind.CONFINED_SPACE, PermitCfg(),
     (PC.NO_MAX_ENTRANTS,)),
    ("too many entrants", confined(max_entrants=1), ZoneKind.CONFINED_SPACE, PermitCfg(), (PC.TOO_MANY_ENTRANTS,)),
    ("several problems at once", hot(site_id="x", people=()), ZoneKind.HOT_WORK, PermitCfg(),
     (PC.WRONG_SITE, PC.NO_ISSUER, PC.NO_OPERATOR, PC.NO_FIRE_WATCH)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "p", "zk", "cfg", "codes"), VALIDATION, ids=[c[0] for c in VALIDATION])
def test_validate(case: str, p: Permit, zk: ZoneKind, cfg: PermitCfg, codes: tuple[ProblemCode, ...]) -> None:
    problems = validate(p, "site-a", zk, T0 + 60, cfg)
    assert tuple(x.code for x in problems) == codes
    assert all(x.detail.startswith(f"permit {p.permit_id}: ") for x in problems)


# --- properties ----------------------------------------------------------------------

# Mostly short steps (so gas tests stay fresh and activations happen), sometimes a jump past valid_to.
_dt = st.one_of(st.floats(0, 900), st.floats(0, 10 * H))
steps = st.lists(st.tuples(st.sampled_from(list(S)), _dt, st.booleans()), max_size=30)


def _run(p: Permit, seq: list[tuple[PermitState, float, bool]]) -> list[Permit]:
    """Apply the steps, swallowing refusals; optionally record a fresh gas test before each."""
    seen = [p]
    t = p.history[-1].at_utc if p.history else T0
    for to, dt, retest in seq:
        t += dt
        if retest:
            p = add_gas_test(p, gas(t))
        try:
            p = transition(p, to, t, "prop")
        except IllegalTransition:
            continue
        seen.append(p)
    return seen


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from([S.CLOSED, S.CANCELLED, S.EXPIRED]), seq=steps)
def test_terminal_states_never_reach_active(start: PermitState, seq: list[tuple[PermitState, float, bool]]) -> None:
    seen = _run(hot(state=start), seq)
    assert all(p.state is start for p in seen)
    assert not any(p.state is S.ACTIVE for p in seen)


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(list(S)), seq=steps)
def test_history_is_a_legal_walk(start: PermitState, seq: list[tuple[PermitState, float, bool]]) -> None:
    seen = _run(hot(state=start), seq)
    final = seen[-1]
    prev, suspended_at = start, -math.inf
    for ch in final.history:
        assert ch.from_state is prev and (ch.from_state, ch.to_state) in LEGAL
        if ch.to_state is S.SUSPENDED:
            suspended_at = ch.at_utc
        if ch.to_state is S.ACTIVE:  # inside the window, on a gas test <= 30 min old taken after any suspension
            assert final.valid_from <= ch.at_utc < final.valid_to
            assert any(max(suspended_at, ch.at_utc - 1800) <= g.at_utc <= ch.at_utc for g in final.gas_tests)
        prev = ch.to_state
    assert [c.at_utc for c in final.history] == sorted(c.at_utc for c in final.history)
