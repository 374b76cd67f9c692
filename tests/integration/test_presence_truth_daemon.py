"""Unknown is never "nobody inside" (issue 17.1), over MQTT, the API, the ledger evidence and the
doc: without a live badge receiver the headcount is "unknown" and says why."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.ble_badges import MockBluezBadges
from tests.support.confined import EVAC_TOPIC, gateway, inside, state
from tests.support.daemon import running
from tests.support.plant import HORN, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

HAZARD_TOPIC = "edge/demo-plant/gw-demo/hazard"
DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def doc_examples(heading: str) -> list[dict[str, Any]]:
    """The JSON examples under a heading of docs/mqtt.md."""
    text = DOC.read_text()
    section = text[text.index(heading):]
    section = section[: section.find("\n### ", 1)]
    return [json.loads(m) for m in re.findall(r"```json\n(.*?)\n```", section, re.S)]


async def test_no_badge_receiver_means_headcount_unknown_everywhere(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (_d, sub):
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: p.relay.coils[HORN], 5, what="evacuate")
        await wait_for(lambda: sub.last.get(EVAC_TOPIC, {}).get("active") is True, 5, what="evacuation message")
        msg = sub.last[EVAC_TOPIC]
        assert msg["people_inside"] == [] and msg["presence"] == "unknown"
        assert msg["presence_reason"] == "no badge receiver covers this zone"
        zone = next(z for z in (await state(p))["presence"]["zones"] if z["zone"] == "tank-t101")
        assert (zone["presence"], zone["presence_reason"]) == ("unknown", "no badge receiver covers this zone")
        hazard = next(b for t, b, _ in sub.log if t == HAZARD_TOPIC and b["category"] == "confined_space")
        assert hazard["evidence"]["presence"] == "unknown"

        # docs/mqtt.md shows the same fields the gateway sends.
        for example in doc_examples("### `evacuation/{zone}`"):
            assert set(example) == set(msg), (sorted(example), sorted(msg))


async def test_a_lost_receiver_turns_a_known_headcount_unknown(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, gateway(p, bluez, broker) as (d, _badges, sub):
        await wait_for(lambda: inside(d) == {"E1", "E2"}, 15, what="both badges located inside")
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: sub.last.get(EVAC_TOPIC, {}).get("active") is True, 5, what="evacuation message")
        msg = sub.last[EVAC_TOPIC]
        assert msg["presence"] == "known" and {x["id"] for x in msg["people_inside"]} == {"E1", "E2"}

        await asyncio.to_thread(bluez.remove_adapter, "hci0")  # the adapter is gone: nobody is located
        await wait_for(lambda: sub.last[EVAC_TOPIC]["presence"] == "unknown", 10, what="evacuation says unknown")
        msg = sub.last[EVAC_TOPIC]
        assert msg["presence_reason"] == "badge receiver down: gw-hci0" and msg["active"] is True
        zone = next(z for z in (await state(p))["presence"]["zones"] if z["zone"] == "tank-t101")
        assert zone["presence"] == "unknown"
