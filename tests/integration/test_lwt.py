"""A central consumer always knows whether what it sees is live: the gateway's status is
retained "online" while it runs and the broker publishes its will, "offline", when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STATUS = "edge/demo-plant/gw-demo/status"


async def test_status_online_then_lwt_offline_when_killed(broker: Mosquitto, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="central") as c:
            await c.subscribe(STATUS, qos=1)
            async for m in c.messages:
                seen.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        watcher = asyncio.create_task(watch())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.app.cli", "run", "--config", str(cfg), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 20)
            await wait_for(lambda: any(s.get("state") == "online" for s in seen), 10, what="birth: online")
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await wait_for(lambda: seen[-1].get("state") == "offline", 10, what="LWT: offline")
            assert seen[-1]["gateway"] == "gw-demo"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher
