"""SIGHUP reload from the model (issue 16.4): every changed setting is reported as applied or as
needing a restart, from the markers on the config model; what is applied is really used."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.app.daemon import Daemon
from gateway.config.loader import load
from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


async def sighup_and_wait(d: Daemon, n: int) -> dict[str, Any]:
    """Send SIGHUP to this process (the daemon's loop handles it) and wait for the outcome."""
    before = d.last_reload
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: d.last_reload is not None and d.last_reload is not before, 10, what=f"reload {n}")
    assert d.last_reload is not None
    return d.last_reload


async def test_reload_applies_live_settings_and_reports_restart_ones(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg_path = p.write(tmp_path / "gw.toml")
        d = Daemon(load(cfg_path), base=tmp_path, config_path=cfg_path)
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15, what="running")

            # Live: the engine's tick and batch size, read by the engine loop on its next cycle.
            p.raw["engine"] = {"tick_s": 0.25, "batch_max": 64}
            p.write(cfg_path)
            rec = await sighup_and_wait(d, 1)
            assert rec["result"] == "applied"
            assert rec["settings"] == [{"setting": "engine.tick_s", "status": "applied"},
                                       {"setting": "engine.batch_max", "status": "applied"}]  # fmt: skip
            ticks: list[float] = []

            def six_ticks() -> bool:
                if d.last_tick is not None and (not ticks or d.last_tick != ticks[-1]):
                    ticks.append(d.last_tick)
                return len(ticks) >= 6

            await wait_for(six_ticks, 10, interval=0.01, what="six engine ticks")
            gaps = [b - a for a, b in itertools.pairwise(ticks[2:])]  # the first was scheduled before
            assert min(gaps) >= 0.24, gaps  # the new tick period is in force (it was 0.1 s)

            # Needs a restart: nothing applied, each changed setting named with its status.
            p.raw["engine"] = {"tick_s": 0.1, "batch_max": 64, "telemetry_queue": 500}
            p.raw["status"]["port"] = p.http_port + 1
            p.write(cfg_path)
            rec = await sighup_and_wait(d, 2)
            assert rec["result"] == "needs_restart"
            assert {x["setting"]: x["status"] for x in rec["settings"]} == {
                "engine.tick_s": "waits for the restart",
                "engine.telemetry_queue": "needs restart",
                "status.port": "needs restart",
            }
            assert d.cfg.engine.tick_s == 0.25 and d.cfg.status.port == p.http_port  # the running config kept

            # Invalid: rejected with the problems, nothing changes.
            cfg_path.write_text(cfg_path.read_text().replace('zone = "bay-2"', 'zone = "bay-9"', 1))
            rec = await sighup_and_wait(d, 3)
            assert rec["result"] == "rejected" and any("bay-9" in x for x in rec["problems"])
            assert d.cfg.engine.tick_s == 0.25
            assert p.relay.coils[PERMISSIVE]
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
