"""The real daemon in this process, for integration tests: `running(plant, broker)` starts it
on a simulated plant (tests.support.plant) with a subscriber on edge/#, and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt

from gateway.app.daemon import Daemon
from tests.support.plant import Plant
from tests.support.procs import Mosquitto, wait_for


class Retained:
    """Collects every message under edge/# as it arrives (last one per topic, and the log)."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, dict[str, Any], bool]] = []

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="test-subscriber") as c:
            await c.subscribe("edge/#", qos=1)
            ready.set()
            async for m in c.messages:
                body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                self.last[str(m.topic)] = body
                self.log.append((str(m.topic), body, m.retain))


@contextlib.asynccontextmanager
async def running(p: Plant, broker: Mosquitto) -> AsyncIterator[tuple[Daemon, Retained]]:
    """The daemon on `p`'s config, ready; on exit it is stopped and must exit 0."""
    d = Daemon(p.config())
    sub = Retained()
    ready = asyncio.Event()
    sub_task = asyncio.create_task(sub.run(broker.port, ready))
    await asyncio.wait_for(ready.wait(), 10)
    run = asyncio.create_task(d.run())
    try:
        await wait_for(lambda: d.ready, 10, what="daemon ready")
        yield d, sub
    finally:
        d.request_stop()
        assert await asyncio.wait_for(run, 15) == 0
        sub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await sub_task
