"""Safety messages are never dropped: they wait in order (spilling to disk past a bound) and go out on reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiomqtt

from gateway.config import Mqtt
from gateway.core.clock import SystemClock
from gateway.northbound.mqtt_out import MqttOut
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
        # The broker is away: a connect attempt fails, and nothing is lost meanwhile.
        await wait_for(lambda: bool(out.last_error), 10, what="a failed connect attempt")
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


async def test_telemetry_goes_in_rounds_latest_value_and_alarms_do_not_wait(broker: Mosquitto) -> None:
    out = MqttOut(Mqtt(url=broker.url, telemetry_interval_s=0.4), "site", "gw", SystemClock())
    clock = SystemClock()
    seen: list[tuple[float, str, dict[str, object]]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as c:
        await c.subscribe("edge/site/gw/#", qos=1)
        runner = asyncio.create_task(out.run())

        async def watch() -> None:
            async for m in c.messages:
                seen.append((asyncio.get_running_loop().time(), m.topic.value, json.loads(bytes(m.payload))))  # type: ignore[arg-type]

        watcher = asyncio.create_task(watch())
        try:
            await wait_for(lambda: out.connected, 10)
            for i in range(100):
                out.telemetry("a", float(i), "degC", clock.monotonic())
            out.telemetry("b", 7.0, "ppm", clock.monotonic())
            await wait_for(lambda: sum("/telemetry/" in t for _, t, _ in seen) >= 2, 5, what="first round")
            for i in range(100, 110):
                out.telemetry("a", float(i), "degC", clock.monotonic())
            t_alarm = asyncio.get_running_loop().time()
            out.state("alarm", ("z", "a"), {"severity": "alarm"}, clock.monotonic())
            await wait_for(lambda: any("/alarm/" in t for _, t, _ in seen), 5, what="alarm")
            await wait_for(lambda: sum(t.endswith("/telemetry/a") for _, t, _ in seen) >= 2, 5, what="second round")
            # Nothing more can come: no reading is queued for a later round.
            await wait_for(lambda: out.pending == 0, 5, what="nothing left to send")
        finally:
            for task in (runner, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    a = [(at, body) for at, t, body in seen if t.endswith("/telemetry/a")]
    assert [body["value"] for _, body in a] == [99.0, 109.0]  # the latest value per round, nothing else
    assert a[1][0] - a[0][0] >= 0.3  # a round per interval (0.4 s; receive-side jitter allowed)
    alarm_at = next(at for at, t, _ in seen if "/alarm/" in t)
    assert alarm_at - t_alarm < 0.3 and alarm_at < a[1][0]  # the alarm did not wait for the round
    assert [body["value"] for _, t, body in seen if t.endswith("/telemetry/b")] == [7.0]
    assert out.telemetry_coalesced == 99 + 9
    assert {"gateway", "seq", "utc", "unit", "quality", "age_s"} <= set(a[0][1])
