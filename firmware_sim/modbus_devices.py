"""Simulated Modbus field devices: a gas detector, a 4-20 mA temperature transmitter, a relay module.

Each speaks real Modbus TCP (127.0.0.1, port 0: read `.port` after start) or RTU (a serial
path, e.g. one end of a socat pty pair) and carries the fault knobs of `ModbusSim`.
Usable as `async with GasDetectorSim() as gas: ...`.

GasDetectorSim register map (holding registers, 0-based protocol addresses)
----------------------------------------------------------------------------
====  ===========================  ============================================
addr  content                      encoding
====  ===========================  ============================================
0     status word                  bit0 warm-up, bit1 fault, bit2 over-range
1     O2                           int16, %vol x 10
2     LEL                          int16, %LEL x 10
3     H2S                          int16, ppm x 10
4     CO                           int16, ppm x 10
5-6   O2                           float32 %vol, big-endian (ABCD: high word first)
7-9   (unused, reads 0)            a hole: tests block merging with max_gap
10-11 last bump test               uint32 unix seconds (UTC), high word first
12-13 last calibration             uint32 unix seconds (UTC), high word first
====  ===========================  ============================================

TemperatureTransmitterSim (input registers)
-------------------------------------------
Channel n at address n: loop current as uint16 mA x 1000 (4.000 mA = 4000). The
engineering range of channel n is `ranges[n]` (value at 4 mA, value at 20 mA).

RelayModuleSim
--------------
Coils 0..n-1 drive the relays; discrete inputs 0..n-1 report the contacts (they mirror
the coils unless a contact is welded: `weld(i, True)`). Holding registers:

====  ==================  ====================================================
addr  content             behaviour
====  ==================  ====================================================
0     host heartbeat      any write refreshes the watchdog (and arms it)
1     watchdog timeout    ms, default 1000; 0 disables the watchdog
2     clear               writing non-zero releases a trip (reads back 0)
3     module status       bit0: watchdog tripped
====  ==================  ====================================================

The watchdog arms on the first heartbeat write (outputs are off at power-up anyway).
When no heartbeat arrives within the timeout, every coil drops to 0 and is HELD off:
coil writes are still acknowledged (FC05 echoes the request, as real modules do) but
the coil stays 0, so only a read-back shows the truth, until the clear register is
written. `changes` logs every coil transition with its monotonic time.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass
from typing import Any, cast

from pymodbus.constants import ExcCodes

from .modbus_sim import ModbusSim, bits_block, no_regs, regs_block

GAS_SCALE = 10.0
"""Integer gas registers hold value x 10."""
_GAS_REG = {"o2": 1, "lel": 2, "h2s": 3, "co": 4}
O2_FLOAT_ADDR = 5
BUMP_ADDR = 10
CAL_ADDR = 12
STATUS_WARM_UP, STATUS_FAULT, STATUS_OVER_RANGE = 0x1, 0x2, 0x4


def _int16(value: float) -> int:
    raw = round(value * GAS_SCALE)
    if not -32768 <= raw <= 32767:
        raise ValueError(f"{value} x {GAS_SCALE} does not fit int16")
    return raw & 0xFFFF


class GasDetectorSim(ModbusSim):
    """A four-gas detector (O2, LEL, H2S, CO) with status and bump/calibration dates."""

    def __init__(self, *, bump_utc_s: int = 1_700_000_000, calibration_utc_s: int = 1_690_000_000,
                 **kw: Any) -> None:
        super().__init__((bits_block(1), bits_block(1), regs_block(14), no_regs()), **kw)
        for name, value in (("o2", 20.9), ("lel", 0.0), ("h2s", 0.0), ("co", 0.0)):
            self._apply_value(name, value)
        self.set_dates(bump_utc_s, calibration_utc_s)

    def _apply_value(self, name: str, value: float) -> None:
        if name not in _GAS_REG:
            raise KeyError(f"GasDetectorSim has no value {name!r}: use one of {sorted(_GAS_REG)}")
        self.set_reg("holding", _GAS_REG[name], _int16(value))
        if name == "o2":
            self.set_o2_float(value)

    def set_o2_float(self, value: float) -> None:
        """Only the float32 copy of O2 (NaN and inf allowed: tests of corrupt data)."""
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        self.set_reg("holding", O2_FLOAT_ADDR, hi)
        self.set_reg("holding", O2_FLOAT_ADDR + 1, lo)

    def set_status(self, *, warm_up: bool = False, fault: bool = False, over_range: bool = False) -> None:
        word = (STATUS_WARM_UP if warm_up else 0) | (STATUS_FAULT if fault else 0) | (
            STATUS_OVER_RANGE if over_range else 0)
        self.set_reg("holding", 0, word)

    def set_dates(self, bump_utc_s: int, calibration_utc_s: int) -> None:
        for addr, secs in ((BUMP_ADDR, bump_utc_s), (CAL_ADDR, calibration_utc_s)):
            self.set_reg("holding", addr, secs >> 16)
            self.set_reg("holding", addr + 1, secs & 0xFFFF)


class TemperatureTransmitterSim(ModbusSim):
    """4-20 mA transmitter channels as uint16 mA x 1000 in input registers."""

    def __init__(self, ranges: tuple[tuple[float, float], ...] = ((-50.0, 150.0),), **kw: Any) -> None:
        super().__init__((bits_block(1), bits_block(1), no_regs(), regs_block(max(1, len(ranges)))), **kw)
        self.ranges = ranges
        for ch in range(len(ranges)):
            self.set_current(ch, 4.0)

    def set_current(self, channel: int, ma: float) -> None:
        """Raw loop current (e.g. 3.5 mA for a wire break, 22 mA for a short)."""
        self.set_reg("input", channel, max(0, min(0xFFFF, round(ma * 1000))))

    def _apply_value(self, name: str, value: float) -> None:
        """Names are "t0", "t1", ... in engineering units of the channel's range."""
        if not (name.startswith("t") and name[1:].isdigit() and int(name[1:]) < len(self.ranges)):
            raise KeyError(f"TemperatureTransmitterSim has channels t0..t{len(self.ranges) - 1}, not {name!r}")
        ch = int(name[1:])
        lo, hi = self.ranges[ch]
        self.set_current(ch, 4.0 + 16.0 * (value - lo) / (hi - lo))


@dataclass(frozen=True, slots=True)
class CoilChange:
    """One coil transition inside the relay module."""

    at: float
    """time.monotonic() when the module changed the coil."""
    coil: int
    value: bool
    cause: str
    """"write" or "watchdog"."""


HB_ADDR, TIMEOUT_ADDR, CLEAR_ADDR, STATUS_ADDR = 0, 1, 2, 3


class RelayModuleSim(ModbusSim):
    """An output module with feedback contacts and a host watchdog."""

    def __init__(self, n: int = 8, *, watchdog_ms: int = 1000, **kw: Any) -> None:
        super().__init__((bits_block(n), bits_block(n), regs_block(4), no_regs()), **kw)
        self.n = n
        self.set_reg("holding", TIMEOUT_ADDR, watchdog_ms)
        self.changes: list[CoilChange] = []
        """Every coil transition, oldest first."""
        self.welded: dict[int, bool] = {}
        """Contacts stuck at a value regardless of their coil."""
        self.watchdog_tripped = False
        self._armed = False
        self._last_beat = 0.0
        self._dog: asyncio.Task[None] | None = None

    @property
    def coils(self) -> list[bool]:
        return [self.bit("coil", i) for i in range(self.n)]

    @property
    def feedback(self) -> list[bool]:
        return [self.welded.get(i, self.bit("coil", i)) for i in range(self.n)]

    def weld(self, coil: int, value: bool | None = True) -> None:
        """Stick the feedback contact of `coil` at `value` (None: unstick)."""
        if value is None:
            self.welded.pop(coil, None)
        else:
            self.welded[coil] = value
        self._mirror()

    def _mirror(self) -> None:
        for i, v in enumerate(self.feedback):
            self.set_bit("discrete", i, v)

    def _set_coil(self, coil: int, value: bool, cause: str) -> None:
        if self.bit("coil", coil) != value:
            self.set_bit("coil", coil, value)
            self.changes.append(CoilChange(time.monotonic(), coil, value, cause))
        self._mirror()

    async def start(self) -> None:
        await super().start()
        if self._dog is None:
            self._dog = asyncio.create_task(self._watch(), name="relay-sim-watchdog")

    async def stop(self) -> None:
        if self._dog is not None:
            self._dog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dog
            self._dog = None
        await super().stop()

    def _trip(self) -> None:
        self.watchdog_tripped = True
        self.set_reg("holding", STATUS_ADDR, 1)
        for i in range(self.n):
            self._set_coil(i, False, "watchdog")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            timeout_ms = self.reg("holding", TIMEOUT_ADDR)
            if self._armed and timeout_ms and not self.watchdog_tripped \
                    and time.monotonic() - self._last_beat > timeout_ms / 1000.0:
                self._trip()

    async def on_request(
        self, function_code: int, address: int, count: int, values: list[int] | list[bool] | None
    ) -> ExcCodes | None:
        if values is None:
            self._mirror()
            return None
        if function_code in (5, 15):
            for i in range(len(values)):
                coil = address + i
                if coil >= self.n:
                    continue
                if self.watchdog_tripped:
                    values[i] = False  # acknowledged, but held off until cleared
                self._set_coil(coil, bool(values[i]), "write")
        elif function_code in (6, 16):
            regs = cast(list[int], values)
            for i, v in enumerate(regs):
                reg = address + i
                if reg == HB_ADDR:
                    self._armed, self._last_beat = True, time.monotonic()
                elif reg == CLEAR_ADDR and v:
                    regs[i] = 0
                    self.watchdog_tripped = False
                    self._last_beat = time.monotonic()
                    self.set_reg("holding", STATUS_ADDR, 0)
                elif reg == STATUS_ADDR:
                    return ExcCodes.ILLEGAL_ADDRESS  # read-only
        return None


__all__ = [
    "CoilChange",
    "GasDetectorSim",
    "RelayModuleSim",
    "TemperatureTransmitterSim",
]
