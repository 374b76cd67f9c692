"""Carry out the engine's actions: coils, MQTT topics, ledger records, audit, status page.

The engine has already decided; this only delivers, in the order the actions came. Coil
writes are queued to the output bank first, before anything that could be slow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from gateway.clock import iso
from rules.actions import (
    Action,
    AlarmUpdate,
    EvacuationUpdate,
    HazardRecord,
    Note,
    PeopleUpdate,
    SetOutput,
)
from rules.interlock import Checklist, ChecklistChanged, Ignition, PermitNotice

if TYPE_CHECKING:
    from gateway.daemon import Daemon

log = structlog.get_logger("executor")

PERMIT_EVENTS = {
    "active": "activated",
    "suspended": "suspended",
    "closed": "closed",
    "cancelled": "closed",
    "ignition_released": "ignition_released",
    "ignition_dropped": "ignition_dropped",
    "expired": "expired",
    "warning_15min": "warning",
    "warning_5min": "warning",
    "fire_watch_until": "warning",
}


def checklist_json(c: Checklist | None) -> list[dict[str, Any]]:
    if c is None:
        return []
    return [{"condition": i.name, "ok": i.ok, "reason": i.reason} for i in c.items]


class Executor:
    def __init__(self, d: Daemon, record: Callable[[str, dict[str, Any]], None]) -> None:
        self.d = d
        self.record = record
        """record(stream, body): a durable ledger record (hazards, permit-events) and an audit line."""

    def person(self, who: str) -> dict[str, str]:
        name = self.d.people.get(who, "")
        return {"id": who, "name": name} if name else {"id": who}

    def run(self, actions: tuple[Action, ...], now: float) -> None:
        for a in actions:  # coils first: nothing may delay a drop
            if isinstance(a, SetOutput):
                self.d.outputs.command(a.output, a.value)
                self.d.sparkplug_update(self.d.ecfg.outputs[a.output].zone, f"outputs/{a.output}", a.value)
                log.info("output_commanded", output=a.output, value=a.value, reason=a.reason)
        for a in actions:
            match a:
                case SetOutput():
                    pass
                case AlarmUpdate():
                    self.d.mqtt.state("alarm", (a.zone, a.signal), {"zone": a.zone, "signal": a.signal, **a.state}, now)
                    self.d.sparkplug_update(a.zone, "zone/state", self.d.zone_state(a.zone))
                    log.info("alarm_changed", zone=a.zone, signal=a.signal, severity=a.state["severity"])
                case HazardRecord():
                    self._hazard(a, now)
                case EvacuationUpdate():
                    body = {
                        "zone": a.zone,
                        "active": a.active,
                        "people_inside": [self.person(p) for p in a.people],
                        "reason": a.reason,
                    }
                    self.d.mqtt.state("evacuation", (a.zone,), body, now)
                    self.d.sparkplug_update(a.zone, "zone/evacuate", a.active)
                    log.warning("evacuation", zone=a.zone, active=a.active, inside=list(a.people), reason=a.reason)
                case PeopleUpdate():
                    self._people(a, now)
                case Ignition():
                    self._interlock(a.permit_id, a.checklist, now, released=a.released)
                    kind = "ignition_released" if a.released else "ignition_dropped"
                    self._permit_event(a.permit_id, kind, {"zone": a.zone, "reasons": list(a.reasons)})
                    log.warning(kind, permit=a.permit_id, zone=a.zone, reasons=list(a.reasons))
                case ChecklistChanged():
                    self._interlock(a.permit_id, a.checklist, now)
                case PermitNotice():
                    self._permit_event(a.permit_id, a.kind, dict(a.data))
                    self.d.mqtt.state("permit", (a.permit_id,), self._permit_body(a.permit_id, a.kind, a.data), now)
                    log.info("permit_notice", permit=a.permit_id, kind=a.kind)
                case Note(event="output_fault"):
                    log.critical("output_fault", **dict(a.fields))
                    self.d.output_alert("output_fault", dict(a.fields))
                case Note(event="output_fault_acknowledged"):
                    log.warning("output_fault_acknowledged", **dict(a.fields))
                    self.d.output_alert("output_fault_acknowledged", dict(a.fields))
                    self.d.outputs.rearm()  # modules re-armed (heartbeat, clear) before any new write
                case Note():
                    log.info(a.event, **dict(a.fields))
                    if a.event == "baseline_learned":
                        self.d.baselines.save(str(a.fields["machine"]), a.fields["baseline"])
        self.d.hub.changed()

    def _hazard(self, a: HazardRecord, now: float) -> None:
        body = {
            "site": self.d.cfg.site.id,
            "zone": a.zone,
            "category": a.category,
            "level": a.level,
            "recurring": a.recurring,
            "title": a.title,
            "evidence": dict(a.evidence),
            "utc": iso(self.d.clock.utc()),
        }
        self.d.mqtt.event("hazard", body, now)
        self.record("hazards", body)
        log.warning("hazard", zone=a.zone, category=a.category, hazard_level=a.level, title=a.title)

    def _people(self, a: PeopleUpdate, now: float) -> None:
        for cond in ("attendant_absent", "over_occupancy", "unauthorized_entrant"):
            active = cond in a.conditions
            topic = self.d.mqtt.topic("alarm", a.zone, cond)
            was = self.d.mqtt.retained_active(topic)
            if active or was:
                body = {
                    "zone": a.zone,
                    "signal": cond,
                    "severity": "alarm" if active else "normal",
                    "reason": a.conditions.get(cond, ""),
                    "inside": [self.person(p) for p in a.inside],
                }
                self.d.mqtt.state("alarm", (a.zone, cond), body, now)
        if a.conditions:
            log.warning("people_conditions", zone=a.zone, conditions=dict(a.conditions), inside=list(a.inside))

    def _interlock(self, pid: str, checklist: Checklist, now: float, released: bool | None = None) -> None:
        st = self.d.state.plant.hot_work.get(pid)
        view = self.d.state.plant.permits.get(pid)
        body = {
            "permit": pid,
            "zone": view.permit.zone_id if view else None,
            "released": st.released if released is None and st else bool(released),
            "ok": checklist.ok,
            "seconds_left": checklist.seconds_left,
            "checklist": checklist_json(checklist),
        }
        self.d.mqtt.state("interlock", (pid,), body, now)

    def _permit_body(self, pid: str, kind: str, data: Any) -> dict[str, Any]:
        view = self.d.state.plant.permits.get(pid)
        return {
            "permit": pid,
            "state": view.permit.state.value if view else None,
            "zone": view.permit.zone_id if view else None,
            "last_notice": kind,
            "data": dict(data),
        }

    def _permit_event(self, pid: str, kind: str, data: dict[str, Any]) -> None:
        # The ledger contract's event enum has one "warning"; the precise kind goes in data.
        event = PERMIT_EVENTS.get(kind, "warning")
        self.record(
            "permit-events",
            {
                "site": self.d.cfg.site.id,
                "permit_id": pid,
                "event": event,
                "reason": "; ".join(data.get("reasons", [])) if isinstance(data.get("reasons"), list) else "",
                "utc": iso(self.d.clock.utc()),
                "data": {"kind": kind, **data},
            },
        )
