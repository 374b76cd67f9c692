"""The JSON truth of the gateway, for /api/state, the live stream and the status page.

Built from the engine state on demand; every value carries its quality and age so that a
reader can never mistake stale data for good data.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from gateway.app.sinks import checklist_json
from gateway.core.clock import iso
from gateway.core.inputs import permit_json
from gateway.core.presence_truth import presence_truth
from gateway.core.trends import condition_json
from rules import engine, plant
from rules.config import Severity

if TYPE_CHECKING:
    from gateway.app.parts import Parts

ZONE_STATES = ("normal", "warning", "alarm", "evacuate")


def snapshot(d: Parts) -> dict[str, Any]:
    now = d.clock.monotonic()
    s, cfg = d.state, d.ecfg
    signals = []
    alarms = []
    late = engine.overdue(s, now, cfg)
    for sid, sc in cfg.signals.items():
        st = s.signals[sid]
        summ = st.summary(sc)
        fresh = st.fresh(now, sc)
        good = st.good(now, sc) and not math.isnan(st.value)
        lg = d.last_good.last.get(sid)
        signals.append(
            {
                "id": sid,
                "zone": sc.zone,
                "quantity": sc.quantity,
                "unit": sc.unit,
                # A BAD or stale value is never shown as a number: "—" and the last good one, with its age.
                "value": round(st.value, 3) if good else None,
                "last_good": None if lg is None else {
                    "value": round(lg[0], 3),
                    "utc": iso(d.clock.utc() - timedelta(seconds=max(0.0, now - lg[1]))),
                    "age_s": round(now - lg[1], 1),
                },
                "quality": st.quality.value if fresh or st.quality.value == "bad" else "stale",
                "reason": st.reason,
                "age_s": None if st.at is None else round(now - st.at, 2),
                "stale": not fresh,
                "bump_or_calibration_overdue": sid in late,
                "severity": summ["severity"],
                "limits": [
                    {
                        "name": lim.name,
                        "value": lim.value,
                        "direction": lim.direction.value,
                        "severity": lim.severity.name.lower(),
                    }
                    for lim in sc.limits
                ],
            }
        )
        if summ["severity"] != "normal":
            alarms.append({"zone": sc.zone, "signal": sid, **summ})
    zones = []
    for zid, zc in cfg.zones.items():
        sev = engine.zone_severity(s, zid, cfg)
        sigs = cfg.signals_in(zid)
        fault = any(s.signals[sc.id].fault.active or s.signals[sc.id].fault.latched for sc in sigs)
        stale = any(not s.signals[sc.id].fresh(now, sc) for sc in sigs)
        state = ZONE_STATES[int(sev)] if sev > Severity.NORMAL else "normal"
        if fault and sev < Severity.EVACUATE:
            state = "fault"
        if stale and state == "normal":
            state = "stale"
        zones.append(
            {
                "id": zid,
                "name": zc.name or zid,
                "kind": zc.kind.value,
                "state": state,
                "severity": sev.name.lower(),
                "silenced": s.silenced_until.get(zid, -1.0) > now,
                "evacuate": sev >= Severity.EVACUATE or plant.evacuating(s.plant, zid),
                "people_conditions": dict(s.plant.confined[zid].conditions) if zid in s.plant.confined else {},
            }
        )
    outputs = [
        {
            "id": oid,
            "kind": oc.kind.value,
            "zone": oc.zone,
            "commanded": d.outputs.commanded.get(oid),
            "observed": d.outputs.observed.get(oid),
            "safe": oc.safe,
        }
        for oid, oc in cfg.outputs.items()
    ]
    devices = [
        {
            "id": src.spec.id,
            "up": src.up,
            "transport": src.spec.transport,
            "comm_errors": src.comm_errors,
            "polls": src.polls,
            "last_seen_s": None if src.last_ok is None else round(now - src.last_ok, 1),
            "last_reason": src.last_reason,
        }
        for src in d.sources
    ] + [
        {
            "id": mid,
            "up": m.ok,
            "transport": m.spec.transport,
            "comm_errors": m.comm_errors,
            "polls": None,
            "last_seen_s": None,
            "last_reason": "",
        }
        for mid, m in d.outputs.modules.items()
    ] + mqtt_devices(d, now)
    safety_q, telemetry_q = d.inbox.depth()
    records = d.records.stats()
    presence_zones = []
    ps = s.plant
    for zid, zc in cfg.zones.items():
        inside = plant.people_in(ps, zid, now, cfg)
        cs = ps.confined.get(zid)
        since = dict(cs.inside) if cs else {}
        known, why = presence_truth(s, cfg, zid)
        presence_zones.append(
            {
                "zone": zid,
                "presence": known,
                "presence_reason": why,
                "inside": [
                    {
                        "person": w,
                        "name": d.people.get(w, ""),
                        "since_s": round(now - since[w], 1) if w in since else None,
                    }
                    for w in sorted(inside)
                ],
                "entries": sum(1 for m in cs.log if m.kind == "enter") if cs else 0,
                "exits": sum(1 for m in cs.log if m.kind == "exit") if cs else 0,
                "max": zc.max_occupancy or None,
                "conditions": dict(cs.conditions) if cs else {},
                "log": [{"who": m.who, "kind": m.kind, "ago_s": round(now - m.at, 1)} for m in cs.log[-20:]]
                if cs
                else [],
            }
        )
    permits = []
    for pid, view in ps.permits.items():
        hw = ps.hot_work.get(pid)
        body = permit_json(view.permit)
        body["remaining_s"] = round(max(0.0, view.mono(view.permit.valid_to) - now), 1)
        if hw is not None:
            body["released"] = hw.released
            body["checklist"] = checklist_json(hw.checklist)
            body["trip_reasons"] = list(hw.trip_reasons)
        permits.append(body)
    return {
        "gateway": d.cfg.site.gateway_id,
        "site": d.cfg.site.id,
        "utc": iso(d.clock.utc()),
        "ready": d.ready,
        "uptime_s": round(now - d.started_mono, 1),
        "engine": {
            "steps": s.steps,
            "readings": d.readings_applied,
            "rejected_events": d.rejected_events,
            "inbox": [safety_q, telemetry_q],
            "telemetry_dropped": d.inbox.dropped,
        },
        "output_fault": s.output_fault or None,
        "modules_starved": dict(d.outputs.starved),
        "zones": zones,
        "signals": signals,
        "alarms": alarms,
        "outputs": outputs,
        "devices": devices,
        "rejected": dict(s.rejected),
        "hazards": {"suppressed": s.hazards.suppressed, "escalated": s.hazards.escalated},
        "face": dict(d.face.counts) if d.face is not None else None,
        "presence": {"zones": presence_zones, "receivers_down": sorted(ps.presence.down)},
        "permits": permits,
        "condition": condition_json(s.condition, cfg.machines, now, d.vibration, d.trends) if cfg.machines else None,
        "outbox": records,
        "connectivity": {
            "mqtt": {"connected": d.mqtt.connected, "pending": d.mqtt.pending, "last_error": d.mqtt.last_error},
            "outbox": records,
            "permit_sync": d.permit_sync.status_json() if d.permit_sync is not None else None,
            "tsdb": asdict(d.tsdb.status()) if d.tsdb is not None else None,
            "sparkplug": d.sparkplug.status() if d.sparkplug is not None else None,
        },
        "config": {"hash": d.config_hash, "last_reload": d.last_reload},
        "audit": {"anchor": d.anchors.last},
        "sinks": [
            {"sink": n, "errors": d.fanout.faults.get(n, 0), "last_error": d.fanout.last_error.get(n, "")}
            for n in d.fanout.names
        ],
        "tasks": [
            {"task": t, "restarts": n, "last_error": d.task_faults.get(t, "")}
            for t, n in sorted(d.task_restarts.items())
        ],
    }


def mqtt_devices(d: Parts, now: float) -> list[dict[str, Any]]:
    """Devices that publish over MQTT: up while the input is connected and their readings are fresh;
    last seen = the newest reading of any of their signals."""
    out = []
    connected = any(mi.connected for mi in d.mqtt_inputs)
    for dev in d.cfg.devices:
        if dev.transport != "mqtt":
            continue
        sigs = [p.signal for p in dev.points if p.signal in d.ecfg.signals]
        states = [(d.state.signals[sid], d.ecfg.signals[sid]) for sid in sigs]
        seen = [st.at for st, _ in states if st.at is not None]
        fresh = bool(states) and all(st.fresh(now, sc) for st, sc in states)
        reasons = sorted({st.reason for st, sc in states if st.reason and not st.good(now, sc)})
        out.append({
            "id": dev.id,
            "up": None if not seen else connected and fresh,
            "transport": "mqtt",
            "comm_errors": None,
            "polls": None,
            "last_seen_s": None if not seen else round(now - max(seen), 1),
            "last_reason": ", ".join(reasons) if reasons else ("" if connected else "MQTT input not connected"),
        })
    return out
