"""A small simulated plant for daemon tests: the demo config, its simulators, a broker."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.modbus_devices import GasDetectorSim, RelayModuleSim
from gateway.config import GatewayConfig
from gateway.config.loader import parse
from gateway.config.tomlw import dumps
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"

PERMISSIVE, HORN, BEACON, IGNITION, TROUBLE = 0, 1, 2, 3, 5
ALARM_TOPIC = "edge/demo-plant/gw-demo/alarm/tank-t101/t101_o2"


@dataclass
class Plant:
    tank: GasDetectorSim
    bay: GasDetectorSim
    relay: RelayModuleSim
    raw: dict[str, Any]
    http_port: int

    def config(self) -> GatewayConfig:
        return parse(self.raw, "test-plant", DEMO.parent)

    def write(self, path: Path) -> Path:
        path.write_text(dumps(self.raw))
        return path


def raw_config(tank: int, bay: int, relay: int, mqtt_port: int, http_port: int, state: Path) -> dict[str, Any]:
    raw = tomllib.loads(DEMO.read_text())
    # The demo's pump (condition monitoring) is left out here: tests/integration/test_machines_daemon.py covers it.
    raw["zones"] = [z for z in raw["zones"] if z["id"] != "pump-room"]
    raw["devices"] = [d for d in raw["devices"] if d["id"] not in ("temp-p201", "vib-p201")]
    raw["signals"] = [x for x in raw["signals"] if x["zone"] != "pump-room"]
    raw["outputs"] = [o for o in raw["outputs"] if o["zone"] != "pump-room"]
    raw.pop("machines", None)
    ports = {"gas-t101": tank, "gas-bay2": bay, "relay-1": relay}
    for d in raw["devices"]:
        d["port"] = ports[d["id"]]
    raw["mqtt"]["url"] = f"mqtt://127.0.0.1:{mqtt_port}"
    raw["status"]["port"] = http_port
    raw["state"]["dir"] = str(state)
    return raw


@asynccontextmanager
async def plant(mqtt_port: int, state: Path) -> AsyncIterator[Plant]:
    tank, bay, relay = GasDetectorSim(), GasDetectorSim(), RelayModuleSim(n=8)
    for s in (tank, bay, relay):
        await s.start()
    try:
        http = free_port()
        yield Plant(tank, bay, relay, raw_config(tank.port, bay.port, relay.port, mqtt_port, http, state), http)
    finally:
        for s in (tank, bay, relay):
            await s.stop()
