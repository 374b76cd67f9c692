"""The daemon's readings arrive in a real VictoriaMetrics through the InfluxDB line protocol."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app.daemon import Daemon
from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for
from tests.support.victoria import victoria

pytestmark = pytest.mark.slow


async def test_gas_readings_are_written_and_read_back(broker: Mosquitto, tmp_path: Path) -> None:
    with victoria() as vm:
        async with plant(broker.port, tmp_path) as p:
            p.raw["tsdb"] = {"url": vm.url, "flush_interval_s": 0.2}
            d = Daemon(p.config())
            run = asyncio.create_task(d.run())
            try:
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
                p.tank.set_value("o2", 19.7)

                async def seen() -> bool:
                    series = await asyncio.to_thread(vm.export, '{__name__="gas_o2",signal="t101_o2"}')
                    return any(abs(v - 19.7) < 1e-6 for s in series for v in s["values"])

                await wait_for(seen, 20, interval=0.5, what="O2 19.7 in VictoriaMetrics")
                series = await asyncio.to_thread(vm.export, '{__name__="gas_o2",signal="t101_o2"}')
                labels = series[0]["metric"]
                assert (
                    labels["zone"] == "tank-t101" and labels["site"] == "demo-plant" and labels["gateway"] == "gw-demo"
                )
                assert d.tsdb is not None and d.tsdb.status().connected
            finally:
                d.request_stop()
                assert await asyncio.wait_for(run, 20) == 0
