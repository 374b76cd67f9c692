"""The small value types every rule shares: severities, limits, zone and output kinds, and the
per-signal, per-zone and per-output settings.

A leaf of rules/: it imports no other rules module, so any rule may import it. The whole
configuration of the engine (`EngineCfg`, which also holds each rule's own Cfg) is in
rules/config.py, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Quantity(StrEnum):
    """What a signal measures. The gases feed alarms, confined spaces and the hot-work interlock."""

    O2 = "o2"
    LEL = "lel"
    H2S = "h2s"
    CO = "co"
    TEMPERATURE = "temperature"
    VIBRATION = "vibration"
    CURRENT = "current"


GAS_QUANTITIES = frozenset({Quantity.O2, Quantity.LEL, Quantity.H2S, Quantity.CO})
"""The four gases of DOMAIN.md: their readings feed alarms, confined spaces and the hot-work interlock."""

STALE_AFTER_MAX_S = 5.0
"""A signal is stale after 3 x its poll period, at most this (DOMAIN.md)."""


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
    """A `Quantity` value: o2, lel, h2s, co, temperature, vibration, current."""
    unit: str
    zone: str
    device: str
    limits: tuple[Limit, ...] = ()
    stale_after_s: float = STALE_AFTER_MAX_S
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
