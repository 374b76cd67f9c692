"""sd_notify over a real unix datagram socket; SIGTERM; a stuck engine stops the watchdog pings."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.app.daemon import Daemon
from gateway.app.sdnotify import Notifier
from tests.support.notify import NotifySocket
from tests.support.plant import HORN, IGNITION, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


def test_notifier_sends_datagrams_and_abstract_names(tmp_path: Path) -> None:
    ns = NotifySocket(tmp_path / "n")
    try:
        n = Notifier(ns.path)
        assert n.enabled and n.ready("hello") and n.watchdog() and n.stopping()
        deadline = time.monotonic() + 3
        while len(ns.lines()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ns.lines() == ["READY=1", "STATUS=hello", "WATCHDOG=1", "STOPPING=1"]
        assert Notifier("").enabled is False and Notifier("").ready() is False
        n.close()
    finally:
        ns.close()


async def test_run_ready_watchdog_then_sigterm_stopping_exit_0_outputs_safe(broker: Mosquitto, tmp_path: Path) -> None:
    ns = NotifySocket(tmp_path / "notify")
    async with plant(broker.port, tmp_path) as p:
        cfg = p.write(tmp_path / "gw.toml")
        env = {**os.environ, "NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.app.cli", "run", "--config", str(cfg), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_for(lambda: "READY=1" in ns.lines(), 20, what="READY=1")
            await wait_for(lambda: len(ns.times("WATCHDOG=1")) >= 3, 10, what="watchdog pings")
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert "STOPPING=1" in ns.lines()
        assert p.relay.coils[:4] == [False, False, False, False]
        pings = ns.times("WATCHDOG=1")
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.0  # at least every WatchdogSec/2
    ns.close()


async def test_stuck_engine_stops_watchdog_pings_and_relay_heartbeats(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine task hangs (an await that never returns) while the event loop lives on."""
    ns = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config(), notifier=Notifier(ns.path))
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 10)
            await wait_for(lambda: len(ns.times("WATCHDOG=1")) >= 3, 5)
            hang = asyncio.Event()
            real_get = d.inbox.get

            async def stuck(wait_s: float):  # type: ignore[no-untyped-def]
                await hang.wait()  # never set: the engine is stuck here
                return await real_get(wait_s)

            monkeypatch.setattr(d.inbox, "get", stuck)
            stalled_at = time.monotonic()
            # The relay module's own watchdog (1000 ms) drops the coils by itself ...
            await wait_for(lambda: p.relay.watchdog_tripped, 5, what="module watchdog trip")
            assert not any(p.relay.coils[i] for i in (PERMISSIVE, HORN, IGNITION))
            assert [c.cause for c in p.relay.changes if c.coil == PERMISSIVE][-1] == "watchdog"
            # ... while the event loop is alive: the status server still answers, and says the truth.
            from gateway.app.view import ENGINE_STALLED_S

            await wait_for(lambda: (d.engine_age_s() or 0) > ENGINE_STALLED_S, 5, what="engine stalled past the limit")
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{p.http_port}/healthz") as r:
                assert r.status == 503 and (await r.json())["engine_age_s"] > 1.0
            # ... and no WATCHDOG=1 came since the engine stalled (systemd would kill us).
            await asyncio.sleep(0)  # let the receiver thread catch up with anything already sent
            late = [t for t in ns.times("WATCHDOG=1") if t > stalled_at + 0.25]
            assert late == []
        finally:
            d.request_stop()
            await asyncio.wait_for(run, 15)
    ns.close()
