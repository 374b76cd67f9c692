"""State survives restarts; SIGHUP re-reads the config and keeps the old one when the new is bad."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.app.daemon import Daemon
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def test_a_restart_restores_latched_alarms_and_evacuation(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        d = Daemon(p.config())
        run = asyncio.create_task(d.run())
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: p.relay.coils[HORN], 5)
        await wait_for(lambda: (tmp_path / "state" / "state.json").exists(), 5, what="latches saved")
        d.request_stop()
        assert await asyncio.wait_for(run, 20) == 0
        saved = json.loads((tmp_path / "state" / "state.json").read_text())
        assert saved["signals"]["t101_o2"]["levels"] == ["low"]
        assert "tank-t101" in saved["evacuations"]

        # O2 is back in range while the gateway was down: the alarm is still latched after restart.
        p.tank.set_value("o2", 20.9)
        d2 = Daemon(p.config())
        run2 = asyncio.create_task(d2.run())
        try:
            await wait_for(lambda: d2.ready and d2.state.signals["t101_o2"].value > 20, 15)
            await wait_for(lambda: p.relay.coils[HORN], 5, what="evacuation restored: horn on")
            assert d2.state.signals["t101_o2"].levels["low"].latched
            assert not p.relay.coils[PERMISSIVE]
            d2.inbox.put(Ack("*", "sup", "operator", iso(d2.clock.utc()), "tank-t101"))
            await wait_for(lambda: p.relay.coils[PERMISSIVE] and not p.relay.coils[HORN], 5, what="ack clears")
            await wait_for(lambda: json.loads((tmp_path / "state" / "state.json").read_text())["signals"] == {}, 5)
        finally:
            d2.request_stop()
            assert await asyncio.wait_for(run2, 20) == 0


async def _limits(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
        s = await r.json()
    lel = next(x for x in s["signals"] if x["id"] == "bay2_lel")
    return {lim["name"]: lim["value"] for lim in lel["limits"]}


async def test_sighup_bad_config_keeps_running_good_config_applies(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.app.cli", "run", "--config", str(cfg), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 20)
            good = cfg.read_text()
            cfg.write_text(good.replace('zone = "bay-2"', 'zone = "bay-9"', 1))  # an unknown zone
            os.kill(proc.pid, signal.SIGHUP)
            await wait_for(lambda: _last_reload(p.http_port, "rejected"), 10, interval=0.1, what="reload rejected")
            assert proc.returncode is None and p.relay.coils[PERMISSIVE]
            assert (await _limits(p.http_port))["alarm1"] == 10.0
            # A rules-level change (a threshold) applies without a restart.
            raw = dict(p.raw)
            next(s for s in raw["signals"] if s["id"] == "bay2_lel")["thresholds"] = {"alarm1": 8.0}
            p.write(cfg)
            os.kill(proc.pid, signal.SIGHUP)

            async def reloaded() -> bool:
                return (await _limits(p.http_port))["alarm1"] == 8.0

            await wait_for(reloaded, 10, interval=0.2, what="threshold reloaded")
            assert proc.returncode is None and p.relay.coils[PERMISSIVE]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0


async def _last_reload(port: int, result: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
        rec = (await r.json())["config"]["last_reload"]
    return rec is not None and rec["result"] == result
