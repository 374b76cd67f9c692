"""The engine: one pure step `(state, event, now, cfg) -> (state, actions)`.

Output demands are *derived* from the whole state after every event, so a failing
condition removes its permissive in the same step that saw it. Coils start (and are
assumed to be) at their safe value; the engine only ever asks for changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rules import gas, hazards, machines, plant, presence
from rules.actions import Action, AlarmUpdate, HazardRecord, Note, SetOutput
from rules.config import EngineCfg, OutputCfg, OutputKind, Severity, ZoneKind
from rules.events import (
    Ack,
    DeviceStatus,
    Event,
    FaceMatch,
    OutputFeedback,
    PermitUpdate,
    Reading,
    ReceiverStatus,
    Rejected,
    SensorDates,
    Sighting,
    Silence,
    Tick,
)
from rules.interlock import PermitNotice, PermitView
from rules.vibration import Baseline


class EngineError(ValueError):
    """An event the engine cannot apply (e.g. a reading of an unknown signal)."""


@dataclass(frozen=True, slots=True)
class EngineState:
    started_at: float | None = None
    signals: Mapping[str, gas.SignalState] = field(default_factory=lambda: MappingProxyType({}))
    outputs: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    """Last commanded coil value per output (initially the safe value)."""
    output_fault: str = ""
    """Latched: a read-back mismatch or failure. Every output is held safe until acknowledged."""
    devices_down: frozenset[str] = frozenset()
    silenced_until: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Count of rejected inputs per reason (shown on the status page)."""
    sensor_dates: Mapping[str, tuple[float | None, float | None]] = field(default_factory=lambda: MappingProxyType({}))
    """Device -> (last bump test, last calibration) in monotonic seconds (None: never)."""
    plant: plant.PlantState = plant.PlantState()
    """Presence, confined spaces, faces, permits and hot-work interlocks."""
    hazards: hazards.HazardState = hazards.HazardState()
    """Recent hazards, for de-duplication and repeated-hazard escalation."""
    condition: machines.MachinesState = machines.MachinesState()
    """Condition monitoring of the machines and their stop demand (rules/machines.py)."""
    steps: int = 0


def initial(cfg: EngineCfg, baselines: Mapping[str, Baseline] | None = None) -> EngineState:
    """`baselines`: learned vibration baselines per machine, restored from the state dir."""
    return EngineState(
        signals=MappingProxyType({sid: gas.initial(s) for sid, s in cfg.signals.items()}),
        outputs=MappingProxyType({oid: o.safe for oid, o in cfg.outputs.items()}),
        condition=machines.initial(baselines),
    )


def step(s: EngineState, ev: Event, now: float, cfg: EngineCfg) -> tuple[EngineState, tuple[Action, ...]]:
    """Apply one event. Raises EngineError, leaving the state unchanged, for an illegal event."""
    if s.started_at is None:
        s = replace(s, started_at=now)
    acts: list[Action] = []
    zones: tuple[str, ...] | None = None  # the zones this event can affect (None: all)
    match ev:
        case Reading():
            s = _reading(s, ev, cfg, acts)
            s = _machines(s, ev, now, cfg, acts)
            zones = (cfg.signals[ev.signal].zone,)
        case Tick():
            s = _tick(s, now, cfg, acts)
            s = _presence(s, ev, now, cfg, acts)
            s = _machines(s, ev, now, cfg, acts)
        case Sighting() | ReceiverStatus():
            s = _presence(s, ev, now, cfg, acts)
        case FaceMatch():
            faces = dict(s.plant.faces)
            faces[ev.person] = ev
            s = replace(s, plant=replace(s.plant, faces=MappingProxyType(faces)))
        case PermitUpdate():
            s = _permit(s, ev, acts)
        case SensorDates():
            dates = dict(s.sensor_dates)
            mono = tuple(None if u is None else u - ev.utc_offset for u in (ev.bump_utc, ev.calibration_utc))
            dates[ev.device] = (mono[0], mono[1])
            s = replace(s, sensor_dates=MappingProxyType(dates))
            acts.append(
                Note("sensor_dates", {"device": ev.device, "bump_utc": ev.bump_utc, "cal_utc": ev.calibration_utc})
            )
        case Ack() if ev.target in cfg.machines:
            s = _machines(s, ev, now, cfg, acts)
            who = {"target": ev.target, "zone": ev.zone, "user": ev.user, "role": ev.role}
            acts.append(Note("alarm_acknowledged", who))
        case Ack():
            s = _ack(s, ev, now, cfg, acts)
            s = _machines(s, ev, now, cfg, acts)  # a signal id or "*" + zone also clears machine latches
        case Silence():
            if ev.zone not in cfg.zones:
                raise EngineError(f"silence: unknown zone {ev.zone!r}")
            if zone_severity(s, ev.zone, cfg) < Severity.EVACUATE and not plant.evacuating(s.plant, ev.zone):
                # Nothing is sounding: a silence now must not pre-mute the next evacuation.
                acts.append(Note("silence_ignored", {"zone": ev.zone, "user": ev.user, "why": "nothing sounding"}))
                return _finish(s, now, cfg, acts)
            until = dict(s.silenced_until)
            until[ev.zone] = now + cfg.silence_s
            s = replace(s, silenced_until=MappingProxyType(until))
            acts.append(Note("zone_silenced", {"zone": ev.zone, "user": ev.user, "for_s": cfg.silence_s}))
        case OutputFeedback():
            if ev.observed is None or ev.observed != ev.commanded:
                if not s.output_fault:
                    reason = f"{ev.output}: commanded {ev.commanded}, observed {ev.observed} {ev.reason}".strip()
                    s = replace(s, output_fault=reason)
                    acts.append(Note("output_fault", {"output": ev.output, "reason": reason}))
        case DeviceStatus():
            down = s.devices_down - {ev.device} if ev.up else s.devices_down | {ev.device}
            if down != s.devices_down:
                s = replace(s, devices_down=down)
                event = "device_recovered" if ev.up else "device_down"
                acts.append(Note(event, {"device": ev.device, "reason": ev.reason}))
        case Rejected():
            counts = dict(s.rejected)
            counts[ev.reason] = counts.get(ev.reason, 0) + 1
            s = replace(s, rejected=MappingProxyType(counts))
    s = _refresh(s, zones, now, cfg, acts)
    return _finish(s, now, cfg, acts)


def step_readings(
    s: EngineState, evs: Sequence[Reading], now: float, cfg: EngineCfg
) -> tuple[EngineState, tuple[Action, ...]]:
    """Many readings in one step: the same outcome as folding `step` over them, at a fraction of the cost.

    A reading of an eager signal (a gas, a machine input: `EngineCfg.eager`), or one that
    changes its signal's alarm summary or fault, goes through `step` itself, at its place in
    the sequence, so its alarms, hazards, interlocks and outputs are decided exactly as if it
    came alone. Every other reading only refreshes its signal's value and time: it cannot
    raise an alarm, and for a non-gas signal it can move a zone only toward "good" (fresher,
    GOOD). So confined spaces, interlocks and outputs of the zones those readings touched
    are derived once, at the end. Raises EngineError (state unchanged) on an unknown signal;
    the caller then applies the readings one by one.
    """
    for ev in evs:
        if ev.signal not in cfg.signals:
            raise EngineError(f"reading of unknown signal {ev.signal!r}")
    if s.started_at is None:
        s = replace(s, started_at=now)
    acts: list[Action] = []
    pending: dict[str, gas.SignalState] = {}
    zones: set[str] = set()

    def flush(s: EngineState) -> EngineState:
        if not pending:
            return s
        sigs = dict(s.signals)
        sigs.update(pending)
        pending.clear()
        return replace(s, signals=MappingProxyType(sigs))

    for ev in evs:
        scfg = cfg.signals[ev.signal]
        if ev.signal not in cfg.eager:
            before = pending.get(ev.signal) or s.signals[ev.signal]
            after = gas.on_reading(before, ev, scfg)
            if after is before:
                continue
            if not gas.alarm_changed(before, after, scfg) and after.fault.active == before.fault.active:
                pending[ev.signal] = after
                zones.add(scfg.zone)
                continue
        s, out = step(flush(s), ev, now, cfg)
        acts.extend(out)
    s = flush(s)
    if not zones:
        return s, tuple(acts)
    tail: list[Action] = []  # through _finish like any step's: hazards are de-duplicated there
    s = _refresh(s, tuple(sorted(zones)), now, cfg, tail)
    s, out = _finish(s, now, cfg, tail)
    return s, (*acts, *out)


def _presence(
    s: EngineState, ev: Tick | Sighting | ReceiverStatus, now: float, cfg: EngineCfg, acts: list[Action]
) -> EngineState:
    if cfg.presence is None:
        return s
    ps, changes = presence.step(s.plant.presence, ev, now, cfg.presence)
    for c in changes:
        acts.append(
            Note(
                "badge_zone_changed",
                {"badge": c.badge, "person": cfg.badges.get(c.badge), "from": c.old_zone, "to": c.new_zone},
            )
        )
    return replace(s, plant=replace(s.plant, presence=ps))


def _machines(s: EngineState, ev: Event, now: float, cfg: EngineCfg, acts: list[Action]) -> EngineState:
    if not cfg.machines:
        return s
    ms, out = machines.step(s.condition, ev, now, cfg.machines)
    acts.extend(out)
    return s if ms is s.condition else replace(s, condition=ms)


def _permit(s: EngineState, ev: PermitUpdate, acts: list[Action]) -> EngineState:
    pid = ev.permit.permit_id
    old = s.plant.permits.get(pid)
    if old is not None and ev.permit.revision < old.permit.revision:
        # The shell's persisted marks refuse this first (rules/revision.py); this holds it in memory too.
        raise EngineError(f"permit {pid}: revision {ev.permit.revision} is older than {old.permit.revision} held")
    # Keep the offset of the first arrival: a later version after a wall-clock jump must not shift its times.
    offset = old.utc_offset if old is not None else ev.utc_offset
    permits = dict(s.plant.permits)
    permits[pid] = PermitView(ev.permit, offset)
    acts.append(Note("permit_updated", {"permit": pid, "state": ev.permit.state.value, "zone": ev.permit.zone_id}))
    reported = ("active", "suspended", "closed", "cancelled", "expired")
    if (old is None or old.permit.state is not ev.permit.state) and ev.permit.state.value in reported:
        # The ledger moves permits between states; the gateway reports what it now enforces.
        acts.append(PermitNotice(pid, ev.permit.state.value, {"zone": ev.permit.zone_id}))
    return replace(s, plant=replace(s.plant, permits=MappingProxyType(permits)))


def _refresh(
    s: EngineState, zones: tuple[str, ...] | None, now: float, cfg: EngineCfg, acts: list[Action]
) -> EngineState:
    """Confined spaces and interlocks re-evaluated in the same step that changed their inputs."""
    if (
        not s.plant.permits
        and cfg.presence is None
        and not any(z.kind is ZoneKind.CONFINED_SPACE for z in cfg.zones.values())
    ):
        return s
    affected = tuple(cfg.zones) if zones is None else zones
    ps, out = plant.refresh_confined(s.plant, affected, now, cfg, s.signals)
    acts.extend(out)
    if ps.permits:
        sev = {z: zone_severity(s, z, cfg) for z in affected}
        ps, out = plant.refresh_hot_work(
            ps, zones, now, cfg, s.signals, sev, bool(s.output_fault), overdue(s, now, cfg)
        )
        acts.extend(out)
    return replace(s, plant=ps)


def _finish(s: EngineState, now: float, cfg: EngineCfg, acts: list[Action]) -> tuple[EngineState, tuple[Action, ...]]:
    s, out_acts = _drive_outputs(s, now, cfg)
    acts.extend(out_acts)
    if any(isinstance(a, HazardRecord) for a in acts):
        hcfg = hazards.HazardCfg(cfg.hazard_dedup_s, cfg.hazard_recur_n, cfg.hazard_recur_days)
        hz, kept = hazards.filter_actions(s.hazards, tuple(acts), now, hcfg)
        return replace(s, steps=s.steps + 1, hazards=hz), kept
    return replace(s, steps=s.steps + 1), tuple(acts)


def _reading(s: EngineState, ev: Reading, cfg: EngineCfg, acts: list[Action]) -> EngineState:
    scfg = cfg.signals.get(ev.signal)
    if scfg is None:
        raise EngineError(f"reading of unknown signal {ev.signal!r}")
    before = s.signals[ev.signal]
    after = gas.on_reading(before, ev, scfg)
    return _commit_signal(s, ev.signal, before, after, cfg, acts)


def _tick(s: EngineState, now: float, cfg: EngineCfg, acts: list[Action]) -> EngineState:
    started = now if s.started_at is None else s.started_at  # step() sets it before any tick
    for sid, scfg in cfg.signals.items():
        before = s.signals[sid]
        after = gas.on_tick(before, scfg, now, started)
        if after is not before:
            s = _commit_signal(s, sid, before, after, cfg, acts)
    return s


def _ack(s: EngineState, ev: Ack, now: float, cfg: EngineCfg, acts: list[Action]) -> EngineState:
    if ev.target == "outputs":
        if s.output_fault:
            acts.append(Note("output_fault_acknowledged", {"user": ev.user, "was": s.output_fault}))
        return replace(s, output_fault="")
    if ev.target == "*":
        if ev.zone not in cfg.zones:
            raise EngineError(f"ack: unknown zone {ev.zone!r}")
        targets = [sc.id for sc in cfg.signals_in(ev.zone)]
    elif ev.target in cfg.signals:
        targets = [ev.target]
    else:
        raise EngineError(f"ack: unknown target {ev.target!r}")
    for sid in targets:
        before = s.signals[sid]
        after = gas.on_ack(before, ev.user, ev.utc)
        s = _commit_signal(s, sid, before, after, cfg, acts)
    zone = ev.zone or (cfg.signals[ev.target].zone if ev.target in cfg.signals else "")
    if zone:
        ps, out = plant.acknowledge_evacuation(s.plant, zone, now, cfg, s.signals)
        s = replace(s, plant=ps)
        acts.extend(out)
    acts.append(Note("alarm_acknowledged", {"target": ev.target, "zone": ev.zone, "user": ev.user, "role": ev.role}))
    return s


def _commit_signal(
    s: EngineState, sid: str, before: gas.SignalState, after: gas.SignalState, cfg: EngineCfg, acts: list[Action]
) -> EngineState:
    scfg = cfg.signals[sid]
    sigs = dict(s.signals)
    sigs[sid] = after
    s = replace(s, signals=MappingProxyType(sigs))
    if gas.alarm_changed(before, after, scfg):
        acts.append(AlarmUpdate(scfg.zone, sid, after.severity(scfg), after.summary(scfg)))
        for name in gas.newly_tripped(before, after):
            lim = next(lim for lim in scfg.limits if lim.name == name)
            if lim.severity >= Severity.EVACUATE and scfg.zone in s.silenced_until:
                # A new evacuate-level condition sounds again, whatever was silenced before.
                s = replace(
                    s, silenced_until=MappingProxyType({z: t for z, t in s.silenced_until.items() if z != scfg.zone})
                )
            if lim.severity >= Severity.ALARM:
                acts.append(
                    HazardRecord(
                        zone=scfg.zone,
                        category="gas",
                        level="major" if lim.severity >= Severity.EVACUATE else "general",
                        title=f"{scfg.quantity} {name} in {scfg.zone}",
                        evidence={"signal": sid, "value": after.value, "limit": lim.value, "unit": scfg.unit},
                    )
                )
        if after.fault.active and not before.fault.active:
            acts.append(Note("signal_fault", {"signal": sid, "reason": after.fault.reason}))
    return s


def overdue(s: EngineState, now: float, cfg: EngineCfg) -> frozenset[str]:
    """Signals whose detector's bump test or calibration is overdue (or not yet known)."""
    late: set[str] = set()
    for sid, sc in cfg.signals.items():
        iv = cfg.sensor_intervals.get(sc.device)
        if iv is None:
            continue
        bump, cal = s.sensor_dates.get(sc.device, (None, None))
        if bump is None or cal is None or now - bump > iv[0] or now - cal > iv[1]:
            late.add(sid)
    return frozenset(late)


def zone_severity(s: EngineState, zone: str, cfg: EngineCfg) -> Severity:
    worst = Severity.NORMAL
    for sc in cfg.signals_in(zone):
        worst = max(worst, s.signals[sc.id].severity(sc))
    return worst


def zone_gas_good(s: EngineState, zone: str, now: float, cfg: EngineCfg) -> bool:
    """Every signal of the zone GOOD and fresh, and none in alarm or fault. No signals: not good."""
    sigs = cfg.signals_in(zone)
    return bool(sigs) and all(
        sc.device not in s.devices_down
        and s.signals[sc.id].good(now, sc)
        and s.signals[sc.id].severity(sc) < Severity.ALARM
        for sc in sigs
    )


def _active(o: OutputCfg, s: EngineState, now: float, cfg: EngineCfg) -> bool:
    """Whether the output's function is active (before polarity)."""
    sev = zone_severity(s, o.zone, cfg)
    match o.kind:
        case OutputKind.GAS_PERMISSIVE:
            return zone_gas_good(s, o.zone, now, cfg)
        case OutputKind.HORN:
            silenced = s.silenced_until.get(o.zone, -1.0) > now
            return (sev >= Severity.EVACUATE or plant.evacuating(s.plant, o.zone)) and not silenced
        case OutputKind.BEACON:
            return sev >= Severity.ALARM or plant.evacuating(s.plant, o.zone) or plant.people_alarm(s.plant, o.zone)
        case OutputKind.IGNITION:
            return plant.ignition_released(s.plant, o.zone)  # the hot-work interlock (rules/interlock.py)
        case OutputKind.MACHINE_RUN:
            return not machines.machine_stopped(s.condition, o.id, cfg.machines)
        case OutputKind.TROUBLE:
            # Reached only without an output fault (desired_outputs holds everything safe then);
            # a dead or hung engine stops the heartbeats, so the module drops it by itself.
            return True
    return False


def desired_outputs(s: EngineState, now: float, cfg: EngineCfg) -> dict[str, bool]:
    if s.output_fault:
        return {oid: o.safe for oid, o in cfg.outputs.items()}
    return {oid: o.coil(_active(o, s, now, cfg)) for oid, o in cfg.outputs.items()}


def _drive_outputs(s: EngineState, now: float, cfg: EngineCfg) -> tuple[EngineState, tuple[Action, ...]]:
    want = desired_outputs(s, now, cfg)
    changes = tuple(
        SetOutput(oid, v, _why(cfg.outputs[oid], v, s)) for oid, v in want.items() if s.outputs.get(oid) != v
    )
    if not changes:
        return s, ()
    return replace(s, outputs=MappingProxyType(want)), changes


def _why(o: OutputCfg, value: bool, s: EngineState) -> str:
    if s.output_fault:
        return f"output fault: {s.output_fault}"
    return f"{o.kind.value} {'active' if o.coil(True) == value else 'inactive'}"


def is_confined(zone: str, cfg: EngineCfg) -> bool:
    z = cfg.zones.get(zone)
    return z is not None and z.kind is ZoneKind.CONFINED_SPACE
