"""Poll one Modbus device and emit typed events: Readings every poll, DeviceStatus on change.

Wiring: the daemon builds one `BusRegistry`, one `ModbusSource(spec, emit, clock, buses)`
per device, and runs `source.run()` as a task. `emit` is called synchronously with each
event (the daemon puts it on its inbox). Nothing here raises on a field fault: a failed
poll still emits one BAD Reading per point, so the engine sees the fault, not silence.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from typing import NoReturn

import structlog

from rules.events import BadReason, DeviceStatus, Event, Quality, Reading

from .bus import BusRegistry
from .codec import (
    BUMP_SIGNAL,
    CALIBRATION_SIGNAL,
    STATUS_SIGNAL,
    Block,
    DeviceHealth,
    decode,
    decode_status,
    plan_blocks,
    status_points,
)
from .errors import CodecError, TransportError
from .spec import DeviceSpec

log = structlog.get_logger("drivers.modbus.source")

_INTERNAL = (STATUS_SIGNAL, BUMP_SIGNAL, CALIBRATION_SIGNAL)


def backoff_delay(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Jittered exponential backoff: uniform in [d/2, d] with d = min(cap, base * 2^(failures-1))."""
    if failures <= 0:
        return 0.0
    d = min(cap_s, base_s * 2.0 ** min(failures - 1, 30))
    return rng.uniform(d / 2.0, d)


class ModbusSource:
    """Polls one device with block reads; turns every outcome into events."""

    def __init__(
        self,
        spec: DeviceSpec,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        buses: BusRegistry,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self._emit = emit
        self._clock = clock
        self._bus = buses.bus(spec)
        self._rng = rng or random.Random()
        pts = spec.points + (status_points(spec.status) if spec.status else ())
        self.blocks: tuple[Block, ...] = plan_blocks(pts, max_gap=spec.max_gap)
        """The reads one poll makes (for the status page and tests)."""
        self.up: bool | None = None
        """None until the first poll; then whether the device answered the last poll."""
        self.comm_errors = 0
        """Polls that failed on the wire (timeouts, CRC, exception codes, disconnects)."""
        self.polls = 0
        self.last_reason = ""
        """Reason of the last failed poll ("" while up)."""
        self.health: DeviceHealth | None = None
        """The last decoded status registers, if the device has them."""
        self.last_ok: float | None = None
        """Clock time of the last poll the device answered (None: never)."""
        self._connect_failures = 0
        self._log = log.bind(device=spec.id, bus=self._bus.key)

    async def run(self) -> NoReturn:
        """Poll forever at `poll_s`; after failed connects, wait a jittered exponential backoff."""
        next_at = self._clock()
        while True:
            await self.poll_once()
            next_at += self.spec.poll_s
            now = self._clock()
            wait = max(0.0, next_at - now)
            if self._connect_failures:
                wait = max(wait, backoff_delay(self._connect_failures, self.spec.poll_s, self.spec.backoff_cap_s,
                                               self._rng))
            if next_at < now - self.spec.poll_s:
                next_at = now  # fell behind (slow bus): do not burst to catch up
            await asyncio.sleep(wait)

    async def poll_once(self) -> tuple[Reading, ...]:
        """One poll: read every block, emit one Reading per point (and status changes); return the readings."""
        self.polls += 1
        raw: dict[str, Sequence[int]] = {}
        failure: TransportError | None = None
        for block in self.blocks:
            try:
                values = await self._bus.read(block.table, block.start, block.count, self.spec.unit_id,
                                              self.spec.timeout_s, self.spec.retries)
            except TransportError as exc:
                failure = exc
                break
            for p in block.points:
                raw[p.signal] = block.slice_for(p, values)
        at = self._clock()
        readings = self._readings(raw, failure, at)
        self._set_up(failure)
        for r in readings:
            self._emit(r)
        return readings

    def _readings(
        self, raw: dict[str, Sequence[int]], failure: TransportError | None, at: float
    ) -> tuple[Reading, ...]:
        spec = self.spec
        device_reason = ""
        if failure is not None:
            device_reason = failure.reason_text
        elif spec.status is not None:
            try:
                self.health = decode_status(spec.status, raw)
            except CodecError as exc:
                self.health, device_reason = None, exc.reason_text
            else:
                bad = self.health.bad_reason
                device_reason = bad.value if bad is not None else ""
        out: list[Reading] = []
        for p in spec.points:
            if p.signal not in raw:
                # a failed block, or any failure before the status word was read: nothing is trusted
                out.append(_bad(p.signal, at, device_reason or BadReason.DISCONNECTED.value))
                continue
            try:
                value = decode(p, raw[p.signal])
            except CodecError as exc:
                out.append(_bad(p.signal, at, exc.reason_text))
                continue
            if device_reason:
                out.append(_bad(p.signal, at, device_reason))
            else:
                out.append(Reading(p.signal, value, at))
        if spec.status is not None:
            out.extend(self._date_readings(at, device_reason if failure is not None else ""))
        return tuple(out)

    def _date_readings(self, at: float, failure_reason: str) -> list[Reading]:
        status = self.spec.status
        if status is None:
            return []
        pairs = ((status.bump_signal, self.health.bump_utc_s if self.health else None),
                 (status.calibration_signal, self.health.calibration_utc_s if self.health else None))
        out = []
        for signal, secs in pairs:
            if not signal:
                continue
            if failure_reason or self.health is None:
                out.append(_bad(signal, at, failure_reason or BadReason.BAD_PAYLOAD.value))
            elif secs is None:
                out.append(_bad(signal, at, f"{BadReason.BAD_PAYLOAD.value}:date never set"))
            else:
                out.append(Reading(signal, float(secs), at))
        return out

    def mark_down(self, reason: str) -> None:
        """The daemon's supervisor: this source failed and is being restarted, so its device is down
        (and says "up" again on its first good poll)."""
        if self.up is not False:
            self.up = False
            self.last_reason = reason
            self._emit(DeviceStatus(self.spec.id, up=False, reason=reason))

    def _set_up(self, failure: TransportError | None) -> None:
        if failure is None:
            self._connect_failures = 0
            self.last_reason = ""
            self.last_ok = self._clock()
            if self.up is not True:
                if self.up is False:
                    self._log.info("device_recovered")
                else:
                    self._log.info("device_up")
                self.up = True
                self._emit(DeviceStatus(self.spec.id, up=True))
            return
        self.comm_errors += 1
        self._connect_failures = self._connect_failures + 1 if failure.reason is BadReason.DISCONNECTED else 0
        reason = failure.reason_text
        if self.up is not False:
            self._log.warning("device_down", reason=reason, detail=failure.detail)
            self.up = False
            self.last_reason = reason
            self._emit(DeviceStatus(self.spec.id, up=False, reason=reason))
        elif reason != self.last_reason:
            self._log.info("device_fault_changed", reason=reason)  # still down, for another reason
            self.last_reason = reason


def _bad(signal: str, at: float, reason: str) -> Reading:
    return Reading(signal, math.nan, at, Quality.BAD, reason)
