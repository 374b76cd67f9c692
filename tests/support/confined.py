"""Confined space: the tank of the simulated plant (tests.support.plant) with two badged people,
Ann and Bob, heard by the hci0 receiver in the tank; a daemon in this process (`gateway`), a
subscriber on edge/#, and who the engine places inside. Used by the confined-space and
presence-truth integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiomqtt

from firmware_sim.ble_badges import MockBluezBadges, ibeacon_frame
from gateway.app.daemon import Daemon
from tests.support.plant import PERMISSIVE, Plant
from tests.support.procs import Mosquitto, wait_for

UUID = "e5ca1ade-f007-ba11-0000-000000000000"
PEOPLE = {"E1": ("Ann Lee", 1, "C0:00:00:00:00:01"), "E2": ("Bob Diaz", 2, "C0:00:00:00:00:02")}
"""person id: (name, iBeacon minor, badge MAC)."""
EVAC_TOPIC = "edge/demo-plant/gw-demo/evacuation/tank-t101"


def with_people(p: Plant) -> None:
    raw = p.raw
    raw["people"] = [{"id": pid, "name": name} for pid, (name, _, _) in PEOPLE.items()]
    raw["badges"] = [{"beacon": f"ibeacon:{UUID}:1:{minor}", "person": pid} for pid, (_, minor, _) in PEOPLE.items()]
    raw["receivers"] = [{"id": "gw-hci0", "zone": "tank-t101", "kind": "bluez", "adapter": "hci0"}]
    raw["presence"] = {"absent_after_s": 3.0, "switch_hold_s": 1.0}


class Badges:
    """Keeps chosen badges 'heard': BlueZ reports only RSSI changes, so the RSSI wobbles by 1 dB."""

    def __init__(self, sim: MockBluezBadges) -> None:
        self.sim = sim
        self.paths = {
            pid: sim.add_badge("hci0", mac, manufacturer_data={0x004C: ibeacon_frame(UUID, 1, minor)}, rssi=-60)
            for pid, (_, minor, mac) in PEOPLE.items()
        }
        self.inside = set(PEOPLE)

    async def run(self) -> None:
        flip = 0
        while True:
            flip ^= 1
            for pid in list(self.inside):
                await asyncio.to_thread(self.sim.set_rssi, self.paths[pid], -60 - flip)
            await asyncio.sleep(0.4)


class Sub:
    """The last message per topic under edge/#, reconnecting while the broker is away."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, Any]] = {}

    async def run(self, port: int) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", port, identifier="cs-watch") as c:
                    await c.subscribe("edge/#", qos=1)
                    async for m in c.messages:
                        self.last[str(m.topic)] = json.loads(bytes(m.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def gateway(p: Plant, bluez: MockBluezBadges, broker: Mosquitto) -> AsyncIterator[tuple[Daemon, Badges, Sub]]:
    """The daemon with the people configured, both badges heard, gas good and the permissive on."""
    with_people(p)
    d = Daemon(p.config())
    badges = Badges(bluez)
    sub = Sub()
    tasks = [asyncio.create_task(badges.run()), asyncio.create_task(sub.run(broker.port))]
    run = asyncio.create_task(d.run())
    try:
        await wait_for(lambda: d.ready and p.relay.coils[PERMISSIVE], 15, what="gateway ready, gas good")
        yield d, badges, sub
    finally:
        d.request_stop()
        await asyncio.wait_for(run, 20)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await t


def inside(d: Daemon) -> set[str]:
    """Who the engine places in the tank now."""
    from rules import plant as pl

    return set(pl.people_in(d.state.plant, "tank-t101", d.clock.monotonic(), d.ecfg))


async def state(p: Plant) -> dict[str, Any]:
    """/api/state of the plant's daemon."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
        return await r.json()  # type: ignore[no-any-return]
