"""Safety messages are never dropped: they wait in order (spilling to disk past a bound) and go out on reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiomqtt

from gateway.clock import SystemClock
from gateway.config import Mqtt
from gateway.mqtt_out import MqttOut
from tests.support.procs import Mosquitto, wait_for


async def test_safety_messages_wait_spill_to_disk_and_arrive_in_order(broker: Mosquitto, tmp_path: Path) -> None:
    broker.stop()
    spill = tmp_path / "spill.jsonl"
    out = MqttOut(Mqtt(url=broker.url), "site", "gw", SystemClock(), spill=spill, max_in_memory=3)
    for i in range(10):
        out.state("alarm", ("z", f"s{i}"), {"n": i}, 0.0)
    out.event("hazard", {"n": 10}, 0.0)
    out.event("hazard", {"n": 11}, 0.0)
    assert spill.exists() and out.pending == 12
    runner = asyncio.create_task(out.run())
    got: list[int] = []
    spilled: list[bool] = []
    try:
        await asyncio.sleep(0.5)  # the broker is away: nothing is lost meanwhile
        assert out.pending == 12 and not out.connected
        broker.restart()
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as c:
            await c.subscribe("edge/site/gw/#", qos=1)
            async with asyncio.timeout(15):
                async for m in c.messages:
                    body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if "n" in body:
                        got.append(body["n"])
                        spilled.append(bool(body.get("spilled")))
                    if len(set(got)) == 12:
                        break
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    first = [n for i, n in enumerate(got) if n not in got[:i]]
    assert first == list(range(12))  # every message, in the order accepted
    assert spilled[:9] == [True] * 9 and not any(spilled[9:12])  # the 9 oldest came back from disk
    await wait_for(lambda: not spill.exists(), 5, what="spill file emptied")
