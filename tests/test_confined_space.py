"""Confined-space evacuation over the real protocols.

The gas detector simulator speaks Modbus TCP; two badges are heard through bleak's real
BlueZ backend against the mock BlueZ; the relay module is a Modbus simulator; MQTT is a
real mosquitto. O2 20.9 -> 19.0 with two people inside: the horn coil turns on, the
retained evacuation message lists both, the status API shows the banner; they walk out;
the acknowledgement clears. With the broker stopped the outputs act all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from firmware_sim.ble_badges import MockBluezBadges, ibeacon_frame
from gateway.app.daemon import Daemon
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.bluez import bluez_with_adapter
from tests.support.plant import HORN, PERMISSIVE, Plant, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

UUID = "e5ca1ade-f007-ba11-0000-000000000000"
PEOPLE = {"E1": ("Ann Lee", 1, "C0:00:00:00:00:01"), "E2": ("Bob Diaz", 2, "C0:00:00:00:00:02")}
EVAC_TOPIC = "edge/demo-plant/gw-demo/evacuation/tank-t101"


@pytest.fixture
def bluez() -> Iterator[MockBluezBadges]:
    with bluez_with_adapter("hci0") as sim:
        yield sim


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
    from rules import plant as pl

    return set(pl.people_in(d.state.plant, "tank-t101", d.clock.monotonic(), d.ecfg))


async def state(p: Plant) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
        return await r.json()  # type: ignore[no-any-return]


async def test_o2_drop_with_two_inside_evacuates_lists_both_they_walk_out_ack_clears(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, gateway(p, bluez, broker) as (d, badges, sub):
        await wait_for(lambda: inside(d) == {"E1", "E2"}, 15, what="both badges located inside")
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: p.relay.coils[HORN], 5, what="horn coil on at the relay module")
        await wait_for(lambda: sub.last.get(EVAC_TOPIC, {}).get("active") is True, 5, what="evacuation message")
        msg = sub.last[EVAC_TOPIC]
        assert {x["id"] for x in msg["people_inside"]} == {"E1", "E2"}
        assert {x.get("name") for x in msg["people_inside"]} == {"Ann Lee", "Bob Diaz"}
        s = await state(p)
        tank = next(z for z in s["zones"] if z["id"] == "tank-t101")
        assert tank["evacuate"] is True
        people = next(z for z in s["presence"]["zones"] if z["zone"] == "tank-t101")
        assert {x["person"] for x in people["inside"]} == {"E1", "E2"}

        # They walk out: no longer heard in the tank (UNKNOWN after 3 s here); shown live.
        badges.inside.clear()
        await wait_for(lambda: inside(d) == set(), 10, what="both out")
        await wait_for(lambda: sub.last[EVAC_TOPIC]["people_inside"] == [], 5, what="evacuation notice updated")
        assert p.relay.coils[HORN]  # still evacuating: not acknowledged

        p.tank.set_value("o2", 20.9)
        await wait_for(lambda: d.state.signals["t101_o2"].value > 20, 5)
        d.inbox.put(Ack("*", "attendant", "operator", iso(d.clock.utc()), "tank-t101"))
        await wait_for(lambda: not p.relay.coils[HORN] and p.relay.coils[PERMISSIVE], 5, what="ack clears")
        await wait_for(lambda: sub.last[EVAC_TOPIC]["active"] is False, 5)


async def test_outputs_act_with_the_broker_stopped_and_the_notice_follows_on_reconnect(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, gateway(p, bluez, broker) as (d, _, sub):
        await wait_for(lambda: inside(d) == {"E1", "E2"}, 15)
        broker.stop()
        await wait_for(lambda: not d.mqtt.connected, 10, what="gateway sees the broker gone")
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: p.relay.coils[HORN] and not p.relay.coils[PERMISSIVE], 5, what="local outputs act")
        s = await state(p)
        assert next(z for z in s["zones"] if z["id"] == "tank-t101")["evacuate"] is True
        sub.last.clear()
        broker.restart()
        await wait_for(lambda: sub.last.get(EVAC_TOPIC, {}).get("active") is True, 20, what="notice after reconnect")
        assert {x["id"] for x in sub.last[EVAC_TOPIC]["people_inside"]} == {"E1", "E2"}
