"""What survives a restart, as JSON-ready data, and how it is put back. Pure.

Kept: latched alarm levels and latched faults (with who acknowledged last), evacuations in
force, a latched output fault, and machines' latched trips and sensor faults. Each comes
back *latched but not active*: the first readings decide what is active again, and only
an acknowledgement clears a latch, exactly as before the restart.

Not kept, on purpose: presence, faces and interlock state. After a restart every badge is
UNKNOWN and no face is fresh, so no permissive can be released until every condition is
shown again; that is the safe side, and it costs one badge sighting and one face scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from rules import machines
from rules.config import EngineCfg
from rules.confined import ConfinedState
from rules.engine import EngineState
from rules.gas import FaultState, LevelState

VERSION = 1


def latched(s: EngineState) -> dict[str, Any]:
    """The part of the state that must survive a restart."""
    signals: dict[str, Any] = {}
    for sid, st in s.signals.items():
        levels = sorted(n for n, ls in st.levels.items() if ls.latched)
        fault = st.fault.reason if st.fault.latched else None
        if levels or fault:
            signals[sid] = {"levels": levels, "fault": fault, "acked_by": st.acked_by or None}
    evac = {z: cs.evac_reason for z, cs in s.plant.confined.items() if cs.evacuating}
    return {
        "version": VERSION,
        "signals": signals,
        "evacuations": evac,
        "output_fault": s.output_fault or None,
        "machines": machines.latched(s.condition),
    }


def restore(s: EngineState, saved: Mapping[str, Any], cfg: EngineCfg, now: float) -> tuple[EngineState, list[str]]:
    """Put saved latches back into a fresh state; unknown signals/zones are skipped and reported."""
    skipped: list[str] = []
    if saved.get("version") != VERSION:
        return s, [f"state file version {saved.get('version')!r} is not {VERSION}: nothing restored"]
    sigs = dict(s.signals)
    for sid, item in (saved.get("signals") or {}).items():
        scfg = cfg.signals.get(sid)
        if scfg is None:
            skipped.append(f"signals.{sid}: no longer configured")
            continue
        names = {lim.name for lim in scfg.limits}
        st = sigs[sid]
        levels = dict(st.levels)
        for name in item.get("levels") or []:
            if name in names:
                levels[name] = LevelState(active=False, latched=True, since=now)
            else:
                skipped.append(f"signals.{sid}.{name}: no such level now")
        fault = st.fault
        if item.get("fault"):
            fault = FaultState(active=False, latched=True, reason=f"restored: {item['fault']}", since=now)
        sigs[sid] = replace(st, levels=MappingProxyType(levels), fault=fault, acked_by=item.get("acked_by") or "")
    confined = dict(s.plant.confined)
    for zone, reason in (saved.get("evacuations") or {}).items():
        if zone not in cfg.zones:
            skipped.append(f"evacuations.{zone}: no longer configured")
            continue
        confined[zone] = replace(
            confined.get(zone, ConfinedState()), evacuating=True, evac_since=now, evac_reason=str(reason)
        )
    restored = machines.initial(s.condition.restored, saved.get("machines") or {}).restored_latches
    skipped += [f"machines.{m}: no longer configured" for m in restored if m not in cfg.machines]
    condition = replace(
        s.condition, restored_latches=MappingProxyType({m: k for m, k in restored.items() if m in cfg.machines})
    )
    s = replace(
        s,
        condition=condition,
        signals=MappingProxyType(sigs),
        output_fault=str(saved.get("output_fault") or ""),
        plant=replace(s.plant, confined=MappingProxyType(confined)),
    )
    return s, skipped
