"""The first real safety loop, over real protocols: Modbus TCP simulators, a real mosquitto.

O2 < 19.5 %vol raises a latched alarm, de-energizes the relay module's permissive coil and
publishes the alarm retained; back in range plus an acknowledgement clears it. A stale or
failed detector is an alarm too, never "normal".
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from gateway.app.daemon import Daemon
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.daemon import running
from tests.support.plant import ALARM_TOPIC, BEACON, HORN, IGNITION, PERMISSIVE, Plant, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


def coil(p: Plant, i: int) -> bool:
    return p.relay.coils[i]


async def test_o2_drop_latches_alarm_drops_relay_publishes_retained_and_ack_clears(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: coil(p, PERMISSIVE), 10, what="permissive energized with good gas")
        assert not coil(p, HORN) and not coil(p, IGNITION)

        p.tank.set_value("o2", 19.0)
        await wait_for(lambda: not coil(p, PERMISSIVE) and coil(p, HORN) and coil(p, BEACON), 5, what="trip")
        await wait_for(lambda: sub.last.get(ALARM_TOPIC, {}).get("severity") == "evacuate", 5, what="mqtt alarm")
        alarm = sub.last[ALARM_TOPIC]
        assert alarm["levels"]["low"] == {"active": True, "latched": True}
        assert alarm["gateway"] == "gw-demo" and alarm["seq"] > 0 and "utc" in alarm and "age_s" in alarm
        assert any(t == ALARM_TOPIC for t, _, _ in sub.log)

        # Back in range: still latched, the permissive stays off.
        p.tank.set_value("o2", 20.9)
        await wait_for(lambda: sub.last[ALARM_TOPIC]["levels"].get("low", {}).get("active") is False, 5)
        assert not coil(p, PERMISSIVE)
        assert sub.last[ALARM_TOPIC]["severity"] == "evacuate"

        d.inbox.put(Ack("*", "op-1", "operator", iso(d.clock.utc()), "tank-t101"))
        await wait_for(lambda: coil(p, PERMISSIVE) and not coil(p, HORN), 5, what="cleared by ack")
        await wait_for(lambda: sub.last[ALARM_TOPIC]["severity"] == "normal", 5)
        assert sub.last[ALARM_TOPIC]["acked_by"] == "op-1"

    # A late subscriber gets the alarm state as a retained message.
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="late") as c:
        await c.subscribe(ALARM_TOPIC, qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                assert m.retain and json.loads(bytes(m.payload))["severity"] == "normal"  # type: ignore[arg-type]
                break


async def test_ack_while_still_low_does_not_clear(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, _):
        await wait_for(lambda: coil(p, PERMISSIVE), 10)
        p.tank.set_value("o2", 18.5)
        await wait_for(lambda: not coil(p, PERMISSIVE), 5)
        d.inbox.put(Ack("*", "op-1", "operator", iso(d.clock.utc()), "tank-t101"))
        await wait_for(lambda: d.state.signals["t101_o2"].acked_by == "op-1", 5)
        await wait_for(lambda: d.state.steps > 0 and len(p.tank.requests) > 6, 5)
        assert not coil(p, PERMISSIVE) and coil(p, HORN)


@pytest.mark.parametrize("fault", ["drop", "status_fault"])
async def test_failed_or_stale_detector_is_an_alarm_never_normal(broker: Mosquitto, tmp_path: Path, fault: str) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: coil(p, PERMISSIVE), 10)
        if fault == "drop":
            p.tank.set_drop(True)
        else:
            p.tank.set_status(fault=True)
        await wait_for(lambda: not coil(p, PERMISSIVE), 5, what="permissive dropped on detector failure")
        await wait_for(lambda: (sub.last.get(ALARM_TOPIC) or {}).get("fault") is not None, 5)
        assert sub.last[ALARM_TOPIC]["severity"] != "normal"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
                state = await r.json()
        tank = next(z for z in state["zones"] if z["id"] == "tank-t101")
        assert tank["state"] in ("fault", "alarm") and tank["state"] != "normal"
        o2 = next(s for s in state["signals"] if s["id"] == "t101_o2")
        assert o2["quality"] != "good"

        # Recovery alone does not clear a latched fault; an acknowledgement does.
        p.tank.set_drop(False)
        p.tank.set_status()
        await wait_for(lambda: d.state.signals["t101_o2"].fault.active is False, 5)
        assert not coil(p, PERMISSIVE)
        d.inbox.put(Ack("*", "op-1", "operator", iso(d.clock.utc()), "tank-t101"))
        await wait_for(lambda: coil(p, PERMISSIVE), 5)


async def test_api_state_shows_zones_signals_alarms_outputs(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, _):
        await wait_for(lambda: coil(p, PERMISSIVE), 10)
        # The coil is set at the module before the gateway's read-back returns: wait for that too.
        await wait_for(lambda: d.outputs.observed.get("t101_permissive") is True, 5, what="read-back")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{p.http_port}/api/state") as r:
                assert r.status == 200
                state = await r.json()
            async with http.get(f"http://127.0.0.1:{p.http_port}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
        assert {z["id"] for z in state["zones"]} == {"tank-t101", "bay-2"}
        o2 = next(s for s in state["signals"] if s["id"] == "t101_o2")
        assert o2["value"] == pytest.approx(20.9) and o2["quality"] == "good" and o2["unit"] == "%vol"
        assert state["alarms"] == []
        perm = next(o for o in state["outputs"] if o["id"] == "t101_permissive")
        assert perm["commanded"] is True and perm["observed"] is True
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{p.http_port}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)  # every sample line parses
        assert samples["edge_up"] == 1.0
        assert samples['edge_readings_total{signal="t101_o2",quality="good"}'] >= 1
        assert samples['edge_output_energized{output="t101_permissive"}'] == 1
        assert samples["edge_engine_step_seconds_count"] > 0
        assert samples['edge_output_write_seconds_bucket{le="+Inf"}'] >= 1
        assert "edge_outbox_depth" in samples and "edge_mqtt_connected" in samples


async def test_output_readback_mismatch_forces_everything_safe(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, _):
        await wait_for(lambda: coil(p, PERMISSIVE), 10)
        # The relay module's watchdog trips by itself (as after a hang): coils drop and are held.
        p.relay.set_reg("holding", 1, 1)  # 1 ms timeout: the next heartbeat gap trips it
        await wait_for(lambda: p.relay.watchdog_tripped, 5)
        await wait_for(lambda: bool(d.state.output_fault), 5, what="read-back mismatch seen")
        # The bank writes one coil at a time (toward safe first): wait for all of them, not the first.
        await wait_for(lambda: all(d.outputs.commanded[o.id] == o.safe for o in d.cfg.outputs), 5,
                       what="everything commanded safe")  # fmt: skip
        # Held safe while the fault is latched, even though the gas is good.
        await wait_for(lambda: d.state.steps > 50, 5)
        assert d.outputs.commanded["t101_permissive"] is False


async def test_outputs_written_safe_before_anything_else_and_on_stop(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p:
        p.relay.set_bit("coil", IGNITION, True)  # left energized by a previous owner
        p.relay.set_bit("coil", PERMISSIVE, True)
        async with running(p, broker) as (_d, _):
            first = [c for c in p.relay.changes if c.coil == IGNITION]
            assert first and first[0].value is False  # ignition dropped at start
            await wait_for(lambda: coil(p, PERMISSIVE), 10)
        assert p.relay.coils[:4] == [False, False, False, False]  # safe on the way out


async def test_stop_is_bounded_with_a_live_stream_and_a_task_that_ignores_cancel(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """A live SSE client or a misbehaving task must never keep the outputs from going safe."""
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config())

        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # the bug we guard against: a task that swallows cancellation

        d.extra_tasks.append(("stubborn[test]", stubborn))
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: coil(p, PERMISSIVE), 10)
            async with aiohttp.ClientSession() as http:
                stream = await http.get(f"http://127.0.0.1:{p.http_port}/api/events")
                assert stream.status == 200
                await stream.content.readuntil(b"\n\n")  # the first state event arrived
                t0 = asyncio.get_running_loop().time()
                d.request_stop()
                assert await asyncio.wait_for(run, 15) == 0
                assert asyncio.get_running_loop().time() - t0 < 5.0 + 4.0
                stream.close()
            assert p.relay.coils[:4] == [False, False, False, False]
        finally:
            release.set()  # let the stubborn task end so the test's loop can close
            if not run.done():
                run.cancel()
