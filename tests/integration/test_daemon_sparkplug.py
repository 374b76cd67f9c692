"""The daemon as a Sparkplug B edge node: births per zone, data on change, a valid stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app.daemon import Daemon
from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for
from tests.support.sparkplug_host import SparkplugHost

pytestmark = pytest.mark.slow


async def test_daemon_births_zones_and_sends_gas_changes(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path) as p, SparkplugHost(broker.url, "plant") as host:
        p.raw["sparkplug"] = {"enabled": True, "group": "plant"}
        d = Daemon(p.config())
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
            await wait_for(lambda: len(host.of("DBIRTH")) >= 2, 10, what="a DBIRTH per zone")
            nbirth = host.of("NBIRTH")[0]
            assert nbirth.seq == 0 and nbirth.value("Properties/version")
            assert {m.device for m in host.of("DBIRTH")} == {"tank-t101", "bay-2"}
            p.tank.set_value("o2", 19.0)

            def data(name: str) -> list[object]:
                """Values of one metric in the tank's DDATA, aliases resolved through its DBIRTH."""
                return [v for m in host.of("DDATA", "tank-t101") for k, v in host.decoded(m).items() if k == name]

            await wait_for(lambda: any(abs(float(v) - 19.0) < 1e-3 for v in data("o2/t101_o2")), 10, what="O2 DDATA")  # type: ignore[arg-type]
            await wait_for(lambda: True in data("zone/evacuate"), 10, what="zone/evacuate true")
            assert host.violations("gw-demo") == []
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
        await wait_for(lambda: bool(host.of("NDEATH")), 10, what="NDEATH on clean stop")
