"""The daemon's engine loop under a telemetry flood: readings go through in bounded batches, and a
gas reading that arrives meanwhile is applied after at most the batch in progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from gateway.app.daemon import Daemon
from rules.events import Reading
from tests.support.plant import plant
from tests.support.procs import free_port, wait_for

N_TELEMETRY = 3_000


async def test_gas_reading_overtakes_a_telemetry_flood(tmp_path: Path) -> None:
    async with plant(free_port(), tmp_path / "state") as p:
        p.raw["engine"]["batch_max"] = 100
        p.raw["zones"].append({"id": "hall", "kind": "general"})
        p.raw["devices"].append({
            "id": "load", "transport": "mqtt", "poll_s": 1.0,
            "points": [{"signal": f"t{i}", "topic": f"hall/t{i}", "json_path": "value"} for i in range(50)],
        })  # fmt: skip
        p.raw["signals"] += [
            {"id": f"t{i}", "quantity": "temperature", "unit": "degC", "zone": "hall"} for i in range(50)
        ]
        d = Daemon(p.config())
        order: list[tuple[str, int]] = []
        real_apply, real_batch = d.apply, d.apply_readings
        gas = Reading("t101_o2", 20.9, time.monotonic())

        def apply(ev: object) -> None:
            if isinstance(ev, Reading):
                order.append((ev.signal, 1))
            real_apply(ev)  # type: ignore[arg-type]

        def apply_readings(evs: list[Reading]) -> None:
            order.append(("batch", len(evs)))
            if len(order) == 1:
                d.inbox.put(gas)  # arrives while the flood is being worked off
            real_batch(evs)

        d.apply, d.apply_readings = apply, apply_readings  # type: ignore[method-assign]
        now = time.monotonic()
        for i in range(N_TELEMETRY):
            d.inbox.put(Reading(f"t{i % 50}", 20.0 + i / 1000, now))
        engine = asyncio.create_task(d._engine())
        try:
            await wait_for(lambda: d.readings_applied >= N_TELEMETRY + 1, 10, what="flood worked off")
        finally:
            engine.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await engine
    batches = [n for kind, n in order if kind == "batch"]
    assert max(batches) <= 100 and sum(batches) == N_TELEMETRY
    assert order.index(("t101_o2", 1)) == 1  # right after the batch that was running when it came
    assert d.state.signals["t49"].value == 20.0 + (N_TELEMETRY - 1) / 1000  # the last reading wins
    assert d.inbox.dropped == 0 and d.rejected_events == 0
