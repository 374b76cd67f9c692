"""Work permits (hot work, confined space): the pure model, its lifecycle and its checks.

Time: every time in a permit is wall-clock UTC as epoch seconds (a float), because a
permit is a document shared with the central ledger and with people, and it must mean
the same instant on every machine. The engine's monotonic `now` never enters a permit:
the shell passes `now_utc` / `at_utc` (taken from its UTC clock) next to it. Nothing
here reads a clock, does I/O or logs.

Lifecycle (DOMAIN.md "Permits"):

    DRAFT -> SUBMITTED -> APPROVED -> ACTIVE <-> SUSPENDED -> CLOSED | CANCELLED | EXPIRED

Only ACTIVE releases ignition. CANCELLED and EXPIRED are reachable from every
non-terminal state (a permit can be withdrawn or run out at any point); CLOSED only from
ACTIVE or SUSPENDED (the work was done). CLOSED, CANCELLED and EXPIRED are terminal.
Entering ACTIVE needs a valid gas test taken after the latest suspension.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from rules.values import ZoneKind


class PermitType(StrEnum):
    HOT_WORK = "hot_work"
    CONFINED_SPACE = "confined_space"


class Role(StrEnum):
    """Role of a person on a permit. One person may hold several roles (listed once per role)."""

    OPERATOR = "operator"
    """Does the hot work (holds the torch)."""
    ENTRANT = "entrant"
    """Enters the confined space."""
    ATTENDANT = "attendant"
    """Stays outside the confined space, watching the entrants; never an entrant."""
    FIRE_WATCH = "fire_watch"
    """Watches for fire during hot work and >= 30 min after (OSHA 1910.252)."""
    SUPERVISOR = "supervisor"
    ISSUER = "issuer"
    """Issues/authorizes the permit; may not be the hot-work operator (NFPA 51B)."""


class PermitState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    ACTIVE = "active"
    """The only state that releases ignition."""
    SUSPENDED = "suspended"
    """Forced by a gas alarm or the crew leaving the zone; resuming needs a fresh gas test."""
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    """Automatic at `valid_to`."""


TERMINAL: frozenset[PermitState] = frozenset({PermitState.CLOSED, PermitState.CANCELLED, PermitState.EXPIRED})

_S = PermitState
TRANSITIONS: Mapping[PermitState, frozenset[PermitState]] = MappingProxyType(
    {
        _S.DRAFT: frozenset({_S.SUBMITTED, _S.CANCELLED, _S.EXPIRED}),
        _S.SUBMITTED: frozenset({_S.APPROVED, _S.CANCELLED, _S.EXPIRED}),
        _S.APPROVED: frozenset({_S.ACTIVE, _S.CANCELLED, _S.EXPIRED}),
        _S.ACTIVE: frozenset({_S.SUSPENDED, _S.CLOSED, _S.CANCELLED, _S.EXPIRED}),
        _S.SUSPENDED: frozenset({_S.ACTIVE, _S.CLOSED, _S.CANCELLED, _S.EXPIRED}),
        _S.CLOSED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.EXPIRED: frozenset(),
    }
)
"""The legal edges. Anything else raises `IllegalTransition`."""


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    """Person id as used by badges and face terminals."""
    role: Role


@dataclass(frozen=True, slots=True)
class GasTest:
    """A pre-entry / pre-work gas test recorded on the permit."""

    at_utc: float
    """When the sample was taken (epoch seconds UTC)."""
    tester: str
    """Person id of the tester."""
    o2_pct: float
    """Oxygen, %vol."""
    lel_pct: float
    """Flammables, %LEL."""
    h2s_ppm: float | None
    """None: not measured."""
    co_ppm: float | None
    """None: not measured."""
    instrument: str
    """Serial number of the gas meter."""
    bump_utc: float | None
    """Last bump test of the instrument (epoch seconds UTC); None: unknown."""
    cal_due_utc: float | None
    """Calibration due date of the instrument (epoch seconds UTC); None: unknown."""


@dataclass(frozen=True, slots=True)
class Competency:
    """A certificate a person holds (e.g. a hot-work ticket)."""

    person: str
    certificate_id: str
    kind: str
    """e.g. "hot_work", "confined_space"."""
    expires_utc: float


@dataclass(frozen=True, slots=True)
class Approval:
    signer: str
    role: Role
    at_utc: float
    signature: str
    """Opaque signature of the signer as recorded by the ledger (the ledger signs the whole permit)."""


@dataclass(frozen=True, slots=True)
class Isolation:
    """A lockout/tagout point that must be in place for the work."""

    tag: str
    point: str = ""


@dataclass(frozen=True, slots=True)
class StateChange:
    from_state: PermitState
    to_state: PermitState
    at_utc: float
    reason: str


@dataclass(frozen=True, slots=True)
class Permit:
    permit_id: str
    type: PermitType
    grade: str
    """Risk grade, e.g. "special", "first", "second" (GB) or a site's own grades."""
    site_id: str
    zone_id: str
    valid_from: float
    """Epoch seconds UTC."""
    valid_to: float
    """Epoch seconds UTC; the permit expires automatically here."""
    state: PermitState = PermitState.DRAFT
    people: tuple[Person, ...] = ()
    gas_tests: tuple[GasTest, ...] = ()
    isolations: tuple[Isolation, ...] = ()
    approvals: tuple[Approval, ...] = ()
    linked_permits: tuple[str, ...] = ()
    history: tuple[StateChange, ...] = ()
    max_entrants: int | None = None
    """Confined space: most entrants allowed inside at once."""
    competencies: tuple[Competency, ...] = ()
    revision: int = 0
    """Raised by the ledger on every change and covered by its signature; the gateway never
    acts on a lower revision than one it has accepted (rules/revision.py)."""


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GasTestLimits:
    """When a recorded gas test counts as "passed". Defaults: US/OSHA profile (DOMAIN.md)."""

    o2_min: float = 19.5
    o2_max: float = 23.5
    lel_max: float = 10.0
    """Passed only strictly below this (%LEL)."""
    h2s_max: float = 5.0
    co_max: float = 25.0
    require_toxics: bool = False
    """True: an unmeasured H2S or CO fails the test (confined spaces)."""
    bump_max_age_s: float = 86400.0
    """Instrument bump test older than this at the time of the test fails it."""
    check_instrument: bool = True


def _no_caps() -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({})


GB_MAX_VALIDITY_S: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"hot_work": MappingProxyType({"special": 8 * 3600.0, "first": 8 * 3600.0, "second": 72 * 3600.0})}
)
"""GB 30871-2022 hot-work validity by grade [verify]: a selectable profile, not a default."""


@dataclass(frozen=True, slots=True)
class PermitCfg:
    gas_test_validity_s: float = 1800.0
    """A gas test is good for 30 min (DOMAIN.md)."""
    hot_work_gas: GasTestLimits = GasTestLimits()
    hot_work_in_confined_space_gas: GasTestLimits = GasTestLimits(lel_max=1.0, require_toxics=True)
    """Hot work inside a confined space: LEL < 1 %LEL (DOMAIN.md)."""
    confined_space_gas: GasTestLimits = GasTestLimits(require_toxics=True)
    max_validity_s: Mapping[str, Mapping[str, float]] = field(default_factory=_no_caps)
    """permit type -> grade -> longest allowed valid_to - valid_from. A type listed here
    with a grade not listed is a problem (fail closed); a type not listed is uncapped."""
    hot_work_competency: str | None = "hot_work"
    """Competency kind every hot-work operator must hold; None disables the check."""
    fire_watch_after_s: float = 1800.0
    """Fire watch stays this long after hot work ends (OSHA 1910.252)."""


DEFAULT_CFG = PermitCfg()


# --- lifecycle -----------------------------------------------------------------------


class IllegalTransition(Exception):
    """A transition not in the graph, or whose guard does not hold. The permit is unchanged."""

    def __init__(self, permit_id: str, from_state: PermitState, to_state: PermitState, why: str) -> None:
        self.permit_id = permit_id
        self.from_state = from_state
        self.to_state = to_state
        self.why = why
        super().__init__(f"permit {permit_id}: {from_state} -> {to_state} refused: {why}")


def gas_limits_for(permit: Permit, zone_kind: ZoneKind | None, cfg: PermitCfg = DEFAULT_CFG) -> GasTestLimits:
    """The gas-test acceptance limits that apply to this permit in this kind of zone."""
    if permit.type is PermitType.CONFINED_SPACE:
        return cfg.confined_space_gas
    if zone_kind is ZoneKind.CONFINED_SPACE:
        return cfg.hot_work_in_confined_space_gas
    return cfg.hot_work_gas


def transition(
    permit: Permit,
    to_state: PermitState,
    at_utc: float,
    reason: str,
    cfg: PermitCfg = DEFAULT_CFG,
    zone_kind: ZoneKind | None = None,
) -> Permit:
    """Move `permit` to `to_state` at `at_utc`, recording the change in its history.

    Raises `IllegalTransition` (and returns nothing) for an edge not in `TRANSITIONS` or a
    guard that does not hold: time going backwards; ACTIVE outside the validity window or
    without a valid gas test taken after the latest suspension; EXPIRED before `valid_to`;
    APPROVED without an approval. The caller then keeps the old permit and goes safe.
    """

    def refuse(why: str) -> IllegalTransition:
        return IllegalTransition(permit.permit_id, permit.state, to_state, why)

    if to_state not in TRANSITIONS[permit.state]:
        raise refuse("not an edge of the permit lifecycle")
    if not math.isfinite(at_utc):
        raise refuse(f"time {at_utc!r} is not finite")
    if permit.history and at_utc < permit.history[-1].at_utc:
        raise refuse(f"time {at_utc} is before the last change at {permit.history[-1].at_utc}")
    if to_state is PermitState.ACTIVE:
        if not permit.valid_from <= at_utc < permit.valid_to:
            raise refuse(f"time {at_utc} is outside the validity window [{permit.valid_from}, {permit.valid_to})")
        limits = gas_limits_for(permit, zone_kind, cfg)
        if not gas_test_valid(permit, at_utc, cfg.gas_test_validity_s, limits):
            raise refuse("no passed gas test within the validity period (and after the last suspension)")
    elif to_state is PermitState.EXPIRED and at_utc < permit.valid_to:
        raise refuse(f"time {at_utc} is before valid_to {permit.valid_to}")
    elif to_state is PermitState.APPROVED and not permit.approvals:
        raise refuse("no approval recorded")
    change = StateChange(permit.state, to_state, at_utc, reason)
    return replace(permit, state=to_state, history=(*permit.history, change))


def expire_if_due(permit: Permit, now_utc: float) -> Permit:
    """EXPIRED when `now_utc` has reached `valid_to` and the permit is not terminal; else unchanged.

    Call on every Tick: expiry is automatic (DOMAIN.md).
    """
    if permit.state in TERMINAL or now_utc < permit.valid_to:
        return permit
    # History time must not go backwards; a late tick still records the real time.
    at = max(now_utc, permit.history[-1].at_utc) if permit.history else now_utc
    return transition(permit, PermitState.EXPIRED, at, "valid_to reached")


def releases_ignition(permit: Permit, now_utc: float) -> bool:
    """Only an ACTIVE permit inside its validity window releases ignition (the interlock adds the rest)."""
    return permit.state is PermitState.ACTIVE and permit.valid_from <= now_utc < permit.valid_to


def add_gas_test(permit: Permit, test: GasTest) -> Permit:
    """A copy of `permit` with one more gas test recorded."""
    return replace(permit, gas_tests=(*permit.gas_tests, test))


# --- helpers the interlock uses ------------------------------------------------------


def people_with(permit: Permit, role: Role) -> tuple[Person, ...]:
    return tuple(p for p in permit.people if p.role is role)


def operators(permit: Permit) -> tuple[Person, ...]:
    return people_with(permit, Role.OPERATOR)


def operator(permit: Permit) -> Person | None:
    """The (first listed) hot-work operator, or None."""
    ops = operators(permit)
    return ops[0] if ops else None


def fire_watches(permit: Permit) -> tuple[Person, ...]:
    return people_with(permit, Role.FIRE_WATCH)


def entrants(permit: Permit) -> tuple[Person, ...]:
    return people_with(permit, Role.ENTRANT)


def attendants(permit: Permit) -> tuple[Person, ...]:
    return people_with(permit, Role.ATTENDANT)


def last_gas_test(permit: Permit) -> GasTest | None:
    """The most recent gas test by its time (not by list order), or None."""
    return max(permit.gas_tests, key=lambda t: t.at_utc, default=None)


def last_suspension_utc(permit: Permit) -> float | None:
    """When the permit last entered SUSPENDED, or None if it never did."""
    for change in reversed(permit.history):
        if change.to_state is PermitState.SUSPENDED:
            return change.at_utc
    return None


def gas_test_passed(test: GasTest, limits: GasTestLimits = GasTestLimits()) -> bool:
    """The recorded values are inside the limits and the instrument was bumped and in calibration.

    Unknown or non-finite values fail (missing data is never "good").
    """

    def ok(v: float | None, hi: float) -> bool:
        if v is None:
            return not limits.require_toxics
        return math.isfinite(v) and v < hi

    if not (math.isfinite(test.o2_pct) and limits.o2_min <= test.o2_pct <= limits.o2_max):
        return False
    if not (math.isfinite(test.lel_pct) and test.lel_pct < limits.lel_max):
        return False
    if not (ok(test.h2s_ppm, limits.h2s_max) and ok(test.co_ppm, limits.co_max)):
        return False
    if limits.check_instrument:
        if test.bump_utc is None or not 0 <= test.at_utc - test.bump_utc <= limits.bump_max_age_s:
            return False
        if test.cal_due_utc is None or not test.cal_due_utc > test.at_utc:
            return False
    return True


def gas_test_valid(
    permit: Permit,
    now_utc: float,
    validity_s: float = 1800.0,
    limits: GasTestLimits = GasTestLimits(),
) -> bool:
    """The latest gas test passed, is not from the future, is at most `validity_s` old at
    `now_utc`, and was taken after the latest suspension (resuming needs a fresh test).

    Only the latest test counts: a failed re-test is not masked by an older pass.
    """
    test = last_gas_test(permit)
    if test is None or not math.isfinite(test.at_utc):
        return False
    if not 0.0 <= now_utc - test.at_utc <= validity_s:
        return False
    suspended = last_suspension_utc(permit)
    if suspended is not None and test.at_utc < suspended:
        return False
    return gas_test_passed(test, limits)


def competency_valid(permit: Permit, person: Person | str, kind: str, now_utc: float) -> bool:
    """`person` holds a certificate of `kind` on this permit that has not expired at `now_utc`."""
    pid = person.id if isinstance(person, Person) else person
    return any(c.person == pid and c.kind == kind and now_utc < c.expires_utc for c in permit.competencies)


def fire_watch_until(permit: Permit, work_ended_utc: float, cfg: PermitCfg = DEFAULT_CFG) -> float | None:
    """Until when the fire watch must stay after hot work ended; None if not a hot-work permit."""
    if permit.type is not PermitType.HOT_WORK:
        return None
    return work_ended_utc + cfg.fire_watch_after_s


# --- validation ----------------------------------------------------------------------


class ProblemCode(StrEnum):
    WRONG_SITE = "wrong_site"
    BAD_WINDOW = "bad_window"
    VALIDITY_TOO_LONG = "validity_too_long"
    UNKNOWN_GRADE = "unknown_grade"
    NO_ISSUER = "no_issuer"
    NO_APPROVAL = "no_approval"
    NO_OPERATOR = "no_operator"
    NO_FIRE_WATCH = "no_fire_watch"
    ISSUER_IS_OPERATOR = "issuer_is_operator"
    FIRE_WATCH_IS_OPERATOR = "fire_watch_is_operator"
    OPERATOR_NOT_COMPETENT = "operator_not_competent"
    NO_ENTRANTS = "no_entrants"
    NO_ATTENDANT = "no_attendant"
    ATTENDANT_IS_ENTRANT = "attendant_is_entrant"
    NO_MAX_ENTRANTS = "no_max_entrants"
    TOO_MANY_ENTRANTS = "too_many_entrants"
    ZONE_KIND_MISMATCH = "zone_kind_mismatch"


_Bad = Callable[["ProblemCode", str], None]
"""The problem sink passed to the check helpers."""


@dataclass(frozen=True, slots=True)
class Problem:
    code: ProblemCode
    detail: str
    """Names the field and the fix, for the person who has to correct the permit."""


def validate(
    permit: Permit, site: str, zone_kind: ZoneKind, now_utc: float, cfg: PermitCfg = DEFAULT_CFG
) -> tuple[Problem, ...]:
    """Everything wrong with `permit` for this site and zone kind at `now_utc`; () if none.

    Checks structure and roles, not the clock-driven state (expiry and gas-test age are
    the lifecycle's and the interlock's business); competency is checked at `now_utc`.
    """
    out: list[Problem] = []

    def bad(code: ProblemCode, detail: str) -> None:
        out.append(Problem(code, f"permit {permit.permit_id}: {detail}"))

    if permit.site_id != site:
        bad(ProblemCode.WRONG_SITE, f"site_id {permit.site_id!r} is not this gateway's site {site!r}")
    _check_window(permit, cfg, bad)
    issuer_ids = {p.id for p in people_with(permit, Role.ISSUER)}
    if not issuer_ids:
        bad(ProblemCode.NO_ISSUER, "people: no issuer listed")
    if permit.state in (PermitState.APPROVED, PermitState.ACTIVE, PermitState.SUSPENDED) and not permit.approvals:
        bad(ProblemCode.NO_APPROVAL, f"state {permit.state} but approvals is empty")
    if permit.type is PermitType.HOT_WORK:
        _check_hot_work(permit, issuer_ids, now_utc, cfg, bad)
    else:
        _check_confined_space(permit, zone_kind, bad)
    return tuple(out)


def _check_window(permit: Permit, cfg: PermitCfg, bad: _Bad) -> None:
    span = permit.valid_to - permit.valid_from
    if not (math.isfinite(permit.valid_from) and math.isfinite(permit.valid_to)) or span <= 0:
        bad(ProblemCode.BAD_WINDOW, f"valid_to {permit.valid_to} must be after valid_from {permit.valid_from}")
        return
    caps = cfg.max_validity_s.get(permit.type.value)
    if caps is None:
        return
    cap = caps.get(permit.grade)
    if cap is None:
        bad(ProblemCode.UNKNOWN_GRADE, f"grade {permit.grade!r} has no validity limit; known: {sorted(caps)}")
    elif span > cap:
        bad(
            ProblemCode.VALIDITY_TOO_LONG,
            f"valid for {span / 3600:.2f} h but grade {permit.grade!r} allows {cap / 3600:.2f} h",
        )


def _check_hot_work(permit: Permit, issuer_ids: set[str], now_utc: float, cfg: PermitCfg, bad: _Bad) -> None:
    ops = operators(permit)
    op_ids = {p.id for p in ops}
    if not ops:
        bad(ProblemCode.NO_OPERATOR, "hot work: no operator listed")
    if not fire_watches(permit):
        bad(ProblemCode.NO_FIRE_WATCH, "hot work: no fire watch listed")
    for pid in sorted(issuer_ids & op_ids):
        bad(ProblemCode.ISSUER_IS_OPERATOR, f"{pid} is both issuer and operator (NFPA 51B): name another issuer")
    for pid in sorted(op_ids & {p.id for p in fire_watches(permit)}):
        bad(ProblemCode.FIRE_WATCH_IS_OPERATOR, f"{pid} is both operator and fire watch: name another fire watch")
    if cfg.hot_work_competency is not None:
        for p in ops:
            if not competency_valid(permit, p, cfg.hot_work_competency, now_utc):
                bad(
                    ProblemCode.OPERATOR_NOT_COMPETENT,
                    f"operator {p.id} holds no unexpired {cfg.hot_work_competency!r} certificate",
                )


def _check_confined_space(permit: Permit, zone_kind: ZoneKind, bad: _Bad) -> None:
    if zone_kind is not ZoneKind.CONFINED_SPACE:
        bad(ProblemCode.ZONE_KIND_MISMATCH, f"confined-space permit for zone {permit.zone_id} of kind {zone_kind}")
    ent_ids = {p.id for p in entrants(permit)}
    att = attendants(permit)
    if not ent_ids:
        bad(ProblemCode.NO_ENTRANTS, "confined space: no entrant listed")
    if not att:
        bad(ProblemCode.NO_ATTENDANT, "confined space: no attendant listed")
    for pid in sorted(ent_ids & {p.id for p in att}):
        bad(ProblemCode.ATTENDANT_IS_ENTRANT, f"{pid} is both attendant and entrant: the attendant stays outside")
    if permit.max_entrants is None:
        bad(ProblemCode.NO_MAX_ENTRANTS, "confined space: max_entrants is not set")
    elif len(ent_ids) > permit.max_entrants:
        bad(ProblemCode.TOO_MANY_ENTRANTS, f"{len(ent_ids)} entrants listed but max_entrants is {permit.max_entrants}")
