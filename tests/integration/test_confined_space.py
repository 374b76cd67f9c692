"""Confined-space evacuation over the real protocols.

The gas detector simulator speaks Modbus TCP; two badges are heard through bleak's real
BlueZ backend against the mock BlueZ; the relay module is a Modbus simulator; MQTT is a
real mosquitto. O2 20.9 -> 19.0 with two people inside: the horn coil turns on, the
retained evacuation message lists both, the status API shows the banner; they walk out;
the acknowledgement clears. With the broker stopped the outputs act all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.ble_badges import MockBluezBadges
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.confined import EVAC_TOPIC, gateway, inside, state
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


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
