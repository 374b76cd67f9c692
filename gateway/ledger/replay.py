"""Interlock decisions in the audit log, and their replay through the pure rules.

Every interlock decision (a release, a drop, a changed checklist) is recorded with what
decided it: the interlock's state before the step, the inputs it saw, its configuration
and the time. `edge-gateway audit replay FILE` runs each recorded input through
`rules.interlock.step` again and shows that the same decisions come out, or the first
difference. Values are encoded with type tags; decoding accepts only the rules' own types.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

from rules import config as rcfg
from rules import confined, events, exposure, gas, interlock, interlock_checks, permit, plant, values
from rules.engine import EngineState

# Every type that may appear in a recorded decision; nothing else is ever instantiated.
_TYPES: dict[str, type] = {
    t.__name__: t
    for mod in (rcfg, values, events, exposure, gas, interlock, interlock_checks, permit, confined)
    for t in vars(mod).values()
    if isinstance(t, type)
    and t.__module__ == mod.__name__
    and (dataclasses.is_dataclass(t) or issubclass(t, enum.Enum))
}


class ReplayError(ValueError):
    """A record that cannot be decoded (edited, or from another version)."""


def encode(o: Any) -> Any:
    if isinstance(o, enum.Enum):  # first: StrEnum/IntEnum values are also str/int
        return {"__e": type(o).__name__, "v": o.value}
    if o is None or isinstance(o, bool | int | str):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else {"__f": repr(o)}
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {"__t": type(o).__name__, **{f.name: encode(getattr(o, f.name)) for f in dataclasses.fields(o)}}
    if isinstance(o, Mapping):
        return {"__m": [[encode(k), encode(v)] for k, v in o.items()]}
    if isinstance(o, frozenset | set):
        return {"__s": sorted((encode(x) for x in o), key=repr)}
    if isinstance(o, tuple | list):
        return [encode(x) for x in o]
    raise ReplayError(f"cannot record a {type(o).__name__}")


def decode(o: Any) -> Any:
    if o is None or isinstance(o, bool | int | str | float):
        return o
    if isinstance(o, list):
        return tuple(decode(x) for x in o)
    if not isinstance(o, dict):
        raise ReplayError(f"unexpected {type(o).__name__} in a record")
    if "__f" in o:
        return float(o["__f"])
    if "__e" in o:
        t = _TYPES.get(o["__e"])
        if t is None or not issubclass(t, enum.Enum):
            raise ReplayError(f"unknown enum {o['__e']!r}")
        return t(o["v"])
    if "__t" in o:
        t = _TYPES.get(o["__t"])
        if t is None or not dataclasses.is_dataclass(t):
            raise ReplayError(f"unknown type {o['__t']!r}")
        return t(**{k: decode(v) for k, v in o.items() if k != "__t"})
    if "__m" in o:
        return MappingProxyType({decode(k): decode(v) for k, v in o["__m"]})
    if "__s" in o:
        return frozenset(decode(x) for x in o["__s"])
    raise ReplayError(f"unknown record object with keys {sorted(o)}")


def decision_records(prev: EngineState, new: EngineState, now: float, cfg: rcfg.EngineCfg) -> list[dict[str, Any]]:
    """Audit records for every permit whose interlock decision or checklist changed in this step."""
    out = []
    hcfg = cfg.hot_work or interlock.DEFAULT_CFG
    for pid, st in new.plant.hot_work.items():
        before = prev.plant.hot_work.get(pid)
        if before is not None and before.released == st.released and before.checklist == st.checklist:
            continue
        view = new.plant.permits[pid]
        zone = view.permit.zone_id
        sev = {z: _zone_severity(new, z, cfg) for z in cfg.zones}
        from rules.engine import overdue

        inputs = plant._inputs(  # the same assembly the engine used in this step
            new.plant,
            view,
            now,
            cfg,
            new.signals,
            sev.get(zone, rcfg.Severity.ALARM),
            bool(new.output_fault),
            overdue(new, now, cfg),
        )
        out.append(
            {
                "kind": "interlock_decision",
                "permit": pid,
                "now": now,
                "released": st.released,
                "checklist": [[c.name, c.ok, c.reason] for c in (st.checklist.items if st.checklist else ())],
                "state_before": encode(before or interlock.initial(pid)),
                "inputs": encode(inputs),
                "cfg": encode(hcfg),
            }
        )
    return out


def _zone_severity(s: EngineState, zone: str, cfg: rcfg.EngineCfg) -> rcfg.Severity:
    from rules.engine import zone_severity

    return zone_severity(s, zone, cfg)


def replay_record(rec: Mapping[str, Any]) -> str | None:
    """None when the pure rule decides the same again; else the difference."""
    state, new_actions = interlock.step(
        decode(rec["state_before"]), decode(rec["inputs"]), rec["now"], decode(rec["cfg"])
    )
    del new_actions
    got = [[c.name, c.ok, c.reason] for c in (state.checklist.items if state.checklist else ())]
    if state.released != rec["released"]:
        return f"released: recorded {rec['released']}, replayed {state.released}"
    if got != rec["checklist"]:
        diff = [
            f"{a[0]}: recorded {a[1:]} replayed {b[1:]}" for a, b in zip(rec["checklist"], got, strict=False) if a != b
        ]
        return "checklist: " + ("; ".join(diff) or f"recorded {rec['checklist']}, replayed {got}")
    return None


def audit_replay_main(path: str | Path, out: TextIO | None = None) -> int:
    """0: every decision replays the same; 1: a difference (the first is shown); 2: unreadable or tampered."""
    from gateway.ledger.audit import iter_entries, verify

    out = out or sys.stdout
    v = verify(path)
    if not v.ok:
        print(f"{path}: the audit chain does not verify (line {v.first_bad_line}: {v.reason}); not replaying", file=out)
        return 2
    n = 0
    for entry in iter_entries(path):
        rec = entry.record
        if rec.get("kind") != "interlock_decision":
            continue
        n += 1
        try:
            diff = replay_record(rec)
        except (ReplayError, TypeError, KeyError) as exc:
            print(f"{path}: line {entry.seq}: cannot replay: {exc}", file=out)
            return 2
        if diff is not None:
            print(f"{path}: line {entry.seq}: permit {rec['permit']}: first difference: {diff}", file=out)
            return 1
    print(f"{path}: {n} interlock decision(s) replayed, all the same", file=out)
    return 0
