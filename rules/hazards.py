"""Hazard records: de-duplication within a window and escalation of repeated hazards.

The dual-prevention regime wants every hazard reported, but once: an O2 alarm that flaps
must not file a hazard every few seconds, and a hazard that keeps coming back in the same
place is a sign of an unfixed cause and is escalated ("major", recurring).

- De-duplication: a hazard with the same zone, category and title as one *raised* less
  than `dedup_s` ago is suppressed (and counted). The window runs from the last hazard
  that was raised, not from the last one suppressed, so a hazard that keeps flapping is
  still reported once per window. A different title or category is never suppressed.
- Recurrence: when the same zone and category has been raised (suppressed ones do not
  count) `recur_n` times or more within `recur_days`, this one included, it goes out with
  level "major" and recurring=True.

Time: `now` is any non-decreasing clock in seconds (the engine's monotonic `now`, or UTC
epoch seconds if the shell persists the state across restarts with `to_json`/`from_json`,
since a 7-day window outlives a monotonic clock). A clock that goes backwards never
suppresses anything: unknown order means report.

Memory is bounded: at most `max_keys` titles and `max_keys` zone/category pairs, each
with at most `recur_n` times. Eviction drops entries that no longer matter first, then the
oldest; evicting can only let a duplicate through or miss an escalation, never suppress.
Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rules.actions import Action, HazardRecord

__all__ = ["DEFAULT_CFG", "HazardCfg", "HazardState", "filter_actions", "from_json", "step", "to_json"]

DAY_S = 86400.0

DedupKey = tuple[str, str, str]
"""(zone, category, title)"""
RecurKey = tuple[str, str]
"""(zone, category)"""


@dataclass(frozen=True, slots=True)
class HazardCfg:
    """Hazard rule settings (project choices; the regime asks for dedup and escalation, not numbers)."""

    dedup_s: float = 300.0
    """A repeat of the same zone + category + title within this is suppressed."""
    recur_n: int = 3
    """This many raised hazards of one zone + category within `recur_days` escalate (1: all)."""
    recur_days: float = 7.0
    max_keys: int = 512
    """Bound on the titles and on the zone/category pairs remembered."""

    def __post_init__(self) -> None:
        if not (self.dedup_s >= 0 and self.recur_n >= 1 and self.recur_days > 0 and self.max_keys >= 1):
            raise ValueError(f"HazardCfg: need dedup_s >= 0, recur_n >= 1, recur_days > 0, max_keys >= 1; got {self}")

    @property
    def recur_s(self) -> float:
        return self.recur_days * DAY_S


DEFAULT_CFG = HazardCfg()


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HazardState:
    last: Mapping[DedupKey, float] = field(default_factory=_empty)
    """(zone, category, title) -> when it was last raised (suppressed repeats do not move it)."""
    recent: Mapping[RecurKey, tuple[float, ...]] = field(default_factory=_empty)
    """(zone, category) -> the latest raise times, oldest first, at most recur_n of them."""
    raised: int = 0
    """Hazards let through."""
    suppressed: int = 0
    """Duplicates suppressed."""
    escalated: int = 0
    """Hazards raised to major/recurring by this rule."""


def _suppresses(t: float, now: float, cfg: HazardCfg) -> bool:
    return 0.0 <= now - t < cfg.dedup_s


def step(
    state: HazardState, hazard: HazardRecord, now: float, cfg: HazardCfg = DEFAULT_CFG
) -> tuple[HazardState, HazardRecord | None]:
    """The state after `hazard` at `now`, and the hazard to record (None: a suppressed duplicate)."""
    dkey: DedupKey = (hazard.zone, hazard.category, hazard.title)
    t = state.last.get(dkey)
    if t is not None and _suppresses(t, now, cfg):
        return replace(state, suppressed=state.suppressed + 1), None

    rkey: RecurKey = (hazard.zone, hazard.category)
    times = (*(x for x in state.recent.get(rkey, ()) if now - x <= cfg.recur_s), now)[-cfg.recur_n :]
    escalate = len(times) >= cfg.recur_n
    out = replace(hazard, level="major", recurring=True) if escalate else hazard

    last = dict(state.last)
    last.pop(dkey, None)  # re-insert: dict order = raise order, which eviction relies on
    last[dkey] = now
    if len(last) > cfg.max_keys:
        last = _evict_last(last, now, cfg)
    recent = dict(state.recent)
    recent.pop(rkey, None)
    recent[rkey] = times
    if len(recent) > cfg.max_keys:
        recent = _evict_recent(recent, now, cfg)
    new = HazardState(
        MappingProxyType(last),
        MappingProxyType(recent),
        raised=state.raised + 1,
        suppressed=state.suppressed,
        escalated=state.escalated + (1 if escalate and out != hazard else 0),
    )
    return new, out


def _evict_last(last: dict[DedupKey, float], now: float, cfg: HazardCfg) -> dict[DedupKey, float]:
    kept = {k: t for k, t in last.items() if _suppresses(t, now, cfg)}
    while len(kept) > cfg.max_keys:
        del kept[min(kept, key=kept.__getitem__)]  # the oldest: at worst one duplicate gets through
    return kept


def _evict_recent(
    recent: dict[RecurKey, tuple[float, ...]], now: float, cfg: HazardCfg
) -> dict[RecurKey, tuple[float, ...]]:
    kept = {k: ts for k, ts in recent.items() if any(now - x <= cfg.recur_s for x in ts)}
    while len(kept) > cfg.max_keys:
        del kept[min(kept, key=lambda k: kept[k][-1])]
    return kept


def filter_actions(
    state: HazardState, actions: tuple[Action, ...], now: float, cfg: HazardCfg = DEFAULT_CFG
) -> tuple[HazardState, tuple[Action, ...]]:
    """Pass `actions` through `step`: duplicates dropped, recurring hazards escalated, order kept."""
    if not any(isinstance(a, HazardRecord) for a in actions):
        return state, actions
    out: list[Action] = []
    for a in actions:
        if isinstance(a, HazardRecord):
            state, h = step(state, a, now, cfg)
            if h is not None:
                out.append(h)
        else:
            out.append(a)
    return state, tuple(out)


def to_json(state: HazardState) -> dict[str, Any]:
    """A JSON-ready copy of the state (for a shell that keeps it across restarts)."""
    return {
        "last": [[*k, t] for k, t in state.last.items()],
        "recent": [[*k, list(ts)] for k, ts in state.recent.items()],
        "counts": [state.raised, state.suppressed, state.escalated],
    }


def from_json(doc: Mapping[str, Any], cfg: HazardCfg = DEFAULT_CFG) -> HazardState:
    """The state `to_json` wrote; raises ValueError on anything else. Re-bounded to `cfg`."""
    try:
        last = {(str(z), str(c), str(ti)): float(t) for z, c, ti, t in doc["last"]}
        recent = {(str(z), str(c)): tuple(float(x) for x in ts)[-cfg.recur_n :] for z, c, ts in doc["recent"]}
        raised, suppressed, escalated = (int(n) for n in doc["counts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"hazard state: not what to_json writes ({exc})") from exc
    if len(last) > cfg.max_keys:
        last = dict(sorted(last.items(), key=lambda kv: kv[1])[-cfg.max_keys :])
    if len(recent) > cfg.max_keys:
        recent = dict(sorted(recent.items(), key=lambda kv: kv[1][-1] if kv[1] else 0.0)[-cfg.max_keys :])
    return HazardState(MappingProxyType(last), MappingProxyType(recent), raised, suppressed, escalated)
