"""Per-signal alarm levels and faults (ALMA pattern), pure.

- A level trips at once when its limit is reached and clears only once the value is past
  the limit by its deadband.
- A latching level stays in alarm after the value returns until an authorized
  acknowledgement *given after the return*; an acknowledgement while still active is
  recorded but does not clear (the safe reading of "cleared only by an acknowledgement
  once back in range").
- BAD quality, over-range and staleness are a latched fault: never "safe", cleared by an
  acknowledgement once readings are GOOD and fresh again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rules.events import BadReason, Quality, Reading
from rules.exposure import Exposure
from rules.values import Basis, Limit, Severity, SignalCfg


@dataclass(frozen=True, slots=True)
class LevelState:
    active: bool = False
    """The condition holds now (with hysteresis)."""
    latched: bool = False
    """Tripped and not yet acknowledged after returning (latching levels only)."""
    since: float | None = None
    """Monotonic time the level last tripped."""


@dataclass(frozen=True, slots=True)
class FaultState:
    active: bool = False
    """The signal is BAD, stale or over-range now."""
    latched: bool = False
    """A fault happened and was not acknowledged since the signal recovered."""
    reason: str = ""
    since: float | None = None


_NO_LEVELS: Mapping[str, LevelState] = MappingProxyType({})
_INACTIVE = LevelState()


@dataclass(frozen=True, slots=True)
class SignalState:
    value: float = math.nan
    quality: Quality = Quality.BAD
    reason: str = "no_data"
    at: float | None = None
    """Monotonic time of the last reading (None: none yet)."""
    levels: Mapping[str, LevelState] = field(default_factory=lambda: _NO_LEVELS)
    fault: FaultState = FaultState()
    exposure: Exposure | None = None
    acked_by: str = ""
    acked_utc: str = ""

    def fresh(self, now: float, cfg: SignalCfg) -> bool:
        return self.at is not None and now - self.at <= cfg.stale_after_s

    def good(self, now: float, cfg: SignalCfg) -> bool:
        """GOOD, fresh and without an active or unacknowledged fault."""
        return self.quality is Quality.GOOD and self.fresh(now, cfg) and not self.fault.active

    def severity(self, cfg: SignalCfg) -> Severity:
        """Worst condition in force: active or latched levels, and faults (at least ALARM)."""
        worst = Severity.NORMAL
        by_name = {lim.name: lim for lim in cfg.limits}
        for name, ls in self.levels.items():
            if (ls.active or ls.latched) and name in by_name:
                worst = max(worst, by_name[name].severity)
        if self.fault.active or self.fault.latched:
            worst = max(worst, Severity.ALARM)
        return worst

    def summary(self, cfg: SignalCfg) -> dict[str, Any]:
        """JSON-ready alarm snapshot (published retained, shown on the status page)."""
        return {
            "severity": self.severity(cfg).name.lower(),
            "levels": {
                n: {"active": s.active, "latched": s.latched} for n, s in self.levels.items() if s.active or s.latched
            },
            "fault": (
                {"active": self.fault.active, "latched": self.fault.latched, "reason": self.fault.reason}
                if self.fault.active or self.fault.latched
                else None
            ),
            "acked_by": self.acked_by or None,
        }


def initial(cfg: SignalCfg) -> SignalState:
    has_avg = any(lim.basis is not Basis.INSTANT for lim in cfg.limits)
    return SignalState(exposure=Exposure() if has_avg else None)


def _value_of(limit: Limit, value: float, exposure: Exposure | None, now: float) -> float | None:
    if limit.basis is Basis.INSTANT:
        return value
    if exposure is None:
        return None
    return exposure.stel(now) if limit.basis is Basis.STEL else exposure.twa(now)


def _evaluate(st: SignalState, cfg: SignalCfg, now: float) -> SignalState:
    """Re-evaluate every level against the current value and averages (`st` itself when nothing moved)."""
    levels = st.levels
    copied = False
    for lim in cfg.limits:
        v = _value_of(lim, st.value, st.exposure, now)
        if v is None or math.isnan(v):
            continue
        old = levels.get(lim.name)
        ls = old if old is not None else _INACTIVE
        if not ls.active and lim.tripped(v):
            ls = LevelState(active=True, latched=lim.latching, since=now)
        elif ls.active and lim.cleared(v):
            ls = replace(ls, active=False)
        if ls is not old:
            if not copied:
                levels, copied = dict(levels), True
            levels[lim.name] = ls  # type: ignore[index]
    return replace(st, levels=MappingProxyType(levels)) if copied else st


def _set_fault(st: SignalState, reason: str, now: float) -> SignalState:
    if st.fault.active and st.fault.reason == reason:
        return st
    since = st.fault.since if st.fault.active else now
    return replace(st, fault=FaultState(active=True, latched=True, reason=reason, since=since))


def screen(ev: Reading, cfg: SignalCfg) -> Reading:
    """The reading as the rules take it: a GOOD value outside the signal's plausible range (above
    `over_range`, below `under_range`) is BAD with the reason and the raw value. Everything that
    reports a reading (page, MQTT, TSDB, Sparkplug) shows this verdict, never the raw quality."""
    if ev.quality is not Quality.GOOD:
        return ev
    if cfg.over_range is not None and ev.value > cfg.over_range:
        return Reading(ev.signal, math.nan, ev.at, Quality.BAD, f"{BadReason.OVER_RANGE}:{ev.value:g}")
    if cfg.under_range is not None and ev.value < cfg.under_range:
        return Reading(ev.signal, math.nan, ev.at, Quality.BAD, f"{BadReason.UNDER_RANGE}:{ev.value:g}")
    return ev


def on_reading(st: SignalState, ev: Reading, cfg: SignalCfg) -> SignalState:
    """Apply one reading of this signal."""
    ev = screen(ev, cfg)
    if ev.quality is Quality.GOOD and st.at is not None and ev.at < st.at:
        # A delayed sample (MQTT readings carry the device's own time) older than what we hold:
        # applying it would let stale data clear a newer alarm (non-latching levels) and rewind
        # the exposure integral. Drop it. BAD readings below still apply: a fault is never safe.
        return st
    if ev.quality is not Quality.GOOD:
        st = replace(st, quality=ev.quality, reason=ev.reason, at=ev.at)
        return _set_fault(st, ev.reason, ev.at)
    exposure = st.exposure
    if exposure is not None:
        # Hold the previous value until this reading, but never across a stale gap.
        exposure = exposure.add(ev.value, ev.at, max_gap=cfg.stale_after_s)
    fault = replace(st.fault, active=False) if st.fault.active else st.fault
    # One constructor call, not a chain of replace(): this runs for every reading (profiled).
    st = SignalState(
        value=ev.value,
        quality=Quality.GOOD,
        reason="",
        at=ev.at,
        levels=st.levels,
        fault=fault,
        exposure=exposure,
        acked_by=st.acked_by,
        acked_utc=st.acked_utc,
    )
    after = _evaluate(st, cfg, ev.at)
    if newly_tripped(st, after):
        # A new episode: the last acknowledgement belonged to the previous one.
        after = replace(after, acked_by="", acked_utc="")
    return after


def on_tick(st: SignalState, cfg: SignalCfg, now: float, started_at: float) -> SignalState:
    """Staleness: no reading within stale_after_s (or none since start) is a latched fault."""
    last = st.at if st.at is not None else started_at
    if now - last > cfg.stale_after_s:
        reason = BadReason.STALE.value if st.at is not None else f"{BadReason.STALE}:no_data_since_start"
        if not st.fault.active:
            return _set_fault(replace(st, quality=Quality.BAD, reason=reason), reason, now)
        return st
    if st.exposure is not None and st.quality is Quality.GOOD:
        # Averages move with time even when the value does not.
        return _evaluate(st, cfg, now)
    return st


def on_ack(st: SignalState, user: str, utc: str) -> SignalState:
    """Clear what is back in range; record who acknowledged."""
    levels = {n: (replace(ls, latched=False) if ls.latched and not ls.active else ls) for n, ls in st.levels.items()}
    fault = st.fault
    if fault.latched and not fault.active:
        fault = FaultState()
    return replace(st, levels=MappingProxyType(levels), fault=fault, acked_by=user, acked_utc=utc)


def alarm_changed(before: SignalState, after: SignalState, cfg: SignalCfg) -> bool:
    """Whether the alarm summary (what is published and shown) differs; cheap when levels,
    fault and acknowledgement are untouched, which is the case for almost every reading."""
    if before.levels is after.levels and before.fault == after.fault and before.acked_by == after.acked_by:
        return False
    return before.summary(cfg) != after.summary(cfg)


def newly_tripped(before: SignalState, after: SignalState) -> tuple[str, ...]:
    """Names of levels that tripped in this step (for hazard records)."""
    return tuple(n for n, ls in after.levels.items() if ls.active and not before.levels.get(n, LevelState()).active)
