"""A small simulated plant for daemon tests: the demo config, its simulators, a broker."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.modbus_devices import GasDetectorSim, RelayModuleSim
from gateway.config import GatewayConfig
from gateway.loader import parse
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"

PERMISSIVE, HORN, BEACON, IGNITION = 0, 1, 2, 3
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
        path.write_text(_to_toml(self.raw))
        return path


def raw_config(tank: int, bay: int, relay: int, mqtt_port: int, http_port: int, state: Path) -> dict[str, Any]:
    raw = tomllib.loads(DEMO.read_text())
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


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _to_toml(raw: dict[str, Any]) -> str:
    """Enough TOML for our config shape: tables of scalars/inline values and arrays of tables."""
    out: list[str] = []
    for key, v in raw.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"[[{key}]]")
                out += [f"{k} = {_val(x)}" for k, x in item.items()]
                out.append("")
        elif isinstance(v, dict):
            out.append(f"[{key}]")
            out += [f"{k} = {_val(x)}" for k, x in v.items()]
            out.append("")
        else:
            out.insert(0, f"{key} = {_val(v)}")
    return "\n".join(out)
