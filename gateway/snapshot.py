"""The JSON truth of the gateway, for /api/state, the live stream and the status page.

Built from the engine state on demand; every value carries its quality and age so that a
reader can never mistake stale data for good data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gateway.clock import iso
from rules import engine
from rules.config import Severity

if TYPE_CHECKING:
    from gateway.daemon import Daemon

ZONE_STATES = ("normal", "warning", "alarm", "evacuate")


def snapshot(d: Daemon) -> dict[str, Any]:
    now = d.clock.monotonic()
    s, cfg = d.state, d.ecfg
    signals = []
    alarms = []
    for sid, sc in cfg.signals.items():
        st = s.signals[sid]
        summ = st.summary(sc)
        fresh = st.fresh(now, sc)
        signals.append(
            {
                "id": sid,
                "zone": sc.zone,
                "quantity": sc.quantity,
                "unit": sc.unit,
                "value": None if math.isnan(st.value) else round(st.value, 3),
                "quality": st.quality.value if fresh or st.quality.value == "bad" else "stale",
                "reason": st.reason,
                "age_s": None if st.at is None else round(now - st.at, 2),
                "stale": not fresh,
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
                "evacuate": sev >= Severity.EVACUATE,
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
            "comm_errors": src.comm_errors,
            "polls": src.polls,
            "last_reason": src.last_reason,
        }
        for src in d.sources
    ] + [
        {"id": mid, "up": m.ok, "comm_errors": m.comm_errors, "polls": None, "last_reason": ""}
        for mid, m in d.outputs.modules.items()
    ]
    safety_q, telemetry_q = d.inbox.depth()
    return {
        "gateway": d.cfg.site.gateway_id,
        "site": d.cfg.site.id,
        "utc": iso(d.clock.utc()),
        "ready": d.ready,
        "uptime_s": round(now - d.started_mono, 1),
        "engine": {"steps": s.steps, "rejected_events": d.rejected_events, "inbox": [safety_q, telemetry_q]},
        "output_fault": s.output_fault or None,
        "zones": zones,
        "signals": signals,
        "alarms": alarms,
        "outputs": outputs,
        "devices": devices,
        "rejected": dict(s.rejected),
        "connectivity": {
            "mqtt": {"connected": d.mqtt.connected, "pending": d.mqtt.pending, "last_error": d.mqtt.last_error},
        },
    }
