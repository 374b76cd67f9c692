"""Threshold profiles: the documented defaults, selectable per site, overridable per signal.

Sources (../shared/DOMAIN.md): the default profile follows OSHA/NIOSH/ACGIH figures; the GB
profile follows GB/T 50493-2019 and GB 30871-2022 as read from secondary sources and is
marked [verify] there: it is data to select, never hard-coded behaviour.
Deadbands not given by the sources are this project's choice and are marked so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from rules.values import Basis, Direction, Limit, Quantity, Severity

# Molar volume at 25 degC and 101.325 kPa (the conversion rule GB toxic limits assume).
MOLAR_VOLUME_L = 24.45
MOLECULAR_WEIGHT = {"h2s": 34.08, "co": 28.01}


class Profile(StrEnum):
    """The threshold profiles a site, or one signal, can select (`PROFILES`)."""

    OSHA = "osha"
    """OSHA/NIOSH/ACGIH figures: the default."""
    GB = "gb"
    """GB/T 50493-2019 and GB 30871-2022 (marked [verify] in DOMAIN.md)."""


DEFAULT_PROFILE = Profile.OSHA
"""The profile of a site that names none."""

UNITS: Mapping[str, tuple[str, ...]] = {
    Quantity.O2: ("%vol",),
    Quantity.LEL: ("%LEL",),
    Quantity.H2S: ("ppm", "mg/m3"),
    Quantity.CO: ("ppm", "mg/m3"),
    Quantity.TEMPERATURE: ("degC",),
    Quantity.VIBRATION: ("mm/s",),
    Quantity.CURRENT: ("mA",),
}
"""Units accepted per quantity (every `Quantity`); the first is the canonical unit profiles are written in."""


def ppm_to_mg_m3(quantity: str, ppm: float) -> float:
    """mg/m3 = ppm x M / 24.45 (25 degC, 1 atm)."""
    return ppm * MOLECULAR_WEIGHT[quantity] / MOLAR_VOLUME_L


def mg_m3_to_ppm(quantity: str, mg_m3: float) -> float:
    return mg_m3 * MOLAR_VOLUME_L / MOLECULAR_WEIGHT[quantity]


@dataclass(frozen=True, slots=True)
class QuantityProfile:
    unit: str
    """Unit the limits below are written in."""
    limits: tuple[Limit, ...]
    over_range: float | None = None
    """A reading above this is a detector fault (saturated), not a value."""
    hot_work_max: float | None = None
    hot_work_max_confined: float | None = None
    under_range: float | None = None
    """A reading below this is a detector fault (negative drift, a poisoned or mis-zeroed cell), not
    a value: heavy negative drift is how a sensor hides real gas. See UNDER_RANGE_NOTE."""


UNDER_RANGE_NOTE = (
    "NAMUR NE43 puts the lower end of a 4-20 mA measuring signal at 3.8 mA, -1.25 % of span; a "
    "transmitter below it signals its own fault. A Modbus or MQTT reading gets the same floor, "
    "rounded away from zero to a readable figure, over the common full-scale ranges: O2 0-25 %vol, "
    "LEL 0-100 %LEL, H2S 0-100 ppm, CO 0-500 ppm. Override per signal: thresholds.under_range."
)
"""Where the default lower plausibility limits come from (docs/domain.md cites this)."""


L, H = Direction.LOW, Direction.HIGH
W, A, E = Severity.WARNING, Severity.ALARM, Severity.EVACUATE

OSHA: Mapping[str, QuantityProfile] = {
    "o2": QuantityProfile(
        "%vol",
        (
            Limit("low", L, 19.5, 0.2, True, E),
            Limit("low_low", L, 18.0, 0.2, True, E),
            Limit("high", H, 23.5, 0.2, True, A),
        ),
        under_range=-0.5,
    ),
    "lel": QuantityProfile(
        "%LEL",
        (
            Limit("alarm1", H, 10.0, 2.0, True, A),  # deadband: project choice
            Limit("alarm2", H, 20.0, 2.0, True, E),
        ),
        over_range=100.0,
        hot_work_max=10.0,
        hot_work_max_confined=1.0,
        under_range=-2.0,
    ),
    "h2s": QuantityProfile(
        "ppm",
        (
            Limit("alarm1", H, 5.0, 1.0, False, A),
            Limit("alarm2", H, 10.0, 1.0, True, E),  # no separate evacuate level: alarm 2 evacuates
            Limit("stel", H, 5.0, 0.5, True, A, Basis.STEL),
            Limit("twa", H, 1.0, 0.1, True, A, Basis.TWA),
        ),
        under_range=-2.0,
    ),
    "co": QuantityProfile(
        "ppm",
        (
            Limit("alarm1", H, 25.0, 5.0, False, A),
            Limit("alarm2", H, 50.0, 5.0, True, A),
            Limit("evacuate", H, 200.0, 10.0, True, E),
        ),
        under_range=-10.0,
    ),
}

GB: Mapping[str, QuantityProfile] = {
    "o2": QuantityProfile(
        "%vol",
        (
            Limit("low", L, 19.5, 0.2, True, E),
            Limit("low_low", L, 18.0, 0.2, True, E),
            Limit("high", H, 23.5, 0.2, True, A),
        ),
        under_range=-0.5,
    ),
    "lel": QuantityProfile(
        "%LEL",
        (
            Limit("alarm1", H, 25.0, 2.0, True, A),
            Limit("alarm2", H, 50.0, 2.0, True, E),
        ),
        over_range=100.0,
        hot_work_max=10.0,
        hot_work_max_confined=1.0,
        under_range=-2.0,
    ),
    "h2s": QuantityProfile(
        "mg/m3",
        (
            Limit("alarm1", H, 10.0, 1.0, False, A),
            Limit("alarm2", H, 20.0, 1.0, True, E),
        ),
        under_range=round(-ppm_to_mg_m3("h2s", 2.0), 2),  # the OSHA floor of 2 ppm, in mg/m3
    ),
    "co": QuantityProfile(
        "mg/m3",
        (
            Limit("alarm1", H, 20.0, 5.0, False, A),
            Limit("alarm2", H, 40.0, 5.0, True, E),
        ),
        under_range=round(-ppm_to_mg_m3("co", 10.0), 2),  # the OSHA floor of 10 ppm, in mg/m3
    ),
}

PROFILES: Mapping[str, Mapping[str, QuantityProfile]] = {Profile.OSHA: OSHA, Profile.GB: GB}
"""Every `Profile`'s limits, by quantity."""


class ProfileError(ValueError):
    """A profile, unit or override that cannot be resolved; the message names what and why."""


def _convert(quantity: str, value: float, src: str, dst: str) -> float:
    if src == dst:
        return value
    if (src, dst) == ("ppm", "mg/m3"):
        return ppm_to_mg_m3(quantity, value)
    if (src, dst) == ("mg/m3", "ppm"):
        return mg_m3_to_ppm(quantity, value)
    raise ProfileError(f"cannot convert {quantity} from {src} to {dst}")


@dataclass(frozen=True, slots=True)
class Resolved:
    limits: tuple[Limit, ...]
    over_range: float | None
    hot_work_max: float | None
    under_range: float | None = None


def resolve(
    profile: str,
    quantity: str,
    unit: str,
    *,
    confined: bool = False,
    overrides: Mapping[str, float] | None = None,
) -> Resolved:
    """The limits of one signal in its own unit, with per-signal overrides applied and checked."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown threshold profile {profile!r}; use one of {sorted(p.value for p in Profile)}")
    if quantity in UNITS and unit not in UNITS[quantity]:
        raise ProfileError(f"unit {unit!r} is not valid for {quantity}; use one of {list(UNITS[quantity])}")
    qp = PROFILES[profile].get(quantity)
    overrides = dict(overrides or {})
    # NaN compares False both ways, so a NaN limit would pass _check_order and then never
    # trip (an alarm silently disabled by `alarm1 = nan` in TOML); infinities never trip either.
    non_finite = sorted(n for n, v in overrides.items() if not math.isfinite(v))
    if non_finite:
        raise ProfileError(f"threshold override(s) {non_finite} must be finite numbers for {quantity}")
    if qp is None:
        limits: tuple[Limit, ...] = ()
        if overrides:
            raise ProfileError(f"profile {profile!r} has no limits for {quantity!r} to override")
        return Resolved((), None, None)

    def conv(v: float) -> float:
        return _convert(quantity, v, qp.unit, unit)

    limits = tuple(replace(lim, value=conv(lim.value), deadband=conv(lim.deadband)) for lim in qp.limits)
    names = {lim.name for lim in limits}
    unknown = set(overrides) - names - {"hot_work_max", "under_range"}
    if unknown:
        raise ProfileError(f"unknown threshold name(s) {sorted(unknown)}; this signal has {sorted(names)}")
    limits = tuple(replace(lim, value=overrides[lim.name]) if lim.name in overrides else lim for lim in limits)
    _check_order(limits)
    hot = qp.hot_work_max_confined if confined else qp.hot_work_max
    hot_work_max = overrides.get("hot_work_max", conv(hot) if hot is not None else None)
    over = conv(qp.over_range) if qp.over_range is not None else None
    under = overrides.get("under_range", conv(qp.under_range) if qp.under_range is not None else None)
    if under is not None:
        lowest = min(limits, key=lambda lim: lim.value, default=None)
        if lowest is not None and under >= lowest.value:
            raise ProfileError(
                f"under_range={under:g} must be below every alarm level, and {lowest.name}={lowest.value:g} is not "
                "above it: a reading there would be a fault instead of an alarm"
            )
    return Resolved(limits, over, hot_work_max, under)


def _check_order(limits: tuple[Limit, ...]) -> None:
    """Instant HIGH levels must rise with severity, LOW levels fall, and LOW stay below HIGH."""
    inst = [lim for lim in limits if lim.basis is Basis.INSTANT]
    highs = [lim for lim in inst if lim.direction is Direction.HIGH]
    lows = [lim for lim in inst if lim.direction is Direction.LOW]
    for seq, rising in ((highs, True), (lows, False)):
        for a, b in itertools.pairwise(seq):
            if (a.value >= b.value) if rising else (a.value <= b.value):
                raise ProfileError(
                    f"thresholds out of order: {a.name}={a.value} must be {'below' if rising else 'above'} "
                    f"{b.name}={b.value}"
                )
    if highs and lows:
        # Name the offending pair, as for the checks above (the fix is to move one of them).
        lo = max(lows, key=lambda lim: lim.value)
        hi = min(highs, key=lambda lim: lim.value)
        if lo.value >= hi.value:
            raise ProfileError(
                f"thresholds out of order: low limit {lo.name}={lo.value} must be below high limit {hi.name}={hi.value}"
            )
