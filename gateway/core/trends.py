"""Minute trends of temperature and vibration points (24 h) and the status page's "condition" view.

`TrendStore.on_reading(ev)` folds every GOOD reading of a configured point into its
minute (`rules.trend.Trends`: fixed memory, 1440 slots per point). Minutes are *UTC epoch*
minutes, so a chart lines up with the wall clock: the reading's monotonic time is turned
into UTC with the offset the clock gives now (a wall-clock step moves later minutes only;
no decision depends on these charts).

`series(point)` is the JSON for one chart: minutes oldest first, plus the ISO zone
boundaries of a vibration point or the alarm/trip limits of a winding temperature.
`condition_json(...)` is the snapshot's ``"condition"`` section (``{"machines": [...]}``),
as gateway/status/static/zones.js `machinesPanel` reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.core.clock import Clock
from rules.condition import MachineCfg
from rules.events import Quality, Reading
from rules.machines import MachinesState, machine_json
from rules.trend import Trends, minute_of
from rules.vibration import IsoCfg, iso_zone

if TYPE_CHECKING:
    from gateway.core.vibration import VibrationPipeline


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One charted point."""

    quantity: str
    """"vibration" or "temperature" (any quantity works; these are the ones configured)."""
    unit: str
    iso: IsoCfg | None = None
    """Vibration: ISO 10816-3 zone boundaries drawn on the chart."""
    limits: Mapping[str, float] = field(default_factory=dict)
    """Temperature: {"alarm_c": .., "trip_c": ..} drawn on the chart."""


def trend_points(machines: Mapping[str, MachineCfg], units: Mapping[str, str] | None = None) -> dict[str, TrendPoint]:
    """The charted points of every machine: its vibration and its winding temperature signal."""
    units = units or {}
    out: dict[str, TrendPoint] = {}
    for m in machines.values():
        out[m.vibration_signal] = TrendPoint("vibration", units.get(m.vibration_signal, "mm/s"), iso=m.iso)
        alarm, trip = m.temperature_limits
        out[m.temperature_signal] = TrendPoint(
            "temperature", units.get(m.temperature_signal, "degC"), limits={"alarm_c": alarm, "trip_c": trip}
        )
    return out


class TrendStore:
    """24 h of minute aggregates per configured point (event-loop thread only)."""

    def __init__(self, points: Mapping[str, TrendPoint], clock: Clock) -> None:
        self.points: Mapping[str, TrendPoint] = dict(points)
        self._clock = clock
        self._trends = Trends(self.points)
        self.added = 0
        """Values folded in."""

    def _utc_offset(self) -> float:
        return self._clock.utc().timestamp() - self._clock.monotonic()

    def on_reading(self, ev: Reading) -> bool:
        """Fold a GOOD reading of a configured point; False (ignored) for anything else."""
        if ev.quality is not Quality.GOOD or ev.signal not in self.points:
            return False
        ok = self._trends.add(ev.signal, ev.value, minute_of(ev.at + self._utc_offset()))
        self.added += ok
        return ok

    def series(self, point: str) -> dict[str, Any]:
        """One chart: {"point", "quantity", "unit", "minutes": [{minute_utc, min, max, mean, count}], ...}.

        The window ends at the current minute, so a point that stopped reporting shows its
        gap instead of its last hour as "now". KeyError names an unknown point.
        """
        tp = self.points.get(point)
        if tp is None:
            raise KeyError(f"trends: unknown point {point!r}; configured: {sorted(self.points)}")
        now_min = minute_of(self._clock.utc().timestamp())
        body: dict[str, Any] = {
            "point": point,
            "quantity": tp.quantity,
            "unit": tp.unit,
            "minutes": [
                {
                    "minute_utc": _minute_iso(p.minute),
                    "min": _r(p.min),
                    "max": _r(p.max),
                    "mean": _r(p.mean),
                    "count": p.count,
                }
                for p in self._trends.series(point, until=now_min)
            ],
        }
        if tp.iso is not None:
            ab, bc, cd = tp.iso.boundaries
            body["iso"] = {"ab": ab, "bc": bc, "cd": cd, "group": tp.iso.group, "foundation": tp.iso.foundation}
        if tp.limits:
            body["limits"] = dict(tp.limits)
        return body

    def last(self, point: str) -> dict[str, Any] | None:
        """The newest minute of a point (or None), for a compact summary."""
        s = self.series(point)["minutes"]
        return s[-1] if s else None


def _minute_iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _r(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 4)


def condition_json(
    ms: MachinesState,
    machines: Mapping[str, MachineCfg],
    now: float,
    vibration: VibrationPipeline | None = None,
    trends: TrendStore | None = None,
) -> dict[str, Any]:
    """The snapshot's "condition" section: {"machines": [...]} (zones.js machinesPanel).

    Per machine: scalars the page lists ("level" as the tag; "stopped", "rms_mm_s",
    "iso_zone", "temperature_c", "baseline_mm_s", "crest_factor", "peak_hz"), and objects
    the page's list skips ("conditions", "signals", "analysis", "trend": chart URLs).
    Analysis extras are shown only while the machine's RMS is fresh.
    """
    out: list[dict[str, Any]] = []
    vib_status = vibration.status(now) if vibration is not None else {}
    for mid, cfg in machines.items():
        m = machine_json(ms, mid, now, cfg)
        rms = m.get("rms_mm_s")
        m["iso_zone"] = None
        a = vib_status.get(cfg.vibration_signal)
        if isinstance(rms, float):
            m["iso_zone"] = iso_zone(rms, cfg.iso)
            if a is not None and "crest_factor" in a:
                m["crest_factor"] = a["crest_factor"]
                m["peak_hz"] = a["peaks"][0]["frequency_hz"] if a["peaks"] else None
        if a is not None:
            m["analysis"] = a
        if trends is not None:
            m["trend"] = {
                kind: f"/api/trends/{sig}"
                for kind, sig in (("vibration", cfg.vibration_signal), ("temperature", cfg.temperature_signal))
                if sig in trends.points
            }
        out.append(m)
    return {"machines": out}
