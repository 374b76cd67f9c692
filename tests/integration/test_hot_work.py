"""The hot-work interlock over the real protocols, with the daemon as a real process.

Modbus gas simulator (bay 2), BLE badges through bleak against the mock BlueZ, a signed
permit (Ed25519, as the ledger signs it), signed face events (HMAC) posted by a simulated
terminal, and the relay module simulator with its host watchdog. Release happens; LEL
rising drops the relay within one poll period + 50 ms; the operator walking out drops it;
kill -9 of the daemon lets the module's own watchdog drop the coil within its timeout; after
a restart the relay stays off until every condition holds again (a new face verification).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from firmware_sim.ble_badges import MockBluezBadges
from firmware_sim.face_terminal import FaceTerminalSim
from tests.support.hotwork import WELDER, Crew, face, setup_config
from tests.support.plant import IGNITION, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5


async def start_daemon(cfg: Path, bus: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.app.cli", "--log-level", "warning", "run", "--config", str(cfg),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def checklist(port: int) -> dict[str, bool]:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
            s = await r.json()
    except aiohttp.ClientError:
        return {}
    permits = [x for x in s.get("permits", []) if x["id"] == "HW-7"]
    return {c["condition"]: c["ok"] for c in permits[0].get("checklist", [])} if permits else {}


async def test_release_drop_on_lel_walk_out_kill9_and_restart(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    bus = os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    async with plant(broker.port, tmp_path) as p:
        cfg = setup_config(p, tmp_path)
        p.bay.set_dates(int(time.time()) - 3600, int(time.time()) - 30 * 86400)  # bump-tested today, calibrated
        crew = Crew(bluez)
        crew_task = asyncio.create_task(crew.run())
        term = FaceTerminalSim("ft-bay2", "hmac-sha256", bytes(range(32)))
        proc = await start_daemon(cfg, bus)
        try:
            # Everything but the face holds: no release yet.
            await wait_for(lambda: checklist(p.http_port), 20, interval=0.3, what="permit loaded and checklist shown")
            await wait_for(
                lambda: _ok_except_face(checklist(p.http_port)), 15, interval=0.3, what="all but the face hold"
            )
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="ignition released")

            # LEL rises past the hot-work limit: the relay drops within one poll period + 50 ms.
            t0 = time.monotonic()
            p.bay.set_value("lel", 7.0)
            await wait_for(lambda: not p.relay.coils[IGNITION], 5, what="drop on LEL")
            drop = next(c for c in reversed(p.relay.changes) if c.coil == IGNITION and not c.value)
            assert drop.at - t0 <= POLL_S + 0.05, f"drop took {1000 * (drop.at - t0):.0f} ms"
            p.bay.set_value("lel", 0.0)

            # Re-arm needs a new face; then the operator walks out: drop.
            await steps_pass(p.http_port, 3 * int(POLL_S / 0.1))  # three polls' worth of engine ticks
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released again after a fresh face")
            crew.present.discard(WELDER[0])
            await wait_for(lambda: not p.relay.coils[IGNITION], 10, what="drop when the operator walks out")
            crew.present.add(WELDER[0])
            await wait_for(lambda: _ok_except_face(checklist(p.http_port)), 15, interval=0.3)
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released again")

            # kill -9: the relay module's own watchdog drops the coil within its timeout (1 s).
            t_kill = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await wait_for(lambda: not p.relay.coils[IGNITION], 3, what="module watchdog drop")
            wd = next(c for c in reversed(p.relay.changes) if c.coil == IGNITION and not c.value)
            assert wd.cause == "watchdog" and wd.at - t_kill <= 1.0 + 0.3

            # Restart: the relay stays off until every condition holds again (a new face).
            proc = await start_daemon(cfg, bus)
            await wait_for(lambda: _ok_except_face(checklist(p.http_port)), 20, interval=0.3)
            await steps_pass(p.http_port, 10)  # the engine decided again with everything but the face
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released after restart and a new face")
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 15)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            crew_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await crew_task
        assert not p.relay.coils[IGNITION]


async def steps_pass(port: int, n: int) -> None:
    """`n` more engine steps of the daemon on `port` (absence proven by steps, not by time)."""

    async def steps() -> int:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
            return int((await r.json())["engine"]["steps"])

    start = await steps()

    async def done() -> bool:
        return await steps() >= start + n

    await wait_for(done, 10, interval=0.05, what=f"{n} engine steps")


async def _ok_except_face(c: Any) -> bool:
    items = await c
    return bool(items) and all(ok for name, ok in items.items() if name not in ("face_verified", "rearm"))
