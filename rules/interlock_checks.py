"""Hot-work interlock: the value types and the checklist (what must hold for ignition). PURE.

`evaluate` answers "may ignition be released right now, and if not, why not?" as a list
of named checks, each with a human reason when it fails. The state machine that acts on
it (release, drop, latch, countdown, expiry) is `rules.interlock`, which re-exports all
of this module's public names.

Time model. Rules see only monotonic `now`. A permit carries UTC epoch seconds. The shell
wraps each permit in a `PermitView` with `utc_offset = now_utc - now_mono`, taken once,
when that permit (version) arrived. Every UTC instant of the permit maps to monotonic
time as `utc - utc_offset` and the current UTC time is `now + utc_offset`. A later jump
of the wall clock therefore changes no decision about a permit already held.

Missing data is never good: no permit, no operator, no face event, no gas signal, no
reading, an unknown location, a time from the future all fail their check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rules.events import FaceMatch
from rules.gas import SignalState
from rules.permit import (
    GasTest,
    GasTestLimits,
    Permit,
    PermitCfg,
    PermitType,
    competency_valid,
    fire_watches,
    gas_limits_for,
    last_gas_test,
    last_suspension_utc,
    operator,
    releases_ignition,
)
from rules.presence import ABSENT_AFTER_S
from rules.values import Severity, SignalCfg, ZoneKind

# Check names, in the order they appear in every checklist.
PERMIT_ACTIVE = "permit_active"
OPERATOR_PRESENT = "operator_present"
FIRE_WATCH_PRESENT = "fire_watch_present"
FACE_VERIFIED = "face_verified"
FACE_HELD = "verified at release; holds while the operator stays in the zone"
"""The reason a passing face_verified shows during a release (page, MQTT, audit)."""
GAS_OK = "gas_ok"
GAS_TEST_VALID = "gas_test_valid"
SENSORS_IN_DATE = "sensors_in_date"
COMPETENCY = "competency"
NO_ALARM = "no_alarm"
REARM = "rearm"
CHECK_NAMES: tuple[str, ...] = (
    PERMIT_ACTIVE,
    OPERATOR_PRESENT,
    FIRE_WATCH_PRESENT,
    FACE_VERIFIED,
    GAS_OK,
    GAS_TEST_VALID,
    SENSORS_IN_DATE,
    COMPETENCY,
    NO_ALARM,
    REARM,
)


class InterlockError(ValueError):
    """Inputs that cannot belong to this interlock (a wiring bug): the caller keeps the old state and goes safe."""

    def __init__(self, permit_id: str, why: str) -> None:
        self.permit_id = permit_id
        self.why = why
        super().__init__(f"interlock {permit_id}: {why}")


@dataclass(frozen=True, slots=True)
class HotWorkCfg:
    """Tuning of the hot-work interlock; defaults from DOMAIN.md."""

    face_window_s: float = 60.0
    """Release needs the operator's face verified at most this long ago."""
    face_hold_s: float | None = None
    """How long the face verification that started a release holds while the release lasts.
    None (the default): the whole release. Welders on a long job work in a helmet and cannot
    re-scan every minute; what keeps the identity bound instead is presence: the release also
    needs the operator's badge in the zone on every step, and any lapse ends it, after which a
    fresh face is needed. A plant that wants periodic re-verification sets this (e.g. 3600)."""
    face_presence_s: float = 60.0
    """...and the operator's badge seen in the zone at most this long before/after that face event."""
    presence_fresh_s: float = ABSENT_AFTER_S
    """A person counts as present when their badge was seen in the zone less than this long ago
    (presence `absent_after_s`)."""
    gas_test_validity_s: float = 1800.0
    """The permit's gas test must be at most this old when work (re)starts (30 min)."""
    break_retest_s: float = 3600.0
    """A break without ignition longer than this needs a gas test newer than the break start."""
    warn_before_s: tuple[int, ...] = (900, 300)
    """Countdown notices this many seconds before `valid_to`, each once."""
    fire_watch_after_s: float = 1800.0
    """The fire watch stays this long after ignition ends (OSHA 1910.252)."""
    require_competency: bool = True
    competency_kind: str = "hot_work"
    """Certificate kind the operator must hold, unexpired, at the current UTC time."""
    o2_min: float = 19.5
    """O2 must be strictly above this (%vol): the low alarm trips *at* 19.5."""
    o2_max: float = 23.5
    """O2 must be strictly below this (%vol)."""
    require_lel: bool = True
    """Hot work in a zone without a flammable-gas (LEL) detector is denied."""
    o2_quantity: str = "o2"
    lel_quantity: str = "lel"
    permit: PermitCfg = PermitCfg()
    """Where the gas-test acceptance limits come from (`gas_limits_for`)."""

    def __post_init__(self) -> None:
        for name in (
            "face_window_s",
            "face_presence_s",
            "presence_fresh_s",
            "gas_test_validity_s",
            "break_retest_s",
            "fire_watch_after_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"interlock.{name} must be a positive number of seconds, got {v!r}")
        if any(w <= 0 for w in self.warn_before_s) or len(set(self.warn_before_s)) != len(self.warn_before_s):
            raise ValueError(f"interlock.warn_before_s must be distinct positive seconds, got {self.warn_before_s}")
        if self.face_hold_s is not None and not (math.isfinite(self.face_hold_s) and self.face_hold_s > 0):
            raise ValueError(
                f"interlock.face_hold_s must be a positive number of seconds or unset, got {self.face_hold_s!r}"
            )
        if not self.o2_min < self.o2_max:
            raise ValueError(f"interlock.o2_min {self.o2_min} must be below o2_max {self.o2_max}")


DEFAULT_CFG = HotWorkCfg()


@dataclass(frozen=True, slots=True)
class PermitView:
    """A permit as the interlock sees it: its UTC times anchored to the monotonic clock."""

    permit: Permit
    utc_offset: float
    """`now_utc - now_mono`, taken by the shell when this permit arrived."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.utc_offset):
            raise ValueError(f"PermitView({self.permit.permit_id}): utc_offset must be finite, got {self.utc_offset!r}")

    def mono(self, utc: float) -> float:
        """A UTC instant of this permit on the monotonic clock."""
        return utc - self.utc_offset

    def utc(self, mono: float) -> float:
        """A monotonic instant as UTC, by this permit's anchor."""
        return mono + self.utc_offset


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything one evaluation looks at, assembled by the engine for one permit. No defaults
    for facts: a forgotten field must not silently read as "safe"."""

    permit: PermitView | None
    """None: the permit is unknown here (never released)."""
    zone: str
    """The zone this interlock's ignition output serves; must be the permit's zone."""
    zone_kind: ZoneKind
    gas: tuple[tuple[SignalCfg, SignalState], ...]
    """Every gas signal configured in the zone, with its current state."""
    zone_severity: Severity
    """Worst active or latched condition (alarm or fault, gas or not) in the zone."""
    present: Mapping[str, float | None]
    """Person id -> monotonic time their badge was last seen *in this zone*; None (or absent)
    when not located in this zone / UNKNOWN. At least the permit's people."""
    faces: Mapping[str, FaceMatch]
    """Person id -> their latest accepted FaceMatch, in any zone."""
    overdue: frozenset[str]
    """Signal ids whose bump test or calibration is overdue."""
    output_fault: bool
    """An output read-back fault is latched: every output is held safe."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    """One of CHECK_NAMES."""
    ok: bool
    reason: str = ""
    """Why it fails, for people; on a passing check, what it rests on when that is not obvious
    (a face held since release), else empty. Stable text: no live values that change every step."""


@dataclass(frozen=True, slots=True)
class Checklist:
    items: tuple[Check, ...]
    ok: bool
    """All items ok (validated: a checklist can never claim ok with a failing item)."""
    seconds_left: float | None
    """Until the permit's `valid_to` (>= 0); None without a permit."""

    def __post_init__(self) -> None:
        if self.ok and not (self.items and all(c.ok for c in self.items)):
            raise ValueError("Checklist: ok=True needs at least one item and every item ok")

    @classmethod
    def of(cls, items: tuple[Check, ...], seconds_left: float | None) -> Checklist:
        return cls(items, bool(items) and all(c.ok for c in items), seconds_left)

    def failing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.items if not c.ok)

    def reasons(self) -> tuple[str, ...]:
        """`name: reason` of every failing item."""
        return tuple(f"{c.name}: {c.reason}" for c in self.failing())


@dataclass(frozen=True, slots=True)
class HotWorkState:
    """What the interlock remembers about one permit."""

    permit_id: str
    released: bool = False
    """Ignition is released (the engine energizes the zone's IGNITION output)."""
    trip_latched: bool = False
    """Ignition was dropped by a failing condition; re-release needs a face verification newer than `tripped_at`."""
    tripped_at: float | None = None
    trip_reasons: tuple[str, ...] = ()
    """`check: reason` of what tripped it."""
    released_at: float | None = None
    """When the current (or last) release began."""
    ignition_ended_at: float | None = None
    """When the last release ended."""
    work_started_at: float | None = None
    """Start of the current work session: a release after which no break exceeded `break_retest_s`.
    The gas test must have been at most `gas_test_validity_s` old at this time."""
    warned: frozenset[int] = frozenset()
    """Countdown notices already given (seconds before valid_to)."""
    face_at_release: float | None = None
    """Monotonic time of the face event that released (None while not released)."""
    expired: bool = False
    """valid_to reached (or the permit is EXPIRED): never releases again."""
    closed: bool = False
    """The permit was CLOSED or CANCELLED: never releases again."""
    fire_watch_until: float | None = None
    """Monotonic time the fire watch may leave, set when ignition ends; None while released or never released."""
    checklist: Checklist | None = None
    """The checklist of the last step (for the status page)."""


# --- the checks -----------------------------------------------------------------------


def _fresh(seen: float | None, now: float, cfg: HotWorkCfg) -> bool:
    # A sighting from the future is a clock/wiring error, not presence.
    return seen is not None and math.isfinite(seen) and 0.0 <= now - seen < cfg.presence_fresh_s


def _ok(name: str) -> Check:
    return Check(name, True)


def _permit_active(inp: Inputs, now: float, st: HotWorkState) -> Check:
    name = PERMIT_ACTIVE
    if inp.permit is None:
        return Check(name, False, "no permit held for this interlock")
    p = inp.permit.permit
    if st.closed:
        return Check(name, False, f"permit {p.permit_id} was closed or cancelled: it never releases ignition again")
    if st.expired:
        return Check(name, False, f"permit {p.permit_id} reached valid_to: it never releases ignition again")
    if p.type is not PermitType.HOT_WORK:
        return Check(name, False, f"permit {p.permit_id} is a {p.type} permit, not hot work")
    if p.zone_id != inp.zone:
        return Check(name, False, f"permit {p.permit_id} is for zone {p.zone_id}, not zone {inp.zone}")
    now_utc = inp.permit.utc(now)
    if releases_ignition(p, now_utc):
        return _ok(name)
    if now_utc < p.valid_from:
        return Check(name, False, f"permit {p.permit_id} is not valid yet (valid_from not reached)")
    if now_utc >= p.valid_to:
        return Check(name, False, f"permit {p.permit_id} reached valid_to: it never releases ignition again")
    return Check(name, False, f"permit {p.permit_id} is {p.state}, not active")


def _operator_present(inp: Inputs, now: float, cfg: HotWorkCfg) -> Check:
    name = OPERATOR_PRESENT
    op = operator(inp.permit.permit) if inp.permit else None
    if op is None:
        return Check(name, False, "the permit lists no operator")
    seen = inp.present.get(op.id)
    if seen is None:
        return Check(name, False, f"operator {op.id} is not located in zone {inp.zone}")
    if not _fresh(seen, now, cfg):
        return Check(
            name, False, f"operator {op.id}'s badge not heard in zone {inp.zone} for {cfg.presence_fresh_s:g} s"
        )
    return _ok(name)


def _fire_watch_present(inp: Inputs, now: float, cfg: HotWorkCfg) -> Check:
    name = FIRE_WATCH_PRESENT
    if inp.permit is None:
        return Check(name, False, "no permit: no fire watch listed")
    op = operator(inp.permit.permit)
    # The operator cannot watch their own work, even if listed twice.
    ids = sorted({p.id for p in fire_watches(inp.permit.permit)} - ({op.id} if op else set()))
    if not ids:
        return Check(name, False, "the permit lists no fire watch (other than the operator)")
    if any(_fresh(inp.present.get(i), now, cfg) for i in ids):
        return _ok(name)
    return Check(
        name, False, f"no fire watch ({', '.join(ids)}) heard in zone {inp.zone} within {cfg.presence_fresh_s:g} s"
    )


def _face_verified(inp: Inputs, now: float, cfg: HotWorkCfg, st: HotWorkState) -> Check:
    name = FACE_VERIFIED
    op = operator(inp.permit.permit) if inp.permit else None
    if op is None:
        return Check(name, False, "the permit lists no operator to verify")
    f = inp.faces.get(op.id)
    where = f"a terminal of zone {inp.zone}"
    if f is None or f.person != op.id:
        return Check(name, False, f"operator {op.id} has no face verification: verify at {where}")
    if f.zone != inp.zone:
        # Also while released: the operator's face at another zone's terminal means they are not here.
        return Check(
            name,
            False,
            f"operator {op.id} was last verified at terminal {f.terminal} of zone {f.zone or '(unmapped)'}: "
            f"verify at {where}",
        )
    if not math.isfinite(f.at) or f.at > now:
        return Check(
            name, False, f"operator {op.id}'s face verification is dated in the future: verify again at {where}"
        )
    if st.released and st.face_at_release is not None and f.at >= st.face_at_release:
        # Identity established at release stays while the release lasts: any lapse of the
        # operator's presence fails operator_present and ends the release in that same step.
        if cfg.face_hold_s is None or now - st.face_at_release <= cfg.face_hold_s:
            return Check(name, True, FACE_HELD)
        return Check(name, False, f"operator {op.id}'s face verification held for the {cfg.face_hold_s:g} s "
                     f"allowed during a release: verify again at {where}")  # fmt: skip
    if now - f.at > cfg.face_window_s:
        return Check(
            name,
            False,
            f"operator {op.id}'s face verification is older than {cfg.face_window_s:g} s: verify again at {where}",
        )
    seen = inp.present.get(op.id)
    if seen is None or not math.isfinite(seen) or abs(seen - f.at) > cfg.face_presence_s:
        return Check(
            name,
            False,
            f"operator {op.id}'s badge was not seen in zone {inp.zone} "
            f"within {cfg.face_presence_s:g} s of the face verification",
        )
    return _ok(name)


def _signal_problem(sc: SignalCfg, ss: SignalState, now: float, cfg: HotWorkCfg) -> str | None:
    if ss.at is None:
        return f"{sc.id}: no reading yet"
    if ss.fault.active:
        return f"{sc.id}: fault ({ss.fault.reason})"
    if not ss.fresh(now, sc):
        return f"{sc.id}: stale (no reading for {sc.stale_after_s:g} s)"
    if not ss.good(now, sc) or not math.isfinite(ss.value):
        return f"{sc.id}: quality {ss.quality} ({ss.reason})"
    if sc.quantity == cfg.lel_quantity and sc.hot_work_max is None:
        return f"{sc.id}: no hot-work limit configured for this LEL signal"
    if sc.hot_work_max is not None and not ss.value < sc.hot_work_max:
        return f"{sc.id}: at or above the hot-work limit {sc.hot_work_max:g} {sc.unit}"
    if sc.quantity == cfg.o2_quantity and not cfg.o2_min < ss.value < cfg.o2_max:
        return f"{sc.id}: O2 outside {cfg.o2_min:g}..{cfg.o2_max:g} {sc.unit}"
    return None


def _gas_ok(inp: Inputs, now: float, cfg: HotWorkCfg) -> Check:
    name = GAS_OK
    if not inp.gas:
        return Check(name, False, f"no gas detector in zone {inp.zone}: missing data is never good")
    problems = [p for sc, ss in inp.gas if (p := _signal_problem(sc, ss, now, cfg)) is not None]
    if cfg.require_lel and not any(sc.quantity == cfg.lel_quantity for sc, _ in inp.gas):
        problems.insert(0, f"no LEL (flammable gas) detector in zone {inp.zone}")
    return Check(name, False, "; ".join(problems)) if problems else _ok(name)


def _gas_test_failure(t: GasTest, lim: GasTestLimits) -> str:
    """Which part of a recorded gas test is out of its limits (stable text for the reason)."""
    out: list[str] = []
    if not (math.isfinite(t.o2_pct) and lim.o2_min <= t.o2_pct <= lim.o2_max):
        out.append(f"O2 {t.o2_pct:g} %vol outside {lim.o2_min:g}..{lim.o2_max:g}")
    if not (math.isfinite(t.lel_pct) and t.lel_pct < lim.lel_max):
        out.append(f"LEL {t.lel_pct:g} % not below {lim.lel_max:g}")
    for label, v, hi in (("H2S", t.h2s_ppm, lim.h2s_max), ("CO", t.co_ppm, lim.co_max)):
        if v is None:
            if lim.require_toxics:
                out.append(f"{label} not measured")
        elif not (math.isfinite(v) and v < hi):
            out.append(f"{label} {v:g} ppm not below {hi:g}")
    if lim.check_instrument:
        if t.bump_utc is None or not 0 <= t.at_utc - t.bump_utc <= lim.bump_max_age_s:
            out.append(f"instrument {t.instrument} not bump-tested within {lim.bump_max_age_s:g} s before the test")
        if t.cal_due_utc is None or not t.cal_due_utc > t.at_utc:
            out.append(f"instrument {t.instrument} calibration overdue or unknown")
    return "; ".join(out)


def _gas_test_valid(inp: Inputs, now: float, cfg: HotWorkCfg, st: HotWorkState) -> Check:
    name = GAS_TEST_VALID
    if inp.permit is None:
        return Check(name, False, "no permit: no gas test")
    view, p = inp.permit, inp.permit.permit
    test = last_gas_test(p)
    if test is None:
        return Check(name, False, "no gas test recorded on the permit")
    if not math.isfinite(test.at_utc) or view.mono(test.at_utc) > now:
        return Check(name, False, "the latest gas test is dated in the future")
    # Only the latest test counts: a failed re-test is not masked by an older pass.
    failure = _gas_test_failure(test, gas_limits_for(p, inp.zone_kind, cfg.permit))
    if failure:
        return Check(name, False, f"the latest gas test failed: {failure}")
    t = view.mono(test.at_utc)
    suspended = last_suspension_utc(p)
    if suspended is not None and test.at_utc < suspended:
        return Check(name, False, "the latest gas test is older than the last suspension: re-test before resuming")
    ended = st.ignition_ended_at
    on_break = not st.released and ended is not None
    if on_break and ended is not None and now - ended > cfg.break_retest_s and t <= ended:
        return Check(
            name,
            False,
            f"no ignition for more than {cfg.break_retest_s / 60:g} min: a gas test newer than the break is needed",
        )
    in_session = st.work_started_at is not None and (
        st.released or (ended is not None and now - ended <= cfg.break_retest_s)
    )
    # Work that started on a valid test may continue (and resume after a short break) on it.
    if in_session and st.work_started_at is not None and t >= st.work_started_at - cfg.gas_test_validity_s:
        return _ok(name)
    if now - t > cfg.gas_test_validity_s:
        return Check(name, False, f"the latest gas test is older than {cfg.gas_test_validity_s / 60:g} min: re-test")
    return _ok(name)


def _sensors_in_date(inp: Inputs) -> Check:
    late = sorted(sc.id for sc, _ in inp.gas if sc.id in inp.overdue)
    if late:
        return Check(SENSORS_IN_DATE, False, f"bump test or calibration overdue: {', '.join(late)}")
    return _ok(SENSORS_IN_DATE)


def _competency(inp: Inputs, now: float, cfg: HotWorkCfg) -> Check:
    name = COMPETENCY
    if not cfg.require_competency:
        return _ok(name)
    op = operator(inp.permit.permit) if inp.permit else None
    if inp.permit is None or op is None:
        return Check(name, False, "the permit lists no operator")
    if competency_valid(inp.permit.permit, op, cfg.competency_kind, inp.permit.utc(now)):
        return _ok(name)
    return Check(name, False, f"operator {op.id} holds no unexpired {cfg.competency_kind!r} certificate")


def _no_alarm(inp: Inputs) -> Check:
    problems: list[str] = []
    if inp.zone_severity >= Severity.ALARM:
        problems.append(f"zone {inp.zone} is in {inp.zone_severity.name.lower()}")
    if inp.output_fault:
        problems.append("an output fault is latched (outputs held safe)")
    return Check(NO_ALARM, False, "; ".join(problems)) if problems else _ok(NO_ALARM)


def _rearm(inp: Inputs, st: HotWorkState) -> Check:
    if not st.trip_latched:
        return _ok(REARM)
    op = operator(inp.permit.permit) if inp.permit else None
    f = inp.faces.get(op.id) if op else None
    if f is not None and f.zone == inp.zone and st.tripped_at is not None and f.at > st.tripped_at:
        return _ok(REARM)
    who = f"operator {op.id}" if op else "the operator"
    return Check(REARM, False, f"ignition tripped: {who} must verify their face again at a terminal of zone {inp.zone}")


def evaluate(inputs: Inputs, now: float, cfg: HotWorkCfg = DEFAULT_CFG, state: HotWorkState | None = None) -> Checklist:
    """Every condition for ignition, evaluated at monotonic `now`.

    `state` (the permit's interlock state; a fresh one if None) supplies what depends on
    history: a face verification holds for the whole of a release it started, a work
    session keeps its gas test across short breaks, a trip needs a newer face, an ended
    permit never releases again. Without it the strict release-time rules apply.
    """
    st = state if state is not None else HotWorkState(inputs.permit.permit.permit_id if inputs.permit else "")
    items = (
        _permit_active(inputs, now, st),
        _operator_present(inputs, now, cfg),
        _fire_watch_present(inputs, now, cfg),
        _face_verified(inputs, now, cfg, st),
        _gas_ok(inputs, now, cfg),
        _gas_test_valid(inputs, now, cfg, st),
        _sensors_in_date(inputs),
        _competency(inputs, now, cfg),
        _no_alarm(inputs),
        _rearm(inputs, st),
    )
    left = None
    if inputs.permit is not None:
        left = max(0.0, inputs.permit.permit.valid_to - inputs.permit.utc(now))
    return Checklist.of(items, left)
