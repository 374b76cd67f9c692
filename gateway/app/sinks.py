"""The sinks of the engine's decisions and of the readings (gateway/core/fanout.py runs them in order).

Each sink turns the same step into what its destination needs and nothing else: coils,
log lines, MQTT topics, Sparkplug metrics, ledger records and audit lines, local state,
the status page, metrics, trends, the TSDB. Bodies and topics are documented in
docs/mqtt.md and docs/ledger-api.yaml and checked by tests against what is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from gateway.core.clock import Clock
from gateway.core.fanout import Step
from gateway.core.presence_truth import presence_truth
from gateway.ledger import replay
from gateway.northbound.tsdb import reading_point
from rules import engine
from rules.actions import AlarmUpdate, EvacuationUpdate, HazardRecord, Note, PeopleUpdate, SetOutput
from rules.config import SignalCfg
from rules.events import Quality, Reading
from rules.interlock import Checklist, ChecklistChanged, Ignition, PermitNotice

if TYPE_CHECKING:
    from gateway.core.metrics import Metrics
    from gateway.core.outputs import OutputBank
    from gateway.core.trends import TrendStore
    from gateway.core.vibration import BaselineStore
    from gateway.ledger.records import Records
    from gateway.northbound.mqtt_out import MqttOut
    from gateway.northbound.sparkplug import SparkplugNode
    from gateway.northbound.tsdb import TsdbWriter
    from gateway.status.view import StatusHub
    from rules.engine import EngineState

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
"""Engine notice kinds -> the ledger contract's permit-event enum (one "warning"; the kind goes in data)."""


def checklist_json(c: Checklist | None) -> list[dict[str, Any]]:
    if c is None:
        return []
    return [{"condition": i.name, "ok": i.ok, "reason": i.reason} for i in c.items]


def zone_state(step: Step, zone: str) -> str:
    return engine.zone_severity(step.state, zone, step.cfg).name.lower()


# --------------------------------------------------------------------------- outputs first
class OutputSink:
    """Coil commands to the output bank, before anything else; re-arm after an output-fault ack."""

    name = "outputs"

    def __init__(self, bank: OutputBank) -> None:
        self.bank = bank

    def on_step(self, step: Step) -> None:
        for a in step.actions:
            if isinstance(a, SetOutput):
                self.bank.command(a.output, a.value)
                log.info("output_commanded", output=a.output, value=a.value, reason=a.reason)
            elif isinstance(a, Note) and a.event == "output_fault_acknowledged":
                self.bank.rearm()  # modules re-armed (heartbeat, clear) before any new write


# --------------------------------------------------------------------------- the journal
class LogSink:
    """One structured, ranked line per decision (logged on change: the engine only acts on change)."""

    name = "log"

    def on_step(self, step: Step) -> None:
        for a in step.actions:
            match a:
                case AlarmUpdate():
                    # Ranked for journald: an alarm in force is a warning, a return to normal is info.
                    rank = log.info if a.state["severity"] == "normal" else log.warning
                    rank("alarm_changed", zone=a.zone, signal=a.signal, severity=a.state["severity"],
                         fault=(a.state.get("fault") or {}).get("reason"))  # fmt: skip
                case HazardRecord():
                    log.warning("hazard", zone=a.zone, category=a.category, hazard_level=a.level, title=a.title)
                case EvacuationUpdate():
                    presence, why = presence_truth(step.state, step.cfg, a.zone)
                    inside: list[str] | str = list(a.people) if presence == "known" else f"unknown ({why})"
                    log.warning("evacuation", zone=a.zone, active=a.active, inside=inside, reason=a.reason)
                case PeopleUpdate() if a.conditions:
                    log.warning("people_conditions", zone=a.zone, conditions=dict(a.conditions), inside=list(a.inside))
                case Ignition():
                    kind = "ignition_released" if a.released else "ignition_dropped"
                    log.warning(kind, permit=a.permit_id, zone=a.zone, reasons=list(a.reasons))
                case PermitNotice():
                    log.info("permit_notice", permit=a.permit_id, kind=a.kind)
                case Note(event="output_fault"):
                    log.critical("output_fault", **dict(a.fields))
                case Note(event="output_fault_acknowledged"):
                    log.warning("output_fault_acknowledged", **dict(a.fields))
                case Note(event="signal_fault" | "device_down" | "machine_stop" | "zone_silenced"):
                    log.warning(a.event, **dict(a.fields))
                case Note():
                    log.info(a.event, **dict(a.fields))


# --------------------------------------------------------------------------- MQTT (JSON)
class MqttSink:
    """Retained safety states, safety events and telemetry on the gateway's MQTT topics (docs/mqtt.md)."""

    name = "mqtt"

    def __init__(
        self,
        mqtt: MqttOut,
        people: Callable[[], Mapping[str, str]],
        state: Callable[[], EngineState] | None = None,
        signals: Callable[[], Mapping[str, SignalCfg]] | None = None,
    ) -> None:
        """`state` and `signals` let the sink publish each signal's retained alarm state once its
        first reading is in (a consumer then sees every alarm topic, normal included, and no old
        retained alarm from a previous run survives); without them it publishes on change only."""
        self.mqtt = mqtt
        self._people = people
        self._state = state
        self._signals = signals
        self._first: set[str] | None = None
        """Signals whose first reading has not been published as an alarm state yet."""

    def person(self, who: str) -> dict[str, str]:
        name = self._people().get(who, "")
        return {"id": who, "name": name} if name else {"id": who}

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        if ev.quality is Quality.GOOD:
            self.mqtt.telemetry(ev.signal, ev.value, sig.unit, ev.at)
        if self._state is not None and self._signals is not None:
            if self._first is None:
                self._first = set(self._signals())
            if ev.signal in self._first:  # its first reading is in: say where it stands, normal included
                self._first.discard(ev.signal)
                st = self._state().signals[ev.signal]
                body = {"zone": sig.zone, "signal": ev.signal, **st.summary(sig), "quality": ev.quality.value}
                self.mqtt.state("alarm", (sig.zone, ev.signal), body, ev.at)

    def on_step(self, step: Step) -> None:
        m, now = self.mqtt, step.now
        for a in step.actions:
            match a:
                case AlarmUpdate():
                    if self._first is not None:
                        self._first.discard(a.signal)
                    st = step.state.signals.get(a.signal)
                    quality = st.quality.value if st is not None else "bad"
                    m.state("alarm", (a.zone, a.signal), {"zone": a.zone, "signal": a.signal, **a.state,
                                                          "quality": quality}, now)  # fmt: skip
                case HazardRecord():
                    m.event("hazard", hazard_body(a, step, m.site), now)
                case EvacuationUpdate():
                    presence, why = presence_truth(step.state, step.cfg, a.zone)
                    body = {"zone": a.zone, "active": a.active, "people_inside": [self.person(p) for p in a.people],
                            "presence": presence, "presence_reason": why, "reason": a.reason}  # fmt: skip
                    m.state("evacuation", (a.zone,), body, now)
                case PeopleUpdate():
                    self._people_alarms(step, a, now)
                case Ignition():
                    self._interlock(step, a.permit_id, a.checklist, released=a.released)
                case ChecklistChanged():
                    self._interlock(step, a.permit_id, a.checklist)
                case PermitNotice():
                    m.state("permit", (a.permit_id,), permit_body(step, a.permit_id, a.kind, a.data), now)
                case Note(event="output_fault" | "output_fault_acknowledged"):
                    m.event("output_fault", {"event": a.event, "utc": step.utc, **dict(a.fields)}, now)

    def _people_alarms(self, step: Step, a: PeopleUpdate, now: float) -> None:
        presence, why = presence_truth(step.state, step.cfg, a.zone)
        for cond in ("attendant_absent", "over_occupancy", "unauthorized_entrant"):
            active = cond in a.conditions
            if active or self.mqtt.retained_active(self.mqtt.topic("alarm", a.zone, cond)):
                body = {
                    "zone": a.zone,
                    "signal": cond,
                    "severity": "alarm" if active else "normal",
                    "reason": a.conditions.get(cond, ""),
                    "inside": [self.person(p) for p in a.inside],
                    "presence": presence,
                    "presence_reason": why,
                }
                self.mqtt.state("alarm", (a.zone, cond), body, now)

    def _interlock(self, step: Step, pid: str, checklist: Checklist, released: bool | None = None) -> None:
        st = step.state.plant.hot_work.get(pid)
        view = step.state.plant.permits.get(pid)
        body = {
            "permit": pid,
            "zone": view.permit.zone_id if view else None,
            "released": st.released if released is None and st else bool(released),
            "ok": checklist.ok,
            "seconds_left": checklist.seconds_left,
            "checklist": checklist_json(checklist),
        }
        self.mqtt.state("interlock", (pid,), body, step.now)


def hazard_body(a: HazardRecord, step: Step, site: str) -> dict[str, Any]:
    evidence = dict(a.evidence)
    if "inside" in evidence:  # who was inside is only as good as the presence source behind it
        evidence["presence"], evidence["presence_reason"] = presence_truth(step.state, step.cfg, a.zone)
    return {"site": site, "zone": a.zone, "category": a.category, "level": a.level, "recurring": a.recurring,
            "title": a.title, "evidence": evidence, "utc": step.utc}  # fmt: skip


def permit_body(step: Step, pid: str, kind: str, data: Any) -> dict[str, Any]:
    view = step.state.plant.permits.get(pid)
    return {
        "permit": pid,
        "state": view.permit.state.value if view else None,
        "zone": view.permit.zone_id if view else None,
        "last_notice": kind,
        "data": dict(data),
    }


# --------------------------------------------------------------------------- Sparkplug B
class SparkplugSink:
    """Zone state, evacuation, outputs and signal values/qualities as Sparkplug metrics (docs/sparkplug.md)."""

    name = "sparkplug"

    def __init__(self, node: SparkplugNode, clock: Clock) -> None:
        self.node = node
        self.clock = clock

    def _ms(self) -> int:
        return int(self.clock.utc().timestamp() * 1000)

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        ms = self._ms()
        if ev.quality is Quality.GOOD:
            self.node.update(sig.zone, f"{sig.quantity}/{sig.id}", ev.value, ms)
        self.node.update(sig.zone, f"{sig.quantity}/{sig.id}/quality", ev.quality.value, ms)

    def on_step(self, step: Step) -> None:
        for a in step.actions:
            match a:
                case SetOutput():
                    self.node.update(step.cfg.outputs[a.output].zone, f"outputs/{a.output}", a.value, self._ms())
                case AlarmUpdate():
                    self.node.update(a.zone, "zone/state", zone_state(step, a.zone), self._ms())
                case EvacuationUpdate():
                    self.node.update(a.zone, "zone/evacuate", a.active, self._ms())


# --------------------------------------------------------------------------- ledger + audit
AUDIT_NOTES_SKIPPED = frozenset({"sensor_dates", "permit_updated"})
"""Engine notes not worth a line of their own: bump/calibration dates (read every poll, kept
in the state) and permit updates (the permit event itself is audited)."""


class RecordsSink:
    """Hazards and permit events to the ledger outbox (and the audit chain); to the audit chain
    also every safety-relevant change, whatever the ledger's hazard de-duplication does: alarm
    trip / acknowledge / clear, evacuation start / who is inside / end, people conditions,
    silence, faults, output faults, and every interlock decision with its inputs (`audit
    replay` re-runs them)."""

    name = "records"

    def __init__(self, records: Records, site: str) -> None:
        self.records = records
        self.site = site

    def on_step(self, step: Step) -> None:
        decided = False
        for a in step.actions:
            match a:
                case HazardRecord():
                    self.records.record("hazards", hazard_body(a, step, self.site))
                case Ignition():
                    decided = True
                    kind = "ignition_released" if a.released else "ignition_dropped"
                    self._permit_event(step, a.permit_id, kind, {"zone": a.zone, "reasons": list(a.reasons)})
                case ChecklistChanged():
                    decided = True
                case PermitNotice():
                    self._permit_event(step, a.permit_id, a.kind, dict(a.data))
                case AlarmUpdate():
                    self.records.audit_line("alarm", {"utc": step.utc, "zone": a.zone, "signal": a.signal, **a.state})
                case EvacuationUpdate():
                    presence, why = presence_truth(step.state, step.cfg, a.zone)
                    self.records.audit_line("evacuation", {
                        "utc": step.utc, "zone": a.zone, "active": a.active, "inside": list(a.people),
                        "presence": presence, "presence_reason": why, "reason": a.reason,
                    })  # fmt: skip
                case PeopleUpdate():
                    self.records.audit_line("people", {"utc": step.utc, "zone": a.zone, "inside": list(a.inside),
                                                       "conditions": dict(a.conditions)})  # fmt: skip
                case Note() if a.event not in AUDIT_NOTES_SKIPPED:
                    self.records.audit_line(a.event, {"event": a.event, "utc": step.utc, **_jsonable(a.fields)})
        if decided:
            for rec in replay.decision_records(step.prev, step.state, step.now, step.cfg):
                self.records.audit_line(rec.pop("kind"), rec)

    def _permit_event(self, step: Step, pid: str, kind: str, data: dict[str, Any]) -> None:
        self.records.record(
            "permit-events",
            {
                "site": self.site,
                "permit_id": pid,
                "event": PERMIT_EVENTS.get(kind, "warning"),
                "reason": "; ".join(data.get("reasons", [])) if isinstance(data.get("reasons"), list) else "",
                "utc": step.utc,
                "data": {"kind": kind, **data},
            },
        )


def _jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Note fields for the audit line: anything that is not plain JSON becomes its text."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if isinstance(v, tuple | frozenset | set):
            v = sorted(v) if isinstance(v, frozenset | set) else list(v)
        out[k] = v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v)
    return out


# --------------------------------------------------------------------------- this box
class LocalStateSink:
    """What the box keeps for itself: learned vibration baselines, and a nudge to save the latches."""

    name = "local_state"

    def __init__(self, baselines: BaselineStore, save_wake: asyncio.Event) -> None:
        self.baselines = baselines
        self.save_wake = save_wake

    def on_step(self, step: Step) -> None:
        for a in step.actions:
            if isinstance(a, Note) and a.event == "baseline_learned":
                self.baselines.save(str(a.fields["machine"]), a.fields["baseline"])
        self.save_wake.set()


class StatusSink:
    """The status page's live stream: one "changed" per step with actions (the hub rate-limits)."""

    name = "status"

    def __init__(self, hub: StatusHub) -> None:
        self.hub = hub

    def on_step(self, step: Step) -> None:
        self.hub.changed()


class LastGoodSink:
    """The last GOOD reading of every signal (value, monotonic time), so a BAD or stale signal is
    shown as "—" with its last good value and age, never as a confident number."""

    name = "last_good"

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, float]] = {}

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        if ev.quality is Quality.GOOD:
            self.last[ev.signal] = (ev.value, ev.at)


class MetricsSink:
    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        self.metrics.readings[(ev.signal, ev.quality.value)] += 1


class TrendsSink:
    name = "trends"

    def __init__(self, trends: TrendStore) -> None:
        self.trends = trends

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        self.trends.on_reading(ev)


class TsdbSink:
    """Every reading (GOOD or not, with its quality) to the time-series store."""

    name = "tsdb"

    def __init__(self, tsdb: TsdbWriter) -> None:
        self.tsdb = tsdb

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None:
        self.tsdb.add_point(
            reading_point(ev.signal, sig.quantity, sig.unit, sig.zone, ev.value, ev.quality, self.tsdb.stamp(ev.at))
        )
