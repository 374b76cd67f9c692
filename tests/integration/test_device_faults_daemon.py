"""A misbehaving Modbus device is that device's fault, never the daemon's end (issue 15.1).

Each test puts a `FaultyLink` between the real daemon and a simulated device and makes the
link misbehave the way the acceptance run's devices did: hang up on every request, refuse
connections, or go silent. The daemon must keep deciding (engine steps, other zones' outputs
unchanged), report the device down, and recover when the device behaves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.tcp_link import FaultyLink
from gateway.app.daemon import Daemon
from rules.events import Quality
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, have_browser
from tests.support.daemon import running
from tests.support.plant import ALARM_TOPIC, HORN, PERMISSIVE, Plant, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def linked(p: Plant, device: str) -> AsyncIterator[FaultyLink]:
    """Route `device` through a FaultyLink (in "pass" mode to start with)."""
    dev = next(d for d in p.raw["devices"] if d["id"] == device)
    link = FaultyLink(dev["port"])
    await link.start()
    dev["port"] = link.port
    try:
        yield link
    finally:
        await link.stop()


@contextlib.asynccontextmanager
async def daemon(p: Plant) -> AsyncIterator[tuple[Daemon, asyncio.Task[int]]]:
    d = Daemon(p.config())
    run = asyncio.create_task(d.run())
    try:
        await wait_for(lambda: d.ready or run.done(), 10, what="daemon ready")
        assert not run.done(), "the daemon ended at start"
        yield d, run
    finally:
        d.request_stop()
        assert await asyncio.wait_for(run, 20) == 0


async def steps_pass(d: Daemon, run: asyncio.Task[int], n: int) -> None:
    """`n` more engine steps happen, and the daemon is still running afterwards."""
    start = d.state.steps
    await wait_for(lambda: d.state.steps >= start + n or run.done(), 10, what=f"{n} engine steps")
    assert not run.done(), f"the daemon ended: {run.result() if not run.cancelled() else 'cancelled'}"


def bad(d: Daemon, signal: str) -> bool:
    return not d.state.signals[signal].good(d.clock.monotonic(), d.ecfg.signals[signal])


@pytest.mark.parametrize("mode", ["hangup", "refuse", "silent"])
async def test_gas_detector_that_misbehaves_is_its_zone_fault_not_the_daemons_end(
    broker: Mosquitto, tmp_path: Path, mode: str
) -> None:
    async with plant(broker.port, tmp_path) as p, linked(p, "gas-bay2") as link, daemon(p) as (d, run):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="tank permissive energized")
        await wait_for(lambda: not bad(d, "bay2_lel"), 10, what="bay-2 gas good through the link")

        await link.set_mode(mode)  # type: ignore[arg-type]
        if mode == "hangup":
            await wait_for(lambda: link.hangups >= 3, 20, what="three requests hung up on")
        await wait_for(lambda: "gas-bay2" in d.state.devices_down, 15, what="bay-2 detector reported down")
        assert bad(d, "bay2_lel") and bad(d, "bay2_o2")
        await steps_pass(d, run, 50)
        # The other zone is untouched: its permissive still energized, no horn.
        assert p.relay.coils[PERMISSIVE] and not p.relay.coils[HORN]
        assert d.outputs.commanded["t101_permissive"] is True

        await link.set_mode("pass")
        await wait_for(lambda: "gas-bay2" not in d.state.devices_down, 20, what="bay-2 detector recovered")
        await wait_for(lambda: d.state.signals["bay2_lel"].quality is Quality.GOOD, 10, what="readings good again")
        assert p.relay.coils[PERMISSIVE]


@pytest.mark.parametrize("mode", ["hangup", "refuse"])
async def test_relay_module_that_misbehaves_trips_outputs_safe_and_the_daemon_lives(
    broker: Mosquitto, tmp_path: Path, mode: str
) -> None:
    async with plant(broker.port, tmp_path) as p, linked(p, "relay-1") as link, daemon(p) as (d, run):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="tank permissive energized")

        await link.set_mode(mode)  # type: ignore[arg-type]
        if mode == "hangup":
            await wait_for(lambda: link.hangups >= 3, 20, what="three requests hung up on")
        # No heartbeat gets through: the module's own watchdog drops every output.
        await wait_for(lambda: p.relay.watchdog_tripped, 10, what="module watchdog tripped")
        await wait_for(lambda: bool(d.state.output_fault), 10, what="output fault latched")
        await steps_pass(d, run, 50)
        assert not any(p.relay.coils)

        await link.set_mode("pass")
        await wait_for(lambda: d.outputs.modules["relay-1"].ok is True, 20, what="module reachable again")
        await steps_pass(d, run, 20)


async def test_a_source_that_raises_any_exception_restarts_alone_and_its_device_is_down_meanwhile(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config())
        src = next(s for s in d.sources if s.spec.id == "gas-bay2")
        real_run, calls = src.run, []
        may_run = asyncio.Event()

        async def defective() -> None:
            calls.append(1)
            if len(calls) == 1:
                await real_run.__self__.poll_once()  # one good poll first: the device is up
                raise KeyError("a defect in the source, not a field fault")
            if not may_run.is_set():
                raise ValueError("still defective")
            await real_run()

        src.run = defective  # type: ignore[method-assign]
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: d.ready, 10, what="daemon ready")
            await wait_for(lambda: d.task_restarts["modbus[gas-bay2]"] >= 2, 15, what="two restarts")
            assert "gas-bay2" in d.state.devices_down
            assert d.task_faults["modbus[gas-bay2]"].startswith("ValueError")
            await steps_pass(d, run, 30)
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="the tank zone is unaffected")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{p.http_port}/metrics") as r:
                    text = await r.text()
                async with http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
                    tasks = (await r.json())["tasks"]
            assert 'edge_task_restarts_total{task="modbus[gas-bay2]"}' in text
            assert tasks[0]["task"] == "modbus[gas-bay2]" and tasks[0]["restarts"] >= 2
            # ... and the page's devices view says so, in a real browser.
            if have_browser():
                from playwright.async_api import async_playwright

                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                    try:
                        page = await browser.new_page()
                        await page.goto(f"http://127.0.0.1:{p.http_port}/#/devices")
                        item = page.locator('li[data-task="modbus[gas-bay2]"]')
                        await item.wait_for(timeout=15_000)
                        text = await item.inner_text()
                        assert "restarted" in text and "ValueError" in text, text
                    finally:
                        await browser.close()

            may_run.set()
            await wait_for(lambda: "gas-bay2" not in d.state.devices_down, 30, what="device up after the restart")
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0


async def test_a_sink_that_raises_is_counted_and_the_others_and_the_coils_go_on(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect in one northbound sink (here MQTT's retained states) inside the engine step: the
    coils still drop in that step, the audit chain still gets its records, the daemon lives."""
    async with plant(broker.port, tmp_path) as p, daemon(p) as (d, run):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")

        def broken(*args: object, **kw: object) -> None:
            raise RuntimeError("a defect in the MQTT sink")

        monkeypatch.setattr(d.mqtt, "state", broken)
        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: not p.relay.coils[PERMISSIVE] and p.relay.coils[HORN], 5, what="trip despite the sink")
        assert d.fanout.faults["mqtt"] >= 1 and d.fanout.last_error["mqtt"].startswith("RuntimeError")
        await steps_pass(d, run, 30)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{p.http_port}/metrics") as r:
                text = await r.text()
            async with http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
                sinks = {x["sink"]: x for x in (await r.json())["sinks"]}
        assert 'edge_sink_errors_total{sink="mqtt"}' in text and 'edge_sink_errors_total{sink="records"} 0' in text
        assert sinks["mqtt"]["errors"] >= 1 and sinks["records"]["errors"] == 0


async def test_a_sink_that_blocks_holds_nothing_back(broker: Mosquitto, tmp_path: Path) -> None:
    """The broker freezes (SIGSTOP: connections open, nothing answered): the gas alarm still drops
    the coil and sounds the horn; once the broker answers again the alarm is published."""
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            p.tank.set_value("o2", 19.0)
            await wait_for(lambda: not p.relay.coils[PERMISSIVE] and p.relay.coils[HORN], 5, what="trip, broker frozen")
            start = d.state.steps
            await wait_for(lambda: d.state.steps > start + 30, 5, what="engine steps with the broker frozen")
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        await wait_for(lambda: sub.last.get(ALARM_TOPIC, {}).get("severity") == "evacuate", 20, what="alarm published")


async def test_a_source_that_hangs_goes_stale_and_denies_only_its_zone(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config())
        src = next(s for s in d.sources if s.spec.id == "gas-bay2")
        hang = asyncio.Event()

        async def hung() -> None:
            await src.poll_once()  # one good poll, then the task hangs (never returns, never raises)
            await hang.wait()

        src.run = hung  # type: ignore[method-assign]
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: d.ready, 10, what="ready")
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="tank permissive energized")
            sig = d.ecfg.signals["bay2_lel"]
            await wait_for(lambda: not d.state.signals["bay2_lel"].fresh(d.clock.monotonic(), sig), 10,
                           what="bay-2 readings stale")  # fmt: skip
            assert bad(d, "bay2_lel")
            await steps_pass(d, run, 30)
            assert p.relay.coils[PERMISSIVE]  # the tank zone does not depend on bay 2
        finally:
            hang.set()
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
