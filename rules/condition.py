"""Condition monitoring of one machine (vibration + winding temperature), pure.

`step(state, event, now, cfg) -> (state, actions)` takes the machine's vibration RMS readings
(mm/s, produced by the shell from `rules.vibration.analyze`) and its winding temperature
readings (degC), `Tick`s for staleness and `Ack`s for latched trips.

Conditions and their semantics (every threshold is `MachineCfg`):

| kind | cause | level | latching | hazard |
|---|---|---|---|---|
| vibration_alert | RMS >= ISO B/C (zone C or D) | alarm | no | mechanical |
| vibration_trip | RMS >= ISO C/D (zone D) | trip | yes | mechanical |
| baseline_change | RMS >= learned baseline x 1.25 | warning | no | mechanical |
| temperature_alarm | T >= alarm limit (class below) | alarm | no | electrical |
| temperature_trip | T >= insulation class limit | trip | yes | electrical |
| rate_of_rise | least-squares dT/dt over the window >= limit | alarm | no | electrical |
| motor_burnout_risk | vibration trending up AND T >= alarm limit | warning | no | electrical |
| sensor_fault | BAD, out of plausible range, or stale | fault | yes | by signal |

- A condition sets at once when its cause is reached and clears only past its deadband.
- A latching condition stays after its cause is gone until an `Ack` given *after* that;
  an `Ack` while the cause holds changes nothing (as in `rules.gas`).
- Missing data is never good: a BAD, implausible or stale input is a latched sensor fault,
  and while an input is not GOOD and fresh the conditions that depend on it hold their
  last state (neither set nor cleared on data we do not have).
- Machine stop (`MachineStop`) is demanded while a trip or (by default) a sensor fault is
  latched, and from start until both inputs have given a GOOD reading: the run permissive
  is de-energized in its safe state and only this rule releases it.

"Vibration trending up" (for motor_burnout_risk) is either: the least-squares slope of the
last `trend_count` RMS values against their times is > 0 with t = slope / stderr >=
`trend_t` (2.0: about 95 % one-sided for 10 points); or the last RMS >= baseline x
`burnout_baseline_ratio` (1.1) once a baseline is learned. Either alone suffices.

Insulation classes (IEC 60085 thermal classes): B 130, F 155, H 180 degC trip at the class;
alarm at the class below: F -> 130 (B), H -> 155 (F), and B -> 120 (class E, the class below
B in IEC 60085). Winding RTDs read hotter than the average-by-resistance of the rating, so
sites may override both limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from rules.actions import HazardRecord
from rules.events import Ack, Event, Quality, Reading, Tick
from rules.vibration import Baseline, BaselineCfg, IsoCfg, iso_zone


class Kind(StrEnum):
    """What a condition alert is about."""

    VIBRATION_ALERT = "vibration_alert"
    VIBRATION_TRIP = "vibration_trip"
    BASELINE_CHANGE = "baseline_change"
    TEMPERATURE_ALARM = "temperature_alarm"
    TEMPERATURE_TRIP = "temperature_trip"
    RATE_OF_RISE = "rate_of_rise"
    MOTOR_BURNOUT_RISK = "motor_burnout_risk"
    SENSOR_FAULT = "sensor_fault"


class Level(StrEnum):
    """How serious an alert is. Only TRIP (and FAULT, by default) stops the machine."""

    WARNING = "warning"
    ALARM = "alarm"
    TRIP = "trip"
    FAULT = "fault"


class Hazard(StrEnum):
    """Ledger hazard category (`rules.actions.HazardRecord.category`)."""

    MECHANICAL = "mechanical"
    ELECTRICAL = "electrical"


class InsulationClass(StrEnum):
    B = "B"
    F = "F"
    H = "H"


INSULATION_LIMITS_C: Mapping[InsulationClass, tuple[float, float]] = MappingProxyType(
    {
        InsulationClass.B: (120.0, 130.0),  # alarm at class E (the class below B)
        InsulationClass.F: (130.0, 155.0),
        InsulationClass.H: (155.0, 180.0),
    }
)
"""(alarm, trip) in degC per insulation class."""

_MAX_TEMP_POINTS = 1024
"""Hard cap on the rate-of-rise window (10 Hz x 100 s); keeps a step O(window)."""
_LATCHING = frozenset({Kind.VIBRATION_TRIP, Kind.TEMPERATURE_TRIP, Kind.SENSOR_FAULT})


class MachineCfgError(ValueError):
    """A machine configuration that cannot be right."""

    def __init__(self, machine: str, field: str, detail: str) -> None:
        self.machine = machine
        self.field = field
        self.detail = detail
        super().__init__(f"machines.{machine}.{field}: {detail}")


@dataclass(frozen=True, slots=True)
class MachineCfg:
    """One monitored machine."""

    id: str
    zone: str
    vibration_signal: str
    """Signal id of the vibration point: its readings are velocity RMS in mm/s."""
    temperature_signal: str
    """Signal id of the winding temperature: readings in degC."""
    iso: IsoCfg = IsoCfg()
    insulation: InsulationClass = InsulationClass.F
    rate_of_rise_k_per_min: float = 5.0
    """Rate-of-rise alarm limit; a site setting (5 K/min is a placeholder, not a standard)."""
    stop_output: str | None = None
    """Output id of the machine's run permissive (MACHINE_RUN), if one is wired."""
    baseline: BaselineCfg = BaselineCfg()
    temperature_alarm_c: float | None = None
    """Override of the alarm limit (None: from the insulation class)."""
    temperature_trip_c: float | None = None
    """Override of the trip limit (None: from the insulation class)."""
    temperature_range_c: tuple[float, float] = (-50.0, 250.0)
    """Plausible readings; outside is a sensor fault (broken RTD, open loop)."""
    temperature_deadband_k: float = 2.0
    vibration_deadband_mm_s: float = 0.1
    rate_window_s: float = 120.0
    """Readings within this window give the rate of rise; needs >= 3 spanning half of it."""
    rate_deadband_k_per_min: float = 0.5
    vibration_stale_s: float = 5.0
    temperature_stale_s: float = 5.0
    trend_count: int = 10
    """RMS values in the trend regression (motor_burnout_risk)."""
    trend_t: float = 2.0
    """Minimum t statistic of the slope for a significant upward trend."""
    burnout_baseline_ratio: float = 1.1
    fault_stops_machine: bool = True
    """A sensor fault is the worst case and stops the machine; False makes it alert only."""

    def __post_init__(self) -> None:
        def bad(name: str, detail: str) -> MachineCfgError:
            return MachineCfgError(self.id or "?", name, detail)

        if not (self.id and self.zone and self.vibration_signal and self.temperature_signal):
            raise bad("id", "id, zone, vibration_signal and temperature_signal must not be empty")
        if self.vibration_signal == self.temperature_signal:
            raise bad("temperature_signal", "must differ from vibration_signal")
        alarm, trip = self.temperature_limits
        if not alarm < trip:
            raise bad("temperature_alarm_c", f"alarm {alarm} must be below trip {trip}")
        lo, hi = self.temperature_range_c
        if not lo < alarm < trip < hi:
            raise bad("temperature_range_c", f"({lo}, {hi}) must enclose alarm {alarm} and trip {trip}")
        for name in ("rate_of_rise_k_per_min", "rate_window_s", "vibration_stale_s", "temperature_stale_s"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        for name in ("temperature_deadband_k", "vibration_deadband_mm_s", "rate_deadband_k_per_min"):
            if not getattr(self, name) >= 0:
                raise bad(name, "must be >= 0")
        if self.trend_count < 3:
            raise bad("trend_count", f"need >= 3 values for a slope and its error, got {self.trend_count}")
        if not self.burnout_baseline_ratio > 1.0:
            raise bad("burnout_baseline_ratio", "must be > 1")

    @property
    def temperature_limits(self) -> tuple[float, float]:
        """(alarm, trip) in degC, overrides applied."""
        alarm, trip = INSULATION_LIMITS_C[self.insulation]
        return (
            alarm if self.temperature_alarm_c is None else self.temperature_alarm_c,
            trip if self.temperature_trip_c is None else self.temperature_trip_c,
        )


_EMPTY: Mapping[str, float | str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ConditionAlert:
    """A condition of a machine set (active=True) or cleared (active=False)."""

    machine: str
    zone: str
    kind: Kind
    signal: str
    """The signal it is about (the machine id for motor_burnout_risk)."""
    level: Level
    hazard: Hazard
    active: bool
    evidence: Mapping[str, float | str] = field(default_factory=lambda: _EMPTY, hash=False)
    """Values that set or cleared it, JSON-ready."""


@dataclass(frozen=True, slots=True)
class MachineStop:
    """Assert (stop=True) or release the machine's stop; drive `output` if configured."""

    machine: str
    stop: bool
    reason: str
    output: str | None = None


@dataclass(frozen=True, slots=True)
class BaselineLearned:
    """A baseline was learned: persist `baseline.to_dict()` for the next start."""

    machine: str
    baseline: Baseline


ConditionAction = ConditionAlert | MachineStop | BaselineLearned


@dataclass(frozen=True, slots=True)
class Input:
    """The last known state of one input signal."""

    value: float = math.nan
    good: bool = False
    """The last reading was GOOD and plausible."""
    reason: str = ""
    """Why it is not GOOD (a BAD reading's reason); empty when GOOD or before any reading."""
    at: float | None = None
    """Monotonic time of the last GOOD reading (None: none yet)."""

    def ok(self, now: float, stale_s: float) -> bool:
        """GOOD and fresh: the only state in which the value may be used."""
        return self.good and self.at is not None and now - self.at <= stale_s


AlertKey = tuple[Kind, str]


@dataclass(frozen=True, slots=True)
class MachineState:
    """Everything the rule remembers about one machine; build with `initial_state`."""

    started: float
    """Monotonic time the rule started: inputs get one stale period to report."""
    vibration: Input = Input()
    temperature: Input = Input()
    vib_history: tuple[tuple[float, float], ...] = ()
    """(at, RMS) of the last `trend_count` good vibration readings."""
    temp_history: tuple[tuple[float, float], ...] = ()
    """(at, degC) of good temperature readings within the rate window."""
    baseline: Baseline = Baseline()
    active: frozenset[AlertKey] = frozenset()
    """Conditions set and not yet cleared (latched ones included)."""
    stopped: bool = True
    """Machine stop demanded (the run permissive's safe state until proven otherwise)."""


def initial_state(now: float, baseline: Baseline | None = None) -> MachineState:
    """A fresh machine at `now`, with a restored baseline if one was persisted."""
    return MachineState(started=now, baseline=baseline or Baseline())


def step(s: MachineState, ev: Event, now: float, cfg: MachineCfg) -> tuple[MachineState, tuple[ConditionAction, ...]]:
    """Advance one machine by one event; events that are not its own change nothing."""
    extra: tuple[ConditionAction, ...] = ()
    acks: frozenset[str] = frozenset()
    match ev:
        case Reading(signal=sig) if sig == cfg.vibration_signal:
            s, extra = _on_vibration(s, ev, cfg)
        case Reading(signal=sig) if sig == cfg.temperature_signal:
            s = _on_temperature(s, ev, cfg)
        case Tick():
            pass
        case Ack() if acks := _ack_scope(ev, cfg):
            pass
        case _:
            return s, ()
    s, actions = _evaluate(s, now, cfg, acks)
    return s, extra + actions


def step_many(
    states: Mapping[str, MachineState], ev: Event, now: float, cfgs: Mapping[str, MachineCfg]
) -> tuple[dict[str, MachineState], tuple[ConditionAction, ...]]:
    """`step` every configured machine (by id) with one event."""
    out: dict[str, MachineState] = {}
    actions: list[ConditionAction] = []
    for mid, cfg in cfgs.items():
        st = states.get(mid) or initial_state(now)
        out[mid], acts = step(st, ev, now, cfg)
        actions.extend(acts)
    return out, tuple(actions)


def hazard_record(alert: ConditionAlert) -> HazardRecord:
    """The ledger hazard for an alert being set (trips and faults are "major")."""
    return HazardRecord(
        zone=alert.zone,
        category=alert.hazard.value,
        level="major" if alert.level in (Level.TRIP, Level.FAULT) else "general",
        title=f"{alert.machine}: {alert.kind.value}",
        evidence={"signal": alert.signal, "level": alert.level.value, **alert.evidence},
    )


# --- inputs ---------------------------------------------------------------------------


def _bad(inp: Input, reason: str) -> Input:
    return replace(inp, value=math.nan, good=False, reason=reason)


def _on_vibration(s: MachineState, ev: Reading, cfg: MachineCfg) -> tuple[MachineState, tuple[ConditionAction, ...]]:
    if ev.quality is not Quality.GOOD:
        return replace(s, vibration=_bad(s.vibration, ev.reason)), ()
    if ev.value < 0.0:
        return replace(s, vibration=_bad(s.vibration, f"under_range:{ev.value} mm/s")), ()
    if s.vibration.at is not None and ev.at < s.vibration.at:
        return s, ()  # older than what we know: a late duplicate, not news
    hist = (*s.vib_history, (ev.at, ev.value))[-cfg.trend_count :]
    baseline = s.baseline
    if iso_zone(ev.value, cfg.iso) in ("A", "B"):
        baseline = baseline.feed(ev.value, cfg.baseline)  # learn only from a healthy machine
    learned: tuple[ConditionAction, ...] = ()
    if baseline.value is not None and s.baseline.value is None:
        learned = (BaselineLearned(cfg.id, baseline),)
    s = replace(s, vibration=Input(ev.value, True, "", ev.at), vib_history=hist, baseline=baseline)
    return s, learned


def _on_temperature(s: MachineState, ev: Reading, cfg: MachineCfg) -> MachineState:
    if ev.quality is not Quality.GOOD:
        return replace(s, temperature=_bad(s.temperature, ev.reason))
    lo, hi = cfg.temperature_range_c
    if not lo <= ev.value <= hi:
        why = "under_range" if ev.value < lo else "over_range"
        return replace(s, temperature=_bad(s.temperature, f"{why}:{ev.value} degC"))
    if s.temperature.at is not None and ev.at < s.temperature.at:
        return s
    # Bounded by time and, against a runaway sender, by count.
    kept = tuple(p for p in s.temp_history if p[0] >= ev.at - cfg.rate_window_s)
    hist = (*kept[-(_MAX_TEMP_POINTS - 1) :], (ev.at, ev.value))
    return replace(s, temperature=Input(ev.value, True, "", ev.at), temp_history=hist)


def _ack_scope(ev: Ack, cfg: MachineCfg) -> frozenset[str]:
    """Signals whose latches this Ack may clear (empty: not for this machine)."""
    both = frozenset({cfg.vibration_signal, cfg.temperature_signal})
    if ev.target == cfg.id or (ev.target == "*" and ev.zone == cfg.zone):
        return both
    return frozenset({ev.target}) & both


# --- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cause:
    key: AlertKey
    present: bool | None
    """True: cause reached; False: gone past the deadband; None: unknown or in the deadband."""
    level: Level
    hazard: Hazard
    evidence: Mapping[str, float | str]


def _band(value: float, limit: float, deadband: float) -> bool | None:
    """Hysteresis: set at the limit, clear below limit - deadband, hold between."""
    if value >= limit:
        return True
    return False if value < limit - deadband else None


def _fault(inp: Input, now: float, started: float, stale_s: float) -> tuple[bool | None, str]:
    if not inp.good and inp.reason:
        return True, inp.reason
    if inp.at is None:
        return (True, "stale:no_data") if now - started > stale_s else (None, "")
    if now - inp.at > stale_s:
        return True, f"stale:{now - inp.at:.1f} s"
    return False, ""


def slope(points: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """Least-squares slope (per x unit) of (x, y) points and its t statistic (slope / stderr).

    t is 0.0 with fewer than 3 points or no spread in x, and +-inf for an exact line.
    """
    n = len(points)
    if n < 2:
        return 0.0, 0.0
    mx = math.fsum(p[0] for p in points) / n
    my = math.fsum(p[1] for p in points) / n
    sxx = math.fsum((p[0] - mx) ** 2 for p in points)
    if sxx <= 0.0:
        return 0.0, 0.0
    b = math.fsum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    if n < 3:
        return b, 0.0
    ssr = math.fsum((p[1] - my - b * (p[0] - mx)) ** 2 for p in points)
    se = math.sqrt(ssr / (n - 2) / sxx)
    if se > 0.0:
        return b, b / se
    return b, (math.copysign(math.inf, b) if b != 0.0 else 0.0)


def _causes(s: MachineState, now: float, cfg: MachineCfg) -> tuple[_Cause, ...]:
    mech, elec = Hazard.MECHANICAL, Hazard.ELECTRICAL
    vs, ts = cfg.vibration_signal, cfg.temperature_signal
    vib_ok = s.vibration.ok(now, cfg.vibration_stale_s)
    temp_ok = s.temperature.ok(now, cfg.temperature_stale_s)
    v, t = s.vibration.value, s.temperature.value
    _, bc, cd = cfg.iso.boundaries
    alarm_c, trip_c = cfg.temperature_limits
    vdb, tdb = cfg.vibration_deadband_mm_s, cfg.temperature_deadband_k
    zone = iso_zone(v, cfg.iso) if vib_ok else ""
    out: list[_Cause] = []

    def add(kind: Kind, sig: str, present: bool | None, level: Level, hz: Hazard, **ev: float | str) -> None:
        out.append(_Cause((kind, sig), present, level, hz, MappingProxyType(ev)))

    for sig, inp, stale_s, hz in (
        (vs, s.vibration, cfg.vibration_stale_s, mech),
        (ts, s.temperature, cfg.temperature_stale_s, elec),
    ):
        present, reason = _fault(inp, now, s.started, stale_s)
        add(Kind.SENSOR_FAULT, sig, present, Level.FAULT, hz, reason=reason)

    vib = {"rms_mm_s": v, "iso_zone": zone}
    add(Kind.VIBRATION_ALERT, vs, _band(v, bc, vdb) if vib_ok else None, Level.ALARM, mech, **vib, limit_mm_s=bc)
    add(Kind.VIBRATION_TRIP, vs, _band(v, cd, vdb) if vib_ok else None, Level.TRIP, mech, **vib, limit_mm_s=cd)
    base = s.baseline.value
    change: bool | None = None
    if vib_ok:
        change = False if base is None else _band(v, base * cfg.baseline.change_ratio, vdb)
    add(
        Kind.BASELINE_CHANGE,
        vs,
        change,
        Level.WARNING,
        mech,
        **vib,
        baseline_mm_s=base if base is not None else "learning",
        limit_mm_s=base * cfg.baseline.change_ratio if base is not None else "learning",
    )

    add(
        Kind.TEMPERATURE_ALARM,
        ts,
        _band(t, alarm_c, tdb) if temp_ok else None,
        Level.ALARM,
        elec,
        temperature_c=t,
        limit_c=alarm_c,
    )
    add(
        Kind.TEMPERATURE_TRIP,
        ts,
        _band(t, trip_c, tdb) if temp_ok else None,
        Level.TRIP,
        elec,
        temperature_c=t,
        limit_c=trip_c,
    )

    hist = s.temp_history
    rate = slope(hist)[0] * 60.0
    enough = len(hist) >= 3 and hist[-1][0] - hist[0][0] >= cfg.rate_window_s / 2.0
    ror = _band(rate, cfg.rate_of_rise_k_per_min, cfg.rate_deadband_k_per_min) if temp_ok and enough else None
    add(
        Kind.RATE_OF_RISE,
        ts,
        ror,
        Level.ALARM,
        elec,
        rate_k_per_min=rate,
        limit_k_per_min=cfg.rate_of_rise_k_per_min,
        window_s=cfg.rate_window_s,
        points=len(hist),
    )

    vslope, tstat = slope(s.vib_history)
    by_slope = len(s.vib_history) >= cfg.trend_count and vslope > 0.0 and tstat >= cfg.trend_t
    by_base = base is not None and vib_ok and v >= base * cfg.burnout_baseline_ratio
    rising = by_slope or by_base
    burn: bool | None = None
    if vib_ok and temp_ok:
        hot = _band(t, alarm_c, tdb)
        burn = True if rising and hot else (False if not rising or hot is False else None)
    add(
        Kind.MOTOR_BURNOUT_RISK,
        cfg.id,
        burn,
        Level.WARNING,
        elec,
        rms_mm_s=v,
        temperature_c=t,
        temperature_alarm_c=alarm_c,
        slope_mm_s_per_min=vslope * 60.0,
        slope_t=min(tstat, 1e9) if tstat > 0 else max(tstat, -1e9),
        trend="slope" if by_slope else ("baseline" if by_base else "none"),
        baseline_mm_s=base if base is not None else "learning",
    )
    return tuple(out)


def _evaluate(
    s: MachineState, now: float, cfg: MachineCfg, acks: frozenset[str]
) -> tuple[MachineState, tuple[ConditionAction, ...]]:
    active = set(s.active)
    actions: list[ConditionAction] = []
    for c in _causes(s, now, cfg):
        kind, sig = c.key
        on = c.key in active
        if c.present is True and not on:
            active.add(c.key)
        elif c.present is False and on and (kind not in _LATCHING or sig in acks):
            active.discard(c.key)
        else:
            continue
        actions.append(ConditionAlert(cfg.id, cfg.zone, kind, sig, c.level, c.hazard, not on, c.evidence))
    stops = {Kind.VIBRATION_TRIP, Kind.TEMPERATURE_TRIP}
    if cfg.fault_stops_machine:
        stops.add(Kind.SENSOR_FAULT)
    reasons = sorted({f"{k.value}:{sig}" for k, sig in active if k in stops})
    if s.vibration.at is None or s.temperature.at is None:
        reasons.append("no_data")
    stop = bool(reasons)
    if stop != s.stopped:
        actions.append(MachineStop(cfg.id, stop, ",".join(reasons) or "condition_ok", cfg.stop_output))
    return replace(s, active=frozenset(active), stopped=stop), tuple(actions)
