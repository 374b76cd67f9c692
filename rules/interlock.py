"""Hot-work interlock: the per-permit state machine that releases and drops ignition. PURE.

Ignition is released only while location (BLE), gas, face identity and the rest of the
permit's conditions all hold (`evaluate`, in `rules.interlock_checks`), with a countdown
and an automatic stop at the permit's `valid_to`. The engine calls `step` for every
permit it holds on every event and every Tick:

- release (energize) only when every checklist item is ok. The checklist itself carries
  the history-dependent gates: after a trip, a face verification newer than the trip
  (`rearm`); after a break of more than `break_retest_s` without ignition, a gas test
  newer than the end of the last ignition (`gas_test_valid`);
- drop at once, in the same step, when any item fails: a trip, latched with its reasons;
- valid_to reached, or the permit CLOSED / CANCELLED / EXPIRED: drop, and never release
  again (an "expired" notice asks the engine to expire the permit);
- countdown notices once each at `warn_before_s` (15 and 5 min) before valid_to while
  the permit is ACTIVE;
- when ignition ends the fire watch must stay `fire_watch_after_s` more:
  `fire_watch_release_at` and `can_close` tell the permit flow.

A wrong "released" can kill; a false trip stops a shift. Where the two conflict this
module drops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rules.interlock_checks import (
    CHECK_NAMES,
    COMPETENCY,
    DEFAULT_CFG,
    FACE_VERIFIED,
    FIRE_WATCH_PRESENT,
    GAS_OK,
    GAS_TEST_VALID,
    NO_ALARM,
    OPERATOR_PRESENT,
    PERMIT_ACTIVE,
    REARM,
    SENSORS_IN_DATE,
    Check,
    Checklist,
    HotWorkCfg,
    HotWorkState,
    Inputs,
    InterlockError,
    PermitView,
    evaluate,
)
from rules.permit import TERMINAL, PermitState, operator

__all__ = [
    "CHECK_NAMES",
    "COMPETENCY",
    "DEFAULT_CFG",
    "EXPIRED",
    "FACE_VERIFIED",
    "FIRE_WATCH_PRESENT",
    "FIRE_WATCH_UNTIL",
    "GAS_OK",
    "GAS_TEST_VALID",
    "IGNITION_DROPPED",
    "IGNITION_RELEASED",
    "NO_ALARM",
    "OPERATOR_PRESENT",
    "PERMIT_ACTIVE",
    "REARM",
    "SENSORS_IN_DATE",
    "Check",
    "Checklist",
    "ChecklistChanged",
    "HotWorkCfg",
    "HotWorkState",
    "Ignition",
    "Inputs",
    "InterlockAction",
    "InterlockError",
    "PermitNotice",
    "PermitView",
    "can_close",
    "evaluate",
    "fire_watch_release_at",
    "initial",
    "step",
    "warning_kind",
]

# PermitNotice kinds (besides the countdown ones from `warning_kind`).
EXPIRED = "expired"
IGNITION_RELEASED = "ignition_released"
IGNITION_DROPPED = "ignition_dropped"
FIRE_WATCH_UNTIL = "fire_watch_until"


def _no_data() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Ignition:
    """Ignition release changed: energize (released) or de-energize the zone's IGNITION output."""

    permit_id: str
    zone: str
    released: bool
    reasons: tuple[str, ...]
    """`check: reason` of every failing item when dropped; () when released."""
    checklist: Checklist


@dataclass(frozen=True, slots=True)
class PermitNotice:
    """Something to tell the crew and the ledger about the permit (countdown, expiry, release, drop)."""

    permit_id: str
    kind: str
    """"warning_15min" | "warning_5min" (see `warning_kind`) | "expired" | "ignition_released" |
    "ignition_dropped" | "fire_watch_until"."""
    data: Mapping[str, Any] = field(default_factory=_no_data)
    """JSON-ready details; times are given both as monotonic (`*_mono`) and UTC (`*_utc`) seconds."""


@dataclass(frozen=True, slots=True)
class ChecklistChanged:
    """The set of failing items or their reasons changed (status page; retained MQTT interlock/{permit})."""

    permit_id: str
    checklist: Checklist


InterlockAction = Ignition | PermitNotice | ChecklistChanged


def initial(permit_id: str) -> HotWorkState:
    """The state of a permit the interlock has just started to watch: not released."""
    if not permit_id:
        raise InterlockError(permit_id, "permit_id must not be empty")
    return HotWorkState(permit_id=permit_id)


def warning_kind(before_s: int) -> str:
    """Notice kind of the countdown warning given `before_s` seconds before valid_to."""
    return f"warning_{before_s // 60}min" if before_s % 60 == 0 else f"warning_{before_s}s"


def _failing(cl: Checklist | None) -> tuple[tuple[str, str], ...] | None:
    return None if cl is None else tuple((c.name, c.reason) for c in cl.failing())


def step(
    state: HotWorkState, inputs: Inputs, now: float, cfg: HotWorkCfg = DEFAULT_CFG
) -> tuple[HotWorkState, tuple[InterlockAction, ...]]:
    """Advance one permit's interlock to monotonic `now` with the current `inputs`.

    Raises `InterlockError` (state unchanged) for inputs of another permit or a
    non-finite `now`; the caller then drives the ignition output safe.
    """
    if not math.isfinite(now):
        raise InterlockError(state.permit_id, f"now {now!r} is not finite")
    view = inputs.permit
    if view is not None and view.permit.permit_id != state.permit_id:
        raise InterlockError(state.permit_id, f"inputs carry permit {view.permit.permit_id!r}")
    st = state
    pid = st.permit_id
    notices: list[PermitNotice] = []
    if view is not None:
        p = view.permit
        if not st.closed and p.state in (PermitState.CLOSED, PermitState.CANCELLED):
            st = replace(st, closed=True)
        if not st.expired and (p.state is PermitState.EXPIRED or view.utc(now) >= p.valid_to):
            st = replace(st, expired=True)
            if p.state not in TERMINAL:
                data = {"valid_to_utc": p.valid_to, "valid_to_mono": view.mono(p.valid_to), "was_released": st.released}
                notices.append(PermitNotice(pid, EXPIRED, MappingProxyType(data)))

    cl = evaluate(inputs, now, cfg, st)
    ignition: Ignition | None = None
    if st.released and not cl.ok:
        st, ignition, more = _drop(st, inputs, cl, now, cfg)
        notices.extend(more)
    elif not st.released and cl.ok:
        st, ignition, more = _release(st, inputs, cl, now, cfg)
        notices.extend(more)

    st, warning = _countdown(st, inputs, now, cfg)
    if warning is not None:
        notices.append(warning)

    acts: list[InterlockAction] = [ignition] if ignition is not None else []
    acts.extend(notices)
    if _failing(cl) != _failing(state.checklist):
        acts.append(ChecklistChanged(pid, cl))
    return replace(st, checklist=cl), tuple(acts)


def _drop(
    st: HotWorkState, inputs: Inputs, cl: Checklist, now: float, cfg: HotWorkCfg
) -> tuple[HotWorkState, Ignition, list[PermitNotice]]:
    reasons = cl.reasons()
    # The normal end of a permit is not a fault: it needs no re-arm (it never releases again anyway).
    trip = not (st.expired or st.closed)
    until = now + cfg.fire_watch_after_s
    st = replace(
        st,
        released=False,
        ignition_ended_at=now,
        face_at_release=None,
        fire_watch_until=until,
        trip_latched=trip or st.trip_latched,
        tripped_at=now if trip else st.tripped_at,
        trip_reasons=reasons if trip else st.trip_reasons,
    )
    drop = {"reasons": list(reasons), "tripped": trip, "at_mono": now}
    watch: dict[str, Any] = {"until_mono": until}
    if inputs.permit is not None:
        drop["at_utc"] = inputs.permit.utc(now)
        watch["until_utc"] = inputs.permit.utc(until)
    notices = [
        PermitNotice(st.permit_id, IGNITION_DROPPED, MappingProxyType(drop)),
        PermitNotice(st.permit_id, FIRE_WATCH_UNTIL, MappingProxyType(watch)),
    ]
    return st, Ignition(st.permit_id, inputs.zone, False, reasons, cl), notices


def _release(
    st: HotWorkState, inputs: Inputs, cl: Checklist, now: float, cfg: HotWorkCfg
) -> tuple[HotWorkState, Ignition, list[PermitNotice]]:
    # cl.ok guarantees a permit, an operator and their face in this zone; re-checked so a
    # future edit of the checks cannot turn a missing face into a release.
    view = inputs.permit
    op = operator(view.permit) if view is not None else None
    face = inputs.faces.get(op.id) if op is not None else None
    if view is None or face is None:
        raise InterlockError(st.permit_id, "checklist ok without a permit, operator or face (bug in the checks)")
    ended = st.ignition_ended_at
    # A short break continues the work session (its gas test still counts); a long one starts a new one.
    in_session = st.work_started_at is not None and ended is not None and now - ended <= cfg.break_retest_s
    st = replace(
        st,
        released=True,
        released_at=now,
        trip_latched=False,
        trip_reasons=(),
        face_at_release=face.at,
        fire_watch_until=None,
        work_started_at=st.work_started_at if in_session else now,
    )
    data = {"at_mono": now, "at_utc": view.utc(now), "face_terminal": face.terminal, "face_seq": face.seq}
    notice = PermitNotice(st.permit_id, IGNITION_RELEASED, MappingProxyType(data))
    return st, Ignition(st.permit_id, inputs.zone, True, (), cl), [notice]


def _countdown(
    st: HotWorkState, inputs: Inputs, now: float, cfg: HotWorkCfg
) -> tuple[HotWorkState, PermitNotice | None]:
    """Each countdown warning once, only while the permit is ACTIVE and not yet at valid_to."""
    view = inputs.permit
    if view is None or view.permit.state is not PermitState.ACTIVE or st.expired or st.closed:
        return st, None
    left = view.permit.valid_to - view.utc(now)
    crossed = frozenset(w for w in cfg.warn_before_s if left <= w) - st.warned
    if not crossed:
        return st, None
    # Several thresholds crossed at once (a permit activated late, a long gap): say only the nearest.
    w = min(crossed)
    data = {
        "seconds_left": left,
        "valid_to_utc": view.permit.valid_to,
        "valid_to_mono": view.mono(view.permit.valid_to),
    }
    return replace(st, warned=st.warned | crossed), PermitNotice(st.permit_id, warning_kind(w), MappingProxyType(data))


def fire_watch_release_at(state: HotWorkState) -> float | None:
    """Monotonic time from which the fire watch may leave (ignition end + fire_watch_after_s).

    None while ignition is released or if it never was; `can_close` tells those apart.
    """
    return None if state.released else state.fire_watch_until


def can_close(state: HotWorkState, now: float, cfg: HotWorkCfg = DEFAULT_CFG) -> tuple[bool, str]:
    """Whether the permit may be closed at monotonic `now`, and if not, why (for the crew)."""
    if state.released:
        return False, f"permit {state.permit_id}: ignition is still released: stop hot work first"
    until = fire_watch_release_at(state)
    if until is not None and now < until:
        return (
            False,
            f"permit {state.permit_id}: the fire watch must stay {cfg.fire_watch_after_s / 60:g} min after hot work "
            f"ends ({math.ceil(until - now)} s left)",
        )
    return True, ""
