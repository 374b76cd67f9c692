"""ModbusSource against simulated devices over real Modbus TCP (127.0.0.1) and RTU (socat pty pair)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from drivers.modbus import BusRegistry, DataType, DeviceSpec, ModbusSource, PointSpec, Table
from firmware_sim.modbus_devices import GasDetectorSim, TemperatureTransmitterSim
from rules.events import DeviceStatus, Quality, Reading
from tests.support.modbus import Recorder, gas_spec, pty_pair
from tests.support.procs import wait_for

GOOD, BAD = Quality.GOOD, Quality.BAD


@pytest.fixture
async def gas() -> AsyncIterator[GasDetectorSim]:
    async with GasDetectorSim() as sim:
        yield sim


@contextlib.asynccontextmanager
async def running(spec: DeviceSpec, rec: Recorder, buses: BusRegistry | None = None) -> AsyncIterator[ModbusSource]:
    buses = buses or BusRegistry()
    src = ModbusSource(spec, rec, time.monotonic, buses)
    task = asyncio.create_task(src.run(), name=f"modbus[{spec.id}]")
    try:
        yield src
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        buses.close()


async def test_good_poll_decodes_every_signal(gas: GasDetectorSim) -> None:
    gas.set_value("o2", 19.0)
    gas.set_value("lel", 12.5)
    gas.set_value("h2s", 4.2)
    gas.set_value("co", 31.0)
    rec = Recorder()
    src = ModbusSource(gas_spec(port=gas.port), rec, time.monotonic, BusRegistry())
    readings = await src.poll_once()
    got = {r.signal: (r.quality, round(r.value, 3)) for r in readings}
    assert got == {
        "o2": (GOOD, 19.0), "lel": (GOOD, 12.5), "h2s": (GOOD, 4.2), "co": (GOOD, 31.0), "o2_f": (GOOD, 19.0),
        "gas.bump": (GOOD, 1_700_000_000), "gas.cal": (GOOD, 1_690_000_000),
    }
    assert rec.statuses() == [DeviceStatus("gas-1", up=True)]
    assert src.up is True and src.comm_errors == 0


@pytest.mark.parametrize(("max_gap", "reads"), [(0, [(3, 0, 7), (3, 10, 4)]), (3, [(3, 0, 14)])])
async def test_block_reads_merge(gas: GasDetectorSim, max_gap: int, reads: list[tuple[int, int, int]]) -> None:
    src = ModbusSource(gas_spec(port=gas.port, max_gap=max_gap), Recorder(), time.monotonic, BusRegistry())
    gas.requests.clear()
    await src.poll_once()
    assert gas.requests == reads  # what the device saw on the wire


async def _apply(sim: GasDetectorSim, knob: str) -> None:
    match knob:
        case "drop":
            sim.set_drop()
        case "delay":
            sim.set_delay(0.6)
        case "corrupt":
            sim.set_corrupt()
        case "exception":
            sim.set_exception(11)
        case "disconnect":
            await sim.disconnect(0.6)


TCP_FAULTS = [
    ("drop", "timeout"),
    ("delay", "timeout"),
    ("corrupt", "short_frame"),  # TCP: the frame arrives cut short
    ("exception", "exception_code:11"),
    ("disconnect", "disconnected"),
]


async def _fault_and_recover(sim: GasDetectorSim, spec: DeviceSpec, knob: str, reason: str) -> None:
    rec = Recorder()
    async with running(spec, rec) as src:
        await wait_for(lambda: rec.last_is("o2", GOOD), 5, what="first good reading")
        await _apply(sim, knob)
        await wait_for(lambda: rec.last_is("o2", BAD, reason), 5, what=f"o2 BAD {reason}")
        # every point of the failed poll is BAD, none is silent
        assert all(rec.last_is(s, BAD) for s in ("lel", "h2s", "co", "o2_f", "gas.bump"))
        assert src.up is False and src.comm_errors >= 1
        sim.clear_faults()
        await wait_for(lambda: rec.last_is("o2", GOOD) and rec.last_is("co", GOOD), 5, what="recovery")
        await wait_for(lambda: src.up is True, 2)
    ups = rec.statuses()
    assert ups[0] == DeviceStatus("gas-1", up=True)
    assert ups[1].up is False and ups[1].reason in (reason, "timeout")  # a reset socket may first look silent
    assert ups[2:] == [DeviceStatus("gas-1", up=True)]  # recovered once, nothing in between


@pytest.mark.parametrize(("knob", "reason"), TCP_FAULTS)
async def test_tcp_fault_knob_gives_bad_then_recovers(gas: GasDetectorSim, knob: str, reason: str) -> None:
    await _fault_and_recover(gas, gas_spec(port=gas.port), knob, reason)


async def test_retries_ride_out_one_lost_reply(gas: GasDetectorSim) -> None:
    dropped = 0
    orig = gas._trace_packet

    def drop_once(sending: bool, data: bytes) -> bytes:
        nonlocal dropped
        if sending and dropped == 0:
            dropped += 1
            return b""
        return orig(sending, data)

    gas._trace_packet = drop_once  # type: ignore[method-assign]
    await gas.stop()
    await gas.start()
    src = ModbusSource(gas_spec(port=gas.port, retries=1), Recorder(), time.monotonic, BusRegistry())
    readings = await src.poll_once()
    assert dropped == 1
    assert all(r.quality is GOOD for r in readings)


@pytest.mark.parametrize(("flags", "reason"), [
    ({"warm_up": True}, "warm_up"), ({"fault": True}, "device_fault"), ({"over_range": True}, "over_range"),
    ({"fault": True, "warm_up": True}, "device_fault"),
])
async def test_status_bits_make_readings_bad_but_device_up(gas: GasDetectorSim, flags: dict[str, bool],
                                                           reason: str) -> None:
    rec = Recorder()
    src = ModbusSource(gas_spec(port=gas.port), rec, time.monotonic, BusRegistry())
    gas.set_status(**flags)
    readings = {r.signal: r for r in await src.poll_once()}
    assert {s: (r.quality, r.reason) for s, r in readings.items() if s in ("o2", "lel", "o2_f")} == {
        "o2": (BAD, reason), "lel": (BAD, reason), "o2_f": (BAD, reason)}
    assert readings["gas.bump"].quality is GOOD  # the dates are still true
    assert src.up is True and rec.statuses() == [DeviceStatus("gas-1", up=True)]
    gas.set_status()
    readings = {r.signal: r for r in await src.poll_once()}
    assert readings["o2"].quality is GOOD


async def test_nan_float_is_bad_only_for_that_point(gas: GasDetectorSim) -> None:
    gas.set_o2_float(math.nan)
    readings = {r.signal: r for r in await ModbusSource(gas_spec(port=gas.port), Recorder(), time.monotonic,
                                                        BusRegistry()).poll_once()}
    assert (readings["o2_f"].quality, readings["o2_f"].reason.split(":")[0]) == (BAD, "not_a_number")
    assert readings["o2"].quality is GOOD


async def test_freeze_holds_values(gas: GasDetectorSim) -> None:
    src = ModbusSource(gas_spec(port=gas.port), Recorder(), time.monotonic, BusRegistry())
    gas.set_frozen()
    gas.set_value("lel", 50.0)
    readings = {r.signal: r for r in await src.poll_once()}
    assert (readings["lel"].quality, readings["lel"].value) == (GOOD, 0.0)  # only a stuck-value rule sees this
    gas.set_frozen(False)
    readings = {r.signal: r for r in await src.poll_once()}
    assert readings["lel"].value == pytest.approx(50.0)


async def test_unreachable_device_backs_off_and_reports_once() -> None:
    sim = GasDetectorSim()
    await sim.start()
    port = sim.port
    await sim.stop()  # nothing listens on `port` now
    rec = Recorder()
    spec = gas_spec(port=port, poll_s=0.02, backoff_cap_s=0.16)
    async with running(spec, rec) as src:
        await wait_for(lambda: src.comm_errors >= 4, 5, what="a few refused connects")
        t0, n0 = time.monotonic(), src.comm_errors
        await wait_for(lambda: src.comm_errors >= n0 + 2, 5)
        # backoff: >= 2 waits of at least cap/2, far slower than poll_s
        assert time.monotonic() - t0 >= 0.08
        assert rec.statuses() == [DeviceStatus("gas-1", up=False, reason="disconnected")]
        assert rec.last_is("o2", BAD, "disconnected")
        sim.port = port
        await sim.start()
        try:
            await wait_for(lambda: rec.last_is("o2", GOOD), 5, what="recovery after the device came up")
        finally:
            await sim.stop()
    assert [s.up for s in rec.statuses()] == [False, True]


@pytest.mark.parametrize(("ma", "quality", "value"), [
    (12.0, GOOD, 50.0), (4.0, GOOD, -50.0), (3.5, BAD, math.nan), (22.0, BAD, math.nan), (21.0, GOOD, 162.5),
])
async def test_temperature_transmitter_ne43(ma: float, quality: Quality, value: float) -> None:
    async with TemperatureTransmitterSim(ranges=((-50.0, 150.0), (0.0, 100.0))) as tt:
        tt.set_current(0, ma)
        tt.set_value("t1", 25.0)
        spec = DeviceSpec("tt-1", "tcp", host="127.0.0.1", port=tt.port, timeout_s=0.3, points=(
            PointSpec("t0", Table.INPUT, 0, DataType.UINT16, scale=0.001, unit="degC", current_loop=(-50, 150)),
            PointSpec("t1", Table.INPUT, 1, DataType.UINT16, scale=0.001, unit="degC", current_loop=(0, 100)),
        ))
        readings = {r.signal: r for r in await ModbusSource(spec, Recorder(), time.monotonic,
                                                            BusRegistry()).poll_once()}
    t0 = readings["t0"]
    assert t0.quality is quality
    assert (t0.reason == "") if quality is GOOD else t0.reason.startswith("loop_fault:")
    if quality is GOOD:
        assert t0.value == pytest.approx(value)
    assert readings["t1"].value == pytest.approx(25.0)


async def test_devices_on_one_bus_share_lock_and_client() -> None:
    async with GasDetectorSim() as gas:
        buses = BusRegistry()
        a = ModbusSource(gas_spec(port=gas.port), Recorder(), time.monotonic, buses)
        b = ModbusSource(gas_spec(id="gas-2", port=gas.port), Recorder(), time.monotonic, buses)
        assert buses.lock(a.spec) is buses.lock(b.spec)
        results = await asyncio.gather(a.poll_once(), b.poll_once())
        assert all(r.quality is GOOD for rs in results for r in rs)
        buses.close()


# ------------------------------------------------------------------------------------------- RTU


@pytest.fixture
def ptys() -> Any:
    with pty_pair() as pair:
        yield pair


async def _with_rtu_gas(ptys: tuple[str, str], body: Callable[[GasDetectorSim, DeviceSpec], Awaitable[None]]) -> None:
    # 8N1: a Linux pty accepts even parity once, then refuses to be re-opened with it (EINVAL)
    async with GasDetectorSim(transport="rtu", serial_port=ptys[1], baudrate=38400, parity="N") as sim:
        spec = gas_spec(transport="rtu", host="", serial_port=ptys[0], baudrate=38400, parity="N", timeout_s=0.25)
        await body(sim, spec)


async def test_rtu_good_poll_and_frame_gap(ptys: tuple[str, str]) -> None:
    async def body(sim: GasDetectorSim, spec: DeviceSpec) -> None:
        sim.set_value("o2", 18.5)
        src = ModbusSource(spec, Recorder(), time.monotonic, BusRegistry())
        readings = {r.signal: r for r in await src.poll_once()}
        assert readings["o2"].quality is GOOD
        assert readings["o2"].value == pytest.approx(18.5)
        assert spec.frame_gap_s == pytest.approx(0.00175)  # 3.5 chars at 38400 < the 1.75 ms floor
        assert sim.requests == [(3, 0, 7), (3, 10, 4)]

    await _with_rtu_gas(ptys, body)


@pytest.mark.parametrize(("knob", "reason"), [
    ("corrupt", "crc_error"), ("drop", "timeout"), ("exception", "exception_code:11"), ("delay", "timeout"),
    ("disconnect", "timeout"),  # a serial line cannot refuse: the device goes silent
])
async def test_rtu_fault_knob_gives_bad_then_recovers(ptys: tuple[str, str], knob: str, reason: str) -> None:
    async def body(sim: GasDetectorSim, spec: DeviceSpec) -> None:
        await _fault_and_recover(sim, spec, knob, reason)

    await _with_rtu_gas(ptys, body)


async def test_rtu_missing_port_is_disconnected() -> None:
    spec = gas_spec(transport="rtu", host="", serial_port="/nonexistent/ttyX")
    rec = Recorder()
    readings = await ModbusSource(spec, rec, time.monotonic, BusRegistry()).poll_once()
    assert {r.reason for r in readings} == {"disconnected"}
    assert rec.statuses() == [DeviceStatus("gas-1", up=False, reason="disconnected")]
    assert isinstance(readings[0], Reading)
