"""What the pure rules need to know, as frozen dataclasses.

The shell (gateway/config/models.py) validates the TOML with pydantic and builds these; the
rules never see pydantic, files or defaults from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: these modules import rules.config themselves
    from rules.condition import MachineCfg
    from rules.confined import Roster
    from rules.interlock import HotWorkCfg
    from rules.presence import PresenceCfg

GAS_QUANTITIES = frozenset({"o2", "lel", "h2s", "co"})
"""The four gases of DOMAIN.md: their readings feed alarms, confined spaces and the hot-work interlock."""


class Direction(StrEnum):
    LOW = "low"
    """Trips when the value falls to the limit or below (O2 deficiency)."""
    HIGH = "high"
    """Trips when the value rises to the limit or above."""


class Severity(IntEnum):
    """What an active condition does. Ordered: a higher one includes the lower ones' effects."""

    NORMAL = 0
    WARNING = 1
    """Shown and recorded; drives no output."""
    ALARM = 2
    """Removes the zone's permissives (gas permissive, hot-work ignition)."""
    EVACUATE = 3
    """As ALARM, plus horn/beacon and the evacuation notice in a confined space."""


class Basis(StrEnum):
    INSTANT = "instant"
    STEL = "stel"
    """Rolling 15-minute time-weighted average."""
    TWA = "twa"
    """Rolling 8-hour time-weighted average."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One alarm level of one signal, in the signal's own unit."""

    name: str
    """e.g. "low", "low_low", "high", "alarm1", "alarm2", "evacuate", "stel", "twa"."""
    direction: Direction
    value: float
    deadband: float
    """Clears only once the value is past `value` by this much (hysteresis)."""
    latching: bool
    """A latching alarm stays until acknowledged after the value is back in range."""
    severity: Severity
    basis: Basis = Basis.INSTANT

    def __post_init__(self) -> None:
        if self.deadband < 0:
            raise ValueError(f"limit {self.name}: deadband must be >= 0, got {self.deadband}")

    def tripped(self, value: float) -> bool:
        """Trip at once when the limit is reached (no on-delay)."""
        return value <= self.value if self.direction is Direction.LOW else value >= self.value

    def cleared(self, value: float) -> bool:
        """Back in range by at least the deadband."""
        if self.direction is Direction.LOW:
            return value > self.value + self.deadband
        return value < self.value - self.deadband


class ZoneKind(StrEnum):
    CONFINED_SPACE = "confined_space"
    HOT_WORK = "hot_work"
    GENERAL = "general"


class OutputKind(StrEnum):
    GAS_PERMISSIVE = "gas_permissive"
    """Energized while the zone's gas is good and no alarm or fault is active."""
    IGNITION = "ignition"
    """Hot-work ignition release for the zone: energized only while the interlock holds."""
    HORN = "horn"
    """Audible: active while an evacuate-level condition is unsilenced in the zone."""
    BEACON = "beacon"
    """Visual: active while any alarm-level condition is active in the zone (never silenced)."""
    MACHINE_RUN = "machine_run"
    """Run permissive of a machine: de-energized to stop."""
    TROUBLE = "trouble"
    """Gateway healthy: energized only while the engine runs (it feeds the module's watchdog) and
    no output fault is latched; its de-energized contact lights a trouble lamp or buzzer when the
    gateway is dead, hung, starting, or its outputs cannot be trusted."""


@dataclass(frozen=True, slots=True)
class SignalCfg:
    id: str
    quantity: str
    """o2, lel, h2s, co, temperature, vibration, current ..."""
    unit: str
    zone: str
    device: str
    limits: tuple[Limit, ...] = ()
    stale_after_s: float = 5.0
    """3 x poll period, at most 5 s (DOMAIN.md)."""
    hot_work_max: float | None = None
    """The hot-work permissive limit (e.g. LEL < 10 %LEL, < 1 %LEL in a confined space)."""
    over_range: float | None = None
    """A reading above this is a detector fault (saturated), not a value."""
    under_range: float | None = None
    """A reading below this is a detector fault (negative drift hides real gas), not a value."""


@dataclass(frozen=True, slots=True)
class ZoneCfg:
    id: str
    kind: ZoneKind
    name: str = ""
    max_occupancy: int = 0
    """0: no limit configured."""


@dataclass(frozen=True, slots=True)
class OutputCfg:
    id: str
    kind: OutputKind
    zone: str
    safe: bool = False
    """The coil value written at start, on shutdown and on any fault."""
    active_energized: bool = True
    """Coil value when the function is active (a horn wired de-energize-to-sound sets False)."""

    def coil(self, active: bool) -> bool:
        return self.active_energized if active else not self.active_energized


def _frozen(d: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class EngineCfg:
    signals: Mapping[str, SignalCfg] = field(default_factory=_frozen)  # type: ignore[arg-type]
    zones: Mapping[str, ZoneCfg] = field(default_factory=_frozen)  # type: ignore[arg-type]
    outputs: Mapping[str, OutputCfg] = field(default_factory=_frozen)  # type: ignore[arg-type]
    silence_s: float = 60.0
    """Silence (mute) re-arms after this long (DOMAIN.md)."""
    presence: PresenceCfg | None = None
    """BLE presence tuning and receiver -> zone map; None: no presence configured."""
    badges: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]
    """Badge (canonical beacon id) -> person id."""
    rosters: Mapping[str, Roster] = field(default_factory=_frozen)  # type: ignore[arg-type]
    """Confined-space zone -> standing roster (used when no confined-space permit is active)."""
    entrances: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]
    """Confined-space zone -> the zone at its entrance where the attendant must be."""
    hot_work: HotWorkCfg | None = None
    """Interlock tuning; None: the documented defaults (rules/interlock.py)."""
    machines: Mapping[str, MachineCfg] = field(default_factory=_frozen)  # type: ignore[arg-type]
    """Condition-monitored machines by id (rules/condition.py via rules/machines.py)."""
    hazard_dedup_s: float = 300.0
    """The same hazard (zone, category, title) is reported once per this window."""
    hazard_recur_n: int = 3
    hazard_recur_days: float = 7.0
    """The same zone + category this many times within these days escalates (repeated-hazard rule)."""
    sensor_intervals: Mapping[str, tuple[float, float]] = field(default_factory=_frozen)  # type: ignore[arg-type]
    """Device -> (bump-test interval s, calibration interval s) for detectors that report their dates
    (DOMAIN.md: bump test every 24 h; calibration per device). Until dates are read, they count as overdue."""
    by_zone: Mapping[str, tuple[SignalCfg, ...]] = field(init=False, repr=False, compare=False)
    """Signals per zone, computed once (the engine asks for them on every step)."""
    eager: frozenset[str] = field(init=False, repr=False, compare=False)
    """Signals whose every reading takes a full step even inside a batch (`engine.step_readings`):
    gases (their values feed the hot-work interlock and confined spaces, not only their alarms)
    and the signals of monitored machines."""

    def __post_init__(self) -> None:
        zones: dict[str, list[SignalCfg]] = {z: [] for z in self.zones}
        for s in self.signals.values():
            zones.setdefault(s.zone, []).append(s)
        object.__setattr__(self, "by_zone", MappingProxyType({z: tuple(v) for z, v in zones.items()}))
        machine_signals = {sig for m in self.machines.values() for sig in (m.vibration_signal, m.temperature_signal)}
        eager = {sid for sid, s in self.signals.items() if s.quantity in GAS_QUANTITIES} | machine_signals
        object.__setattr__(self, "eager", frozenset(eager))
        for sid, s in self.signals.items():
            if s.zone not in self.zones:
                raise ValueError(f"signals.{sid}.zone: unknown zone {s.zone!r}")
        for oid, o in self.outputs.items():
            if o.zone not in self.zones:
                raise ValueError(f"outputs.{oid}.zone: unknown zone {o.zone!r}")
        for mid, m in self.machines.items():
            if m.zone not in self.zones:
                raise ValueError(f"machines.{mid}.zone: unknown zone {m.zone!r}")
            for sig in (m.vibration_signal, m.temperature_signal):
                if sig not in self.signals:
                    raise ValueError(f"machines.{mid}: unknown signal {sig!r}")
            out = self.outputs.get(m.stop_output) if m.stop_output is not None else None
            if m.stop_output is not None and (out is None or out.kind is not OutputKind.MACHINE_RUN):
                raise ValueError(f"machines.{mid}.stop_output: {m.stop_output!r} is not a machine_run output")

    def signals_in(self, zone: str) -> tuple[SignalCfg, ...]:
        return self.by_zone.get(zone, ())
