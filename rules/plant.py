"""The engine's people-and-permits layer: presence, confined spaces, faces, permits and the
hot-work interlock, composed over the gas state. Pure.

`refresh()` runs after every event (for the zones the event can affect) so that an
interlock drops, or an evacuation starts, in the same engine step that saw the cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rules import confined, interlock, presence
from rules.actions import Action, EvacuationUpdate, HazardRecord, Note, PeopleUpdate
from rules.config import GAS_QUANTITIES, EngineCfg, Severity, ZoneKind
from rules.events import FaceMatch
from rules.gas import SignalState
from rules.interlock import DEFAULT_CFG as HOT_WORK_DEFAULTS
from rules.interlock import HotWorkState, Ignition, Inputs, PermitView
from rules.permit import PermitState, PermitType, Role, people_with

GAS = GAS_QUANTITIES


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PlantState:
    presence: presence.PresenceState = presence.PresenceState()
    confined: Mapping[str, confined.ConfinedState] = field(default_factory=_empty)  # type: ignore[arg-type]
    faces: Mapping[str, FaceMatch] = field(default_factory=_empty)  # type: ignore[arg-type]
    """Latest accepted face verification per person."""
    permits: Mapping[str, PermitView] = field(default_factory=_empty)  # type: ignore[arg-type]
    hot_work: Mapping[str, HotWorkState] = field(default_factory=_empty)  # type: ignore[arg-type]


def badges_in(ps: PlantState, zone: str, now: float, cfg: EngineCfg) -> frozenset[str]:
    if cfg.presence is None:
        return frozenset()
    return presence.present_in(ps.presence, zone, now, cfg.presence)


def people_in(ps: PlantState, zone: str, now: float, cfg: EngineCfg) -> frozenset[str]:
    """Person ids located in the zone; unknown badges as "badge:<id>"."""
    return frozenset(cfg.badges.get(b, f"badge:{b}") for b in badges_in(ps, zone, now, cfg))


def seen_in(ps: PlantState, person: str, zone: str, cfg: EngineCfg) -> float | None:
    """Newest sighting of the person's badges by a receiver of `zone`, if located in `zone`."""
    if cfg.presence is None:
        return None
    best: float | None = None
    for badge, who in cfg.badges.items():
        if who != person:
            continue
        t = ps.presence.tracks.get(badge)
        if t is None or t.zone != zone:
            continue
        for rid, link in t.links.items():
            if cfg.presence.receivers.get(rid) == zone and (best is None or link.at > best):
                best = link.at
    return best


def roster_for(ps: PlantState, zone: str, now: float, cfg: EngineCfg) -> confined.Roster | None:
    """An active confined-space permit for the zone sets the roster; else the standing one."""
    for pid, view in ps.permits.items():
        p = view.permit
        if p.zone_id == zone and p.type is PermitType.CONFINED_SPACE and p.state is PermitState.ACTIVE:
            att = people_with(p, Role.ATTENDANT)
            return confined.Roster(
                entrants=frozenset(x.id for x in people_with(p, Role.ENTRANT)),
                attendant=att[0].id if att else None,
                max_inside=p.max_entrants or 0,
                source=pid,
            )
    r = cfg.rosters.get(zone)
    z = cfg.zones[zone]
    if r is None and z.max_occupancy:
        return confined.Roster(max_inside=z.max_occupancy)
    return r


def zone_view(
    ps: PlantState, zone: str, now: float, cfg: EngineCfg, signals: Mapping[str, SignalState]
) -> confined.ZoneView:
    inside = people_in(ps, zone, now, cfg)
    roster = roster_for(ps, zone, now, cfg)
    entrance = cfg.entrances.get(zone, zone)
    at_door = people_in(ps, entrance, now, cfg) if entrance != zone else inside
    attendant_ok = roster is None or roster.attendant is None or roster.attendant in at_door
    if entrance != zone and roster is not None and roster.attendant in inside:
        attendant_ok = False  # the attendant must stay outside
    sev = Severity.NORMAL
    fault = False
    for sc in cfg.signals_in(zone):
        st = signals[sc.id]
        if sc.quantity in GAS:
            sev = max(sev, st.severity(sc))
            fault = fault or st.fault.active or st.fault.latched
    return confined.ZoneView(inside, attendant_ok, sev, fault, roster)


def refresh_confined(
    ps: PlantState, zones: Iterable[str], now: float, cfg: EngineCfg, signals: Mapping[str, SignalState]
) -> tuple[PlantState, list[Action]]:
    acts: list[Action] = []
    states = dict(ps.confined)
    for zid in zones:
        if cfg.zones[zid].kind is not ZoneKind.CONFINED_SPACE:
            continue
        before = states.get(zid, confined.ConfinedState())
        after, ch = confined.update(before, zone_view(ps, zid, now, cfg, signals), now)
        if after == before:
            continue
        states[zid] = after
        people = tuple(sorted(after.inside))
        if ch.inside_changed or ch.conditions_changed:
            acts.append(PeopleUpdate(zid, people, dict(after.conditions)))
            for m in after.log[len(after.log) - _new_moves(before, after) :]:
                acts.append(Note("person_entered" if m.kind == "enter" else "person_left", {"zone": zid, "who": m.who}))
        if ch.started:
            acts.append(
                HazardRecord(
                    zone=zid,
                    category="confined_space",
                    level="major",
                    title=f"evacuation of {cfg.zones[zid].name or zid}: {after.evac_reason}",
                    evidence={"inside": list(people), "reason": after.evac_reason},
                )
            )
        if ch.started or (after.evacuating and ch.inside_changed):
            acts.append(EvacuationUpdate(zid, True, people, after.evac_reason))
    if states == ps.confined:
        return ps, acts
    return replace(ps, confined=MappingProxyType(states)), acts


def _new_moves(before: confined.ConfinedState, after: confined.ConfinedState) -> int:
    if not after.log:
        return 0
    if not before.log:
        return len(after.log)
    last = before.log[-1]
    for i in range(len(after.log) - 1, -1, -1):
        if after.log[i] == last:
            return len(after.log) - 1 - i
    return len(after.log)


def acknowledge_evacuation(
    ps: PlantState, zone: str, now: float, cfg: EngineCfg, signals: Mapping[str, SignalState]
) -> tuple[PlantState, list[Action]]:
    st = ps.confined.get(zone)
    if st is None:
        return ps, []
    new, ended = confined.acknowledge(st, zone_view(ps, zone, now, cfg, signals))
    if not ended:
        return ps, []
    states = dict(ps.confined)
    states[zone] = new
    return replace(ps, confined=MappingProxyType(states)), [EvacuationUpdate(zone, False, ())]


def _inputs(
    ps: PlantState,
    view: PermitView,
    now: float,
    cfg: EngineCfg,
    signals: Mapping[str, SignalState],
    zone_sev: Severity,
    output_fault: bool,
    overdue: frozenset[str] = frozenset(),
) -> Inputs:
    p = view.permit
    zone = p.zone_id
    zc = cfg.zones.get(zone)
    gas = tuple((sc, signals[sc.id]) for sc in cfg.signals_in(zone) if sc.quantity in GAS) if zc else ()
    people = {x.id for x in p.people}
    return Inputs(
        permit=view,
        zone=zone,
        zone_kind=zc.kind if zc else ZoneKind.GENERAL,
        gas=gas,
        zone_severity=zone_sev,
        present={who: seen_in(ps, who, zone, cfg) for who in people},
        faces=ps.faces,
        overdue=overdue,
        output_fault=output_fault,
    )


def refresh_hot_work(
    ps: PlantState,
    zones: Iterable[str] | None,
    now: float,
    cfg: EngineCfg,
    signals: Mapping[str, SignalState],
    severity_of: Mapping[str, Severity],
    output_fault: bool,
    overdue: frozenset[str] = frozenset(),
) -> tuple[PlantState, list[Action]]:
    """Step the interlock of every hot-work permit (in `zones`, or all when None)."""
    hcfg = cfg.hot_work or HOT_WORK_DEFAULTS
    acts: list[Action] = []
    states = dict(ps.hot_work)
    wanted = None if zones is None else set(zones)
    for pid, view in ps.permits.items():
        if view.permit.type is not PermitType.HOT_WORK:
            continue
        if wanted is not None and view.permit.zone_id not in wanted:
            continue
        sev = severity_of.get(view.permit.zone_id, Severity.ALARM)  # unknown zone: never safe
        st = states.get(pid) or interlock.initial(pid)
        st, out = interlock.step(st, _inputs(ps, view, now, cfg, signals, sev, output_fault, overdue), now, hcfg)
        states[pid] = st
        acts.extend(out)
        acts.extend(_denial_hazards(out, view))
    return replace(ps, hot_work=MappingProxyType(states)), acts


SAFETY_CHECKS = ("gas_ok", "no_alarm", "sensors_in_date", "gas_test_valid")
"""Checks whose failure while ignition was released is a hazard (fire), not just a stop."""


def _denial_hazards(out: tuple[object, ...], view: PermitView) -> list[Action]:
    """Ignition dropped for a safety reason -> a hazard for the ledger (the crew leaving is not one)."""
    found: list[Action] = []
    for a in out:
        if isinstance(a, Ignition) and not a.released and a.checklist is not None:
            failing = [c for c in a.checklist.items if not c.ok and c.name in SAFETY_CHECKS]
            if failing:
                found.append(
                    HazardRecord(
                        zone=a.zone,
                        category="fire",
                        level="general",
                        title=f"hot work stopped in {a.zone}: " + ", ".join(c.name for c in failing),
                        evidence={"permit": view.permit.permit_id, "reasons": [c.reason for c in failing]},
                    )
                )
    return found


def ignition_released(ps: PlantState, zone: str) -> bool:
    return any(st.released and ps.permits[pid].permit.zone_id == zone for pid, st in ps.hot_work.items())


def evacuating(ps: PlantState, zone: str) -> bool:
    st = ps.confined.get(zone)
    return st is not None and st.evacuating


def people_alarm(ps: PlantState, zone: str) -> bool:
    st = ps.confined.get(zone)
    return st is not None and bool(st.conditions)
