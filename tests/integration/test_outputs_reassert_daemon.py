"""A coil energized by someone else is driven back to safe; a module that will not obey is starved
(issue 15.2). A third party is a real Modbus TCP client writing the relay module's coils.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.app.daemon import Daemon
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.daemon import Retained, running
from tests.support.plant import IGNITION, PERMISSIVE, Plant, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

OUTPUT_FAULT_TOPIC = "edge/demo-plant/gw-demo/output_fault"


@contextlib.asynccontextmanager
async def third_party(p: Plant) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=p.relay.port, timeout=1, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


def audit(d: Daemon, kind: str) -> list[dict[str, Any]]:
    path = d.state_dir / "audit.jsonl"
    if not path.exists():
        return []
    records = (line["record"] for line in map(json.loads, path.read_text().splitlines()))
    return [r for r in records if r.get("kind") == kind]


def events(sub: Retained, kind: str) -> list[dict[str, Any]]:
    return [b for t, b, _ in sub.log if t == OUTPUT_FAULT_TOPIC and b.get("event") == kind]


async def healthz(p: Plant) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{p.http_port}/healthz") as r:
        return r.status, await r.json()


async def test_ignition_coil_written_on_by_someone_else_is_written_back_off(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
        assert d.outputs.commanded["bay2_ignition"] is False  # nothing released

        async with third_party(p) as c:
            await c.write_coil(IGNITION, True, device_id=1)
        assert p.relay.coils[IGNITION]  # the stray write took
        # The gateway sees it, latches the output fault, and writes the coil safe again.
        await wait_for(lambda: bool(audit(d, "output_reasserted")), 10, what="re-write audited")
        assert not p.relay.coils[IGNITION]
        writes = [c for c in p.relay.changes if c.coil == IGNITION]
        assert [c.value for c in writes[-2:]] == [True, False] and writes[-1].cause == "write"
        rec = audit(d, "output_reasserted")[-1]
        assert rec["output"] == "bay2_ignition" and rec["found"] is True and rec["obeyed"] is True
        await wait_for(lambda: bool(events(sub, "output_reasserted")), 5, what="MQTT event")
        assert events(sub, "output_fault")  # the latch itself is said on MQTT too
        assert d.state.output_fault
        await wait_for(lambda: not p.relay.coils[PERMISSIVE], 5, what="everything held safe")
        status, body = await healthz(p)
        assert status == 503 and body["output_fault"]
        assert not d.outputs.starved  # one stray write: corrected, the module still obeys

        # Acknowledged: the modules are re-armed and the plant runs again.
        d.inbox.put(Ack("outputs", "op-1", "supervisor", iso(d.clock.utc())))
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive back after the ack")
        assert not p.relay.coils[IGNITION]


async def test_a_module_that_keeps_energizing_the_coil_is_starved_and_its_watchdog_drops_everything(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
        stop = asyncio.Event()

        async def keep_writing() -> None:
            async with third_party(p) as c:
                for _ in range(2000):  # bounded: about 20 s at most
                    if stop.is_set():
                        return
                    await c.write_coil(IGNITION, True, device_id=1)
                    await asyncio.sleep(0.01)

        attacker = asyncio.create_task(keep_writing())
        try:
            await wait_for(lambda: "relay-1" in d.outputs.starved, 15, what="module starved")
            limit = d.cfg.device("relay-1").watchdog.reassert_max  # type: ignore[union-attr]
            assert len(audit(d, "output_reasserted")) <= limit
            # No more heartbeats: the module's own watchdog trips and drops every coil.
            await wait_for(lambda: p.relay.watchdog_tripped, 5, what="module watchdog tripped")
        finally:
            stop.set()
            await attacker
        assert not any(p.relay.coils)
        await wait_for(lambda: bool(audit(d, "output_module_starved")), 5, what="starvation audited")
        await wait_for(lambda: bool(events(sub, "output_module_starved")), 5, what="starvation on MQTT")
        status, body = await healthz(p)
        assert status == 503 and "relay-1" in body["modules_starved"]

        # The stray writer is gone; an acknowledgement re-arms the module (heartbeat + clear).
        d.inbox.put(Ack("outputs", "op-1", "supervisor", iso(d.clock.utc())))
        await wait_for(lambda: not p.relay.watchdog_tripped, 10, what="module re-armed")
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive back")
        assert not d.outputs.starved and not p.relay.coils[IGNITION]
