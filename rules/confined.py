"""Confined spaces: who is inside, the attendant at the entrance, and evacuation. Pure.

- Who is inside comes from BLE presence (badges located in the zone); an unknown badge is
  someone too ("badge:<id>").
- The roster (entrants allowed inside, the attendant, the maximum) comes from an active
  confined-space permit for the zone, else from the zone's standing roster in config.
- People conditions (alarm level, non-latching, shown and published): the attendant absent
  from the entrance while someone is inside; more people inside than allowed; someone
  inside who is not a listed entrant (an unknown badge always is).
- Evacuation starts when an evacuate-level gas condition is in force in the zone, or a gas
  detector of the zone is faulted while someone is inside. It stays until the zone is
  empty, the cause is gone, and an acknowledgement is given after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rules.values import Severity

LOG_MAX = 200
"""Entries/exits kept per zone (bounded memory; the audit log keeps everything)."""

ATTENDANT_ABSENT = "attendant_absent"
OVER_OCCUPANCY = "over_occupancy"
UNAUTHORIZED_ENTRANT = "unauthorized_entrant"
PEOPLE_CONDITIONS = (ATTENDANT_ABSENT, OVER_OCCUPANCY, UNAUTHORIZED_ENTRANT)


@dataclass(frozen=True, slots=True)
class Roster:
    entrants: frozenset[str] = frozenset()
    """Person ids allowed inside (empty: anyone with a known badge)."""
    attendant: str | None = None
    max_inside: int = 0
    """0: no limit."""
    source: str = "config"
    """"config" or the permit id the roster came from."""


@dataclass(frozen=True, slots=True)
class Movement:
    at: float
    who: str
    kind: str
    """"enter" or "exit"."""


@dataclass(frozen=True, slots=True)
class ConfinedState:
    inside: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Who is inside -> monotonic time they entered."""
    log: tuple[Movement, ...] = ()
    conditions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Active people conditions -> human reason."""
    evacuating: bool = False
    evac_since: float | None = None
    evac_reason: str = ""


@dataclass(frozen=True, slots=True)
class ZoneView:
    """What the engine tells this rule about the zone at this step."""

    inside: frozenset[str]
    attendant_present: bool
    gas_severity: Severity
    gas_fault: bool
    roster: Roster | None


@dataclass(frozen=True, slots=True)
class ConfinedChange:
    """Something worth publishing changed (evacuation, who is inside, people conditions)."""

    evacuation_changed: bool
    inside_changed: bool
    started: bool
    """An evacuation started in this step."""
    conditions_changed: tuple[str, ...]


def _conditions(v: ZoneView) -> dict[str, str]:
    out: dict[str, str] = {}
    r = v.roster
    if v.inside and r is not None and r.attendant and not v.attendant_present:
        out[ATTENDANT_ABSENT] = f"attendant {r.attendant} is not at the entrance while {len(v.inside)} inside"
    if r is not None and r.max_inside and len(v.inside) > r.max_inside:
        out[OVER_OCCUPANCY] = f"{len(v.inside)} inside, {r.max_inside} allowed"
    strangers = sorted(
        w for w in v.inside if w.startswith("badge:") or (r is not None and r.entrants and w not in r.entrants)
    )
    if strangers:
        out[UNAUTHORIZED_ENTRANT] = "not on the permit: " + ", ".join(strangers)
    return out


def _trigger(v: ZoneView) -> str:
    if v.gas_severity >= Severity.EVACUATE:
        return "evacuate-level gas alarm"
    if v.gas_fault and v.inside:
        return "gas detector fault while occupied"
    return ""


def update(st: ConfinedState, v: ZoneView, now: float) -> tuple[ConfinedState, ConfinedChange]:
    """Re-evaluate the zone after any event."""
    inside = dict(st.inside)
    log = list(st.log)
    for who in sorted(v.inside - inside.keys()):
        inside[who] = now
        log.append(Movement(now, who, "enter"))
    for who in sorted(inside.keys() - v.inside):
        del inside[who]
        log.append(Movement(now, who, "exit"))
    inside_changed = inside.keys() != st.inside.keys()
    conds = _conditions(v)
    trigger = _trigger(v)
    started = bool(trigger) and not st.evacuating
    evacuating, since, reason = st.evacuating, st.evac_since, st.evac_reason
    if started:
        evacuating, since, reason = True, now, trigger
    changed_conds = tuple(sorted(k for k in set(conds) | set(st.conditions) if conds.get(k) != st.conditions.get(k)))
    new = ConfinedState(
        inside=MappingProxyType(inside),
        log=tuple(log[-LOG_MAX:]),
        conditions=MappingProxyType(conds),
        evacuating=evacuating,
        evac_since=since,
        evac_reason=reason,
    )
    return new, ConfinedChange(
        evacuation_changed=started, inside_changed=inside_changed, started=started, conditions_changed=changed_conds
    )


def acknowledge(st: ConfinedState, v: ZoneView) -> tuple[ConfinedState, bool]:
    """An acknowledgement ends an evacuation only once the zone is empty and the cause is gone."""
    if st.evacuating and not v.inside and not _trigger(v):
        return replace(st, evacuating=False, evac_since=None, evac_reason=""), True
    return st, False
