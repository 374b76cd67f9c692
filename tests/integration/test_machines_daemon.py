"""The daemon with condition monitoring wired: waveforms over MQTT + 4-20 mA over Modbus TCP ->
engine -> machine_run coil on the relay module, retained MQTT alarm, status JSON and trend API."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.modbus_devices import TemperatureTransmitterSim
from firmware_sim.mqtt_sensors import Tone, VibrationSensorSim
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.daemon import running
from tests.support.plant import plant
from tests.support.procs import Mosquitto, wait_for

RUN = 4
WAVE = "plant/pump/p201/waveform"
TRIP_TOPIC = "edge/demo-plant/gw-demo/alarm/pump-room/machine:p201:vibration_trip"


def tone(rms: float, f: float = 50.0) -> Tone:
    return Tone(f, rms / 1000.0 * math.sqrt(2) * 2 * math.pi * f)


def add_machine(raw: dict, temp_port: int) -> None:
    raw["zones"].append({"id": "pump-room", "kind": "general"})
    raw["devices"] += [
        {"id": "temp-p201", "transport": "modbus_tcp", "port": temp_port, "poll_s": 0.2,
         "points": [{"signal": "p201_temp", "table": "input", "address": 0, "type": "uint16", "scale": 0.001,
                     "current_loop": [-50.0, 200.0]}]},
        {"id": "vib-p201", "transport": "mqtt", "poll_s": 1.0,
         "points": [{"signal": "p201_vib", "topic": WAVE, "waveform": True}]},
    ]
    raw["signals"] += [
        {"id": "p201_vib", "quantity": "vibration", "unit": "mm/s", "zone": "pump-room"},
        {"id": "p201_temp", "quantity": "temperature", "unit": "degC", "zone": "pump-room"},
    ]
    raw["outputs"].append({"id": "p201_run", "device": "relay-1", "coil": RUN, "kind": "machine_run",
                           "zone": "pump-room"})
    raw["machines"] = [{"id": "p201", "zone": "pump-room", "vibration_signal": "p201_vib",
                        "temperature_signal": "p201_temp", "stop_output": "p201_run", "baseline_learn_count": 3}]


async def test_zone_d_drops_the_run_coil_and_ack_restores_it(broker: Mosquitto, tmp_path: Path) -> None:
    temp = TemperatureTransmitterSim(ranges=((-50.0, 200.0),))
    temp.set_value("t0", 70.0)
    await temp.start()
    sim = VibrationSensorSim(broker.url, waveform_topic=WAVE, tones=(tone(1.0),), interval_s=0.25)
    try:
        async with plant(broker.port, tmp_path) as p:
            add_machine(p.raw, temp.port)
            async with running(p, broker) as (d, sub):
                await sim.start()
                await wait_for(lambda: p.relay.coils[RUN], 10, what="run permissive released")
                await wait_for(lambda: (tmp_path / "baselines.json").exists(), 5, what="baseline persisted")
                assert json.loads((tmp_path / "baselines.json").read_text())["p201"]["value"] == pytest.approx(
                    1.0, rel=0.02)
                sim.tones = (tone(6.0),)
                await wait_for(lambda: not p.relay.coils[RUN], 5, what="zone D stops the machine")
                await wait_for(lambda: sub.last.get(TRIP_TOPIC, {}).get("severity") == "alarm", 5, what="mqtt")
                assert sub.last[TRIP_TOPIC]["evidence"]["iso_zone"] == "D"
                async with aiohttp.ClientSession() as http:
                    base = f"http://127.0.0.1:{p.http_port}"
                    async with http.get(f"{base}/api/state") as r:
                        (m,) = (await r.json())["condition"]["machines"]
                    assert (m["id"], m["level"], m["stopped"], m["iso_zone"]) == ("p201", "trip", True, "D")
                    assert m["analysis"]["samples"] == 8192
                    async with http.get(f"{base}/api/trends/p201_vib") as r:
                        t = await r.json()
                    assert t["iso"]["cd"] == 4.5 and t["minutes"] and t["minutes"][-1]["max"] > 4.5
                    async with http.get(f"{base}/api/trends/nope") as r:
                        assert r.status == 404
                sim.tones = (tone(1.0),)
                await wait_for(lambda: d.state.condition.machines["p201"].vibration.value < 1.2, 5, what="calm")
                await asyncio.sleep(0)
                assert not p.relay.coils[RUN]  # latched
                d.inbox.put(Ack("p201", "op-1", "operator", iso(d.clock.utc())))
                await wait_for(lambda: p.relay.coils[RUN], 5, what="released by ack")
                await wait_for(lambda: sub.last[TRIP_TOPIC]["severity"] == "normal", 5)
    finally:
        await sim.stop()
        await temp.stop()
