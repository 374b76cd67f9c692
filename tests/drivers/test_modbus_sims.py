"""Output writer and relay module simulator over real Modbus TCP: read-back, welded contacts, watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from drivers.modbus import BusRegistry, DeviceSpec, RelayModuleClient
from firmware_sim.modbus_devices import CLEAR_ADDR, HB_ADDR, TIMEOUT_ADDR, GasDetectorSim, RelayModuleSim
from rules.events import OutputFeedback
from tests.support.modbus import pty_pair
from tests.support.procs import wait_for

WATCHDOG_MS = 300


@pytest.fixture
async def relay() -> AsyncIterator[RelayModuleSim]:
    async with RelayModuleSim(4, watchdog_ms=WATCHDOG_MS) as sim:
        yield sim


def client(sim: RelayModuleSim, buses: BusRegistry | None = None, **kw: object) -> RelayModuleClient:
    spec = DeviceSpec("relay-1", "tcp", host="127.0.0.1", port=sim.port, timeout_s=0.2, retries=0)
    return RelayModuleClient(spec, buses or BusRegistry(), watchdog_address=HB_ADDR, clear_address=CLEAR_ADDR,
                             **kw)  # type: ignore[arg-type]


async def test_write_coil_reads_back_coil(relay: RelayModuleSim) -> None:
    w = client(relay)
    assert await w.write_coil(2, True) is True
    assert relay.coils == [False, False, True, False]
    assert await w.write_coil(2, False) is False
    assert [(c.coil, c.value, c.cause) for c in relay.changes] == [(2, True, "write"), (2, False, "write")]


async def test_feedback_input_reveals_welded_contact(relay: RelayModuleSim) -> None:
    w = client(relay, feedback={0: 0, 1: 1})
    assert await w.set_output("ignition", 0, True) == OutputFeedback("ignition", True, True)
    relay.weld(0, True)  # force-guided contact stuck closed
    fb = await w.set_output("ignition", 0, False)
    assert fb == OutputFeedback("ignition", commanded=False, observed=True, reason="read_back_mismatch")
    assert relay.coils[0] is False  # the coil obeyed; only the feedback input tells the truth
    assert await w.check_output("ignition", 0, False) == fb
    relay.weld(0, None)
    assert await w.check_output("ignition", 0, False) == OutputFeedback("ignition", False, False)


async def test_write_register_reads_back(relay: RelayModuleSim) -> None:
    w = client(relay)
    assert await w.write_register(TIMEOUT_ADDR, 750) == 750
    assert relay.reg("holding", TIMEOUT_ADDR) == 750


async def test_comm_failure_returns_none_and_counts(relay: RelayModuleSim) -> None:
    w = client(relay)
    relay.set_drop()
    fb = await w.set_output("horn", 1, True)
    assert fb == OutputFeedback("horn", commanded=True, observed=None, reason="read_back_failed")
    assert await w.write_register(TIMEOUT_ADDR, 500) is None
    assert await w.heartbeat() is False
    assert w.comm_errors == 3 and w.ok is False
    relay.clear_faults()
    assert await w.write_coil(1, True) is True and w.ok is True


async def test_exception_reply_is_a_failed_write(relay: RelayModuleSim) -> None:
    w = client(relay)
    relay.set_exception(4)
    assert await w.write_coil(0, True) is None
    assert (w.comm_errors, w.ok) == (1, False)
    relay.set_exception(None)
    assert await w.write_coil(0, True) is True


async def test_watchdog_drops_and_holds_until_cleared(relay: RelayModuleSim) -> None:
    w = client(relay)
    stop = asyncio.Event()
    beats: list[float] = []

    async def beat() -> None:
        while not stop.is_set():
            assert await w.heartbeat()
            beats.append(time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCHDOG_MS / 3 / 1000):
                    await stop.wait()

    beater = asyncio.create_task(beat())
    assert await w.write_coil(0, True) is True
    assert await w.write_coil(3, True) is True
    # heartbeats at timeout/3 keep the outputs for several timeouts
    t_end = time.monotonic() + 3 * WATCHDOG_MS / 1000
    await wait_for(lambda: time.monotonic() > t_end, 5)
    assert relay.coils == [True, False, False, True] and not relay.watchdog_tripped
    stop.set()
    await beater
    last_beat = beats[-1]
    await wait_for(lambda: relay.watchdog_tripped, 5, what="watchdog trip")
    drops = [c for c in relay.changes if c.cause == "watchdog"]
    assert sorted(c.coil for c in drops) == [0, 3]
    latency = max(c.at for c in drops) - last_beat
    assert WATCHDOG_MS / 1000 * 0.9 <= latency <= WATCHDOG_MS / 1000 + 0.3, latency
    # held: the write is acknowledged but the coil stays off, and read-back says so
    assert await w.write_coil(0, True) is False
    assert relay.coils == [False] * 4
    assert await w.heartbeat()  # a heartbeat alone does not release the outputs
    assert await w.write_coil(0, True) is False
    assert await w.clear_watchdog()
    assert not relay.watchdog_tripped
    assert await w.write_coil(0, True) is True


async def test_writer_shares_bus_lock_with_source(relay: RelayModuleSim) -> None:
    buses = BusRegistry()
    w = client(relay, buses)
    spec = DeviceSpec("relay-1", "tcp", host="127.0.0.1", port=relay.port)
    assert buses.lock(spec) is buses.lock(w.spec)
    results = await asyncio.gather(*(w.write_coil(i, True) for i in range(4)))
    assert results == [True] * 4  # serialized on one connection, every read-back matches
    buses.close()


async def test_disconnect_refuses_then_listens_again() -> None:
    async with GasDetectorSim() as sim:
        port = sim.port
        await sim.disconnect(0.3)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
        await wait_for(lambda: sim.serving, 5, what="listening again")
        assert sim.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass


async def test_relay_over_rtu() -> None:
    with pty_pair() as (host_end, device_end):
        async with RelayModuleSim(2, transport="rtu", serial_port=device_end, parity="N") as sim:
            spec = DeviceSpec("relay-rtu", "rtu", serial_port=host_end, parity="N", timeout_s=0.3)
            buses = BusRegistry()
            w = RelayModuleClient(spec, buses, feedback={1: 1})
            assert await w.write_coil(1, True) is True
            sim.weld(1, False)
            assert await w.write_coil(1, True) is False
            buses.close()


def test_sim_rejects_bad_knobs() -> None:
    sim = GasDetectorSim()
    with pytest.raises(ValueError):
        sim.set_exception(0)
    with pytest.raises(KeyError):
        sim.set_value("nox", 1.0)
    with pytest.raises(ValueError):
        GasDetectorSim(transport="rtu")
