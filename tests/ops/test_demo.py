"""`edge-gateway demo`: the acceptance run of the README's first command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from tests.support.plant import ALARM_TOPIC
from tests.support.procs import Mosquitto, free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def _watch_alarm(port: int, seen: list[str]) -> None:
    """Subscribe (retrying until the demo's broker is up) and record the alarm severities."""
    while True:
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="demo-watcher") as c:
                await c.subscribe(ALARM_TOPIC, qos=1)
                async for m in c.messages:
                    seen.append(json.loads(bytes(m.payload))["severity"])  # type: ignore[arg-type]
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


async def _state(http_port: int) -> dict | None:  # type: ignore[type-arg]
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{http_port}/api/state") as r:
            return await r.json() if r.status == 200 else None
    except aiohttp.ClientError:
        return None


async def _demo(mqtt_port: int, duration: int = 45) -> None:
    http_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.app.cli", "--log-level", "warning", "demo",
        "--duration", str(duration), "--http-port", str(http_port), "--mqtt-port", str(mqtt_port),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    seen: list[str] = []
    watcher = asyncio.create_task(_watch_alarm(mqtt_port, seen))
    try:
        states: list[dict] = []  # type: ignore[type-arg]

        async def got_state() -> bool:
            s = await _state(http_port)
            if s and s["ready"]:
                states.append(s)
            return bool(states)

        await wait_for(got_state, 20, interval=0.2, what="GET /api/state")
        s = states[-1]
        assert {"zones", "signals", "alarms", "outputs"} <= s.keys()
        o2 = next(x for x in s["signals"] if x["id"] == "t101_o2")
        assert o2["quality"] in ("good", "stale", "bad") and "value" in o2
        # The scenario: O2 falls below 19.5 at ~12 s (EVACUATE), recovers, is acknowledged at ~28 s.
        await wait_for(lambda: "evacuate" in seen, 30, what="alarm topic -> evacuate")
        await wait_for(lambda: seen[-1] == "normal" and "evacuate" in seen, 25, what="alarm topic -> normal after ack")
        assert await asyncio.wait_for(proc.wait(), duration + 15) == 0
        out = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert "status page: http://127.0.0.1:" in out and "operator acknowledges" in out
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_with_embedded_broker() -> None:
    await _demo(free_port())


async def test_demo_uses_a_reachable_broker(broker: Mosquitto) -> None:
    await _demo(broker.port)
