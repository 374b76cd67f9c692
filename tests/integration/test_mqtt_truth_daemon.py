"""MQTT says where every alarm stands, with the data's quality (issue 17.9): each signal's
retained alarm topic is published once its first reading is in (normal included, so no
retained alarm from a previous run survives), and every alarm message carries the quality."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app.daemon import Daemon
from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

ALARMS = "edge/demo-plant/gw-demo/alarm/"
DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def doc_examples(heading: str) -> list[dict[str, Any]]:
    """The JSON examples under a heading of docs/mqtt.md."""
    text = DOC.read_text()
    section = text[text.index(heading) :]
    section = section[: section.find("\n### ", 1)]
    return [json.loads(m) for m in re.findall(r"```json\n(.*?)\n```", section, re.S)]


async def test_every_alarm_topic_is_published_at_start_with_its_quality(broker: Mosquitto, tmp_path: Path) -> None:
    # A retained alarm left by a previous run: it must be replaced, not kept.
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="old-run") as c:
        old = {"zone": "tank-t101", "signal": "t101_o2", "severity": "evacuate", "gateway": "gw-demo"}
        await c.publish(ALARMS + "tank-t101/t101_o2", json.dumps(old), qos=1, retain=True)
    seen: dict[str, dict[str, Any]] = {}
    ready = asyncio.Event()

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watch") as c:
            await c.subscribe(ALARMS + "#", qos=1)
            ready.set()
            async for m in c.messages:
                seen[str(m.topic)] = json.loads(bytes(m.payload))  # type: ignore[arg-type]

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 10)
    async with plant(broker.port, tmp_path) as p:
        p.bay.set_drop(True)  # bay 2's detector does not answer: its first readings are BAD
        d = Daemon(p.config())
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15, what="running")
            topics = {ALARMS + f"{s.zone}/{s.id}" for s in d.ecfg.signals.values()}
            await wait_for(lambda: topics <= set(seen) and seen[ALARMS + "tank-t101/t101_o2"].get("quality"), 10,
                           what="every alarm topic published")  # fmt: skip
            o2 = seen[ALARMS + "tank-t101/t101_o2"]
            assert (o2["severity"], o2["quality"]) == ("normal", "good")  # the old run's alarm is replaced
            lel = seen[ALARMS + "bay-2/bay2_lel"]
            assert lel["quality"] == "bad" and lel["severity"] != "normal", lel  # never "normal" without data
            # docs/mqtt.md shows exactly the fields the gateway sends on an alarm topic.
            for example in doc_examples("### `alarm/{zone}/{signal}`"):
                assert set(example) == set(o2), (sorted(example), sorted(o2))
            p.tank.set_value("o2", 19.0)
            await wait_for(lambda: seen[ALARMS + "tank-t101/t101_o2"]["severity"] == "evacuate", 5, what="alarm")
            assert seen[ALARMS + "tank-t101/t101_o2"]["quality"] == "good"
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
            watcher.cancel()
