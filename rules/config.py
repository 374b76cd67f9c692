"""What the pure rules need to know, as frozen dataclasses: `EngineCfg`, the whole engine's
configuration, with each rule's own Cfg in it.

The shell (gateway/config/) validates the TOML with pydantic, checks every reference between
sections once (gateway/config/loader.py), and builds these; the rules never see pydantic, files
or defaults from the environment. The shared value types live in rules/values.py, a leaf every
rule may import; they are re-exported here so that `from rules.config import SignalCfg` works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rules.condition import MachineCfg
from rules.confined import Roster
from rules.hazards import DEFAULT_CFG as HAZARD_DEFAULTS
from rules.interlock import HotWorkCfg
from rules.presence import PresenceCfg
from rules.values import (
    GAS_QUANTITIES,
    STALE_AFTER_MAX_S,
    Basis,
    Direction,
    Limit,
    OutputCfg,
    OutputKind,
    Quantity,
    Severity,
    SignalCfg,
    ZoneCfg,
    ZoneKind,
)

__all__ = [
    "GAS_QUANTITIES",
    "STALE_AFTER_MAX_S",
    "Basis",
    "Direction",
    "EngineCfg",
    "Limit",
    "OutputCfg",
    "OutputKind",
    "Quantity",
    "Severity",
    "SignalCfg",
    "ZoneCfg",
    "ZoneKind",
]


def _frozen(d: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class EngineCfg:
    """The whole engine's configuration. Its references (a signal's or an output's zone, a machine's
    signals and stop output) are consistent: the loader checks them once, with every problem's place
    (gateway/config/loader.py `_references`), before it builds this; they are not checked again here."""

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
    hazard_dedup_s: float = HAZARD_DEFAULTS.dedup_s
    """The same hazard (zone, category, title) is reported once per this window."""
    hazard_recur_n: int = HAZARD_DEFAULTS.recur_n
    hazard_recur_days: float = HAZARD_DEFAULTS.recur_days
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

    def signals_in(self, zone: str) -> tuple[SignalCfg, ...]:
        return self.by_zone.get(zone, ())
