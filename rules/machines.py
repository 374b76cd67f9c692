"""Condition monitoring of every configured machine, as the engine sees it. Pure.

`step(state, event, now, machines) -> (state, actions)` routes an event to the machines it
concerns (`rules.condition.step`) and translates what they say into engine actions:

| condition says | engine action |
|---|---|
| `ConditionAlert` (set or cleared) | `AlarmUpdate(zone, "machine:{id}:{kind}", severity, state)` |
| `ConditionAlert` being set | also `HazardRecord` (`condition.hazard_record`) |
| `MachineStop` | `MachinesState.stopped[id]`, and `Note("machine_stop" / "machine_released")` |
| `BaselineLearned` | `Note("baseline_learned", {"machine", "baseline"})`: the shell persists it |

The shell publishes an `AlarmUpdate` retained as alarm/{zone}/machine:{id}:{kind}.

Which events a machine sees: a `Reading` of its vibration or temperature signal, every
`Tick` (staleness), and an `Ack` that names the machine, one of its signals, or "*" with
its zone (the scope rule is `rules.condition`'s own).

Fail-safe: a machine whose rule state does not exist yet (no event since start) is
stopped, and so is a `machine_run` output that no machine names (`machine_stopped`). The
state of a machine is created at the first event the engine gives it, with `now` as its
start, so the "no data yet" grace period runs from the engine's start, not from 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rules import condition
from rules.actions import Action, AlarmUpdate, Note
from rules.condition import (
    AlertKey,
    BaselineLearned,
    ConditionAction,
    ConditionAlert,
    Level,
    MachineCfg,
    MachineState,
    MachineStop,
)
from rules.config import Severity
from rules.events import Ack, Event, Reading, Tick
from rules.vibration import Baseline

SEVERITY: Mapping[Level, Severity] = MappingProxyType(
    {
        Level.WARNING: Severity.WARNING,
        Level.ALARM: Severity.ALARM,
        # A trip or a sensor fault stops the machine: the operator must act. It is not an
        # evacuation, so it never reaches EVACUATE (that would sound the zone's horn).
        Level.TRIP: Severity.ALARM,
        Level.FAULT: Severity.ALARM,
    }
)
"""Severity published with a machine condition's `AlarmUpdate` while it is active."""


_LATCHING_KINDS = frozenset({"vibration_trip", "temperature_trip", "sensor_fault"})
"""Kinds `rules.condition` latches (its _LATCHING): the ones kept across a restart."""


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MachinesState:
    """Condition state of every machine plus the stop demand the outputs follow."""

    machines: Mapping[str, MachineState] = field(default_factory=_empty)  # type: ignore[arg-type]
    """Per machine id: `rules.condition` state (absent until the machine's first event)."""
    stopped: Mapping[str, bool] = field(default_factory=_empty)  # type: ignore[arg-type]
    """Per machine id: stop demanded. Absent means stopped (the safe state)."""
    restored: Mapping[str, Baseline] = field(default_factory=_empty)  # type: ignore[arg-type]
    """Baselines loaded from storage at start; used when a machine's state is created."""
    restored_latches: Mapping[str, frozenset[AlertKey]] = field(default_factory=_empty)  # type: ignore[arg-type]
    """Latched trips/faults from before a restart; put back when a machine's state is created."""


def initial(baselines: Mapping[str, Baseline] | None = None, latches: Mapping[str, Any] | None = None) -> MachinesState:
    """Nothing known yet (every machine stopped), with persisted baselines and latches to restore.

    `latches` is what `latched()` returned before the restart; unknown kinds are ignored.
    A restored latch holds the machine stopped until an acknowledgement, as before.
    """
    keys: dict[str, frozenset[AlertKey]] = {}
    for mid, items in (latches or {}).items():
        got = set()
        for item in items if isinstance(items, list) else []:
            if isinstance(item, list | tuple) and len(item) == 2 and item[0] in _LATCHING_KINDS:
                got.add((condition.Kind(item[0]), str(item[1])))
        if got:
            keys[str(mid)] = frozenset(got)
    return MachinesState(restored=MappingProxyType(dict(baselines or {})), restored_latches=MappingProxyType(keys))


def latched(s: MachinesState) -> dict[str, list[list[str]]]:
    """Latched trips and sensor faults per machine, JSON-ready, to survive a restart."""
    out: dict[str, list[list[str]]] = {}
    for mid, st in s.machines.items():
        keys = sorted([k.value, sig] for k, sig in st.active if k.value in _LATCHING_KINDS)
        if keys:
            out[mid] = keys
    for mid, restored in s.restored_latches.items():  # not yet re-created since the restart
        if mid not in s.machines:
            out[mid] = sorted([k.value, sig] for k, sig in restored)
    return out


def alarm_signal(machine: str, kind: str) -> str:
    """The `AlarmUpdate.signal` of one machine condition (the MQTT topic's last level)."""
    return f"machine:{machine}:{kind}"


def _concerned(ev: Event, machines: Mapping[str, MachineCfg]) -> tuple[str, ...]:
    match ev:
        case Reading(signal=sig):
            return tuple(mid for mid, m in machines.items() if sig in (m.vibration_signal, m.temperature_signal))
        case Tick() | Ack():
            return tuple(machines)  # condition.step decides the Ack's scope
    return ()


def step(
    s: MachinesState, ev: Event, now: float, machines: Mapping[str, MachineCfg]
) -> tuple[MachinesState, tuple[Action, ...]]:
    """Advance the machines `ev` concerns; events of no machine return `s` itself and no actions."""
    ids = _concerned(ev, machines)
    if not ids:
        return s, ()
    states = dict(s.machines)
    stopped = dict(s.stopped)
    acts: list[Action] = []
    for mid in ids:
        cfg = machines[mid]
        before = states.get(mid)
        if before is None:
            before = condition.initial_state(now, s.restored.get(mid))
            before = replace(before, active=s.restored_latches.get(mid, frozenset()))
        after, out = condition.step(before, ev, now, cfg)
        states[mid] = after
        stopped[mid] = after.stopped
        for a in out:
            acts.extend(_translate(a, cfg))
    return (
        replace(s, machines=MappingProxyType(states), stopped=MappingProxyType(stopped)),
        tuple(acts),
    )


def _translate(a: ConditionAction, cfg: MachineCfg) -> tuple[Action, ...]:
    match a:
        case ConditionAlert():
            sev = SEVERITY[a.level] if a.active else Severity.NORMAL
            state = {
                "severity": sev.name.lower(),
                "machine": a.machine,
                "kind": a.kind.value,
                "level": a.level.value,
                "active": a.active,
                "signal": a.signal,
                "hazard": a.hazard.value,
                "evidence": dict(a.evidence),
            }
            update = AlarmUpdate(a.zone, alarm_signal(a.machine, a.kind.value), sev, MappingProxyType(state))
            if a.active:
                return update, condition.hazard_record(a)
            return (update,)
        case MachineStop():
            event = "machine_stop" if a.stop else "machine_released"
            return (Note(event, {"machine": a.machine, "zone": cfg.zone, "reason": a.reason, "output": a.output}),)
        case BaselineLearned():
            return (Note("baseline_learned", {"machine": a.machine, "baseline": a.baseline.to_dict()}),)
    return ()  # pragma: no cover - ConditionAction is closed


def machine_stopped(s: MachinesState, output_id: str, machines: Mapping[str, MachineCfg]) -> bool:
    """Whether the `machine_run` output `output_id` must be de-energized (stop asserted).

    True while any machine wired to it demands a stop, before its first event, and when no
    machine names this output at all (a run permissive nobody monitors is never released).
    """
    wired = [mid for mid, m in machines.items() if m.stop_output == output_id]
    if not wired:
        return True
    return any(s.stopped.get(mid, True) for mid in wired)


def machine_json(s: MachinesState, mid: str, now: float, cfg: MachineCfg) -> dict[str, object]:
    """JSON-ready view of one machine for the status page (`condition.machines[]`).

    Values are None unless GOOD and fresh: the page must never show stale data as a value.
    """
    st = s.machines.get(mid)
    active = sorted(st.active) if st is not None else []
    worst = "normal"
    rank = {"normal": 0, "warning": 1, "alarm": 2, "fault": 3, "trip": 4}
    for kind, _sig in active:
        lvl = _LEVEL_OF[kind].value
        if rank[lvl] > rank[worst]:
            worst = lvl
    vib = st.vibration if st is not None else None
    temp = st.temperature if st is not None else None
    base = st.baseline.value if st is not None else s.restored.get(mid, Baseline()).value
    return {
        "id": mid,
        "zone": cfg.zone,
        "level": worst,
        "stopped": s.stopped.get(mid, True),
        "rms_mm_s": _num(vib.value) if vib is not None and vib.ok(now, cfg.vibration_stale_s) else None,
        "temperature_c": _num(temp.value) if temp is not None and temp.ok(now, cfg.temperature_stale_s) else None,
        "baseline_mm_s": None if base is None else round(base, 3),
        # Objects: the page's key/value line skips them (app.js machinesPanel).
        "conditions": [{"kind": k.value, "signal": sig} for k, sig in active],
        "signals": {
            "vibration": cfg.vibration_signal,
            "temperature": cfg.temperature_signal,
            "stop_output": cfg.stop_output,
        },
    }


def _num(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 3)  # NaN is not JSON


_LEVEL_OF: Mapping[condition.Kind, Level] = MappingProxyType(
    {
        condition.Kind.VIBRATION_ALERT: Level.ALARM,
        condition.Kind.VIBRATION_TRIP: Level.TRIP,
        condition.Kind.BASELINE_CHANGE: Level.WARNING,
        condition.Kind.TEMPERATURE_ALARM: Level.ALARM,
        condition.Kind.TEMPERATURE_TRIP: Level.TRIP,
        condition.Kind.RATE_OF_RISE: Level.ALARM,
        condition.Kind.MOTOR_BURNOUT_RISK: Level.WARNING,
        condition.Kind.SENSOR_FAULT: Level.FAULT,
    }
)
"""The level `rules.condition` gives each kind (its table), for the status summary."""
