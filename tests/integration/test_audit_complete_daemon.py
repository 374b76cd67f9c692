"""Every safety-relevant event is in the audit chain, whatever the ledger's hazard
de-duplication does (issue 18.1): repeated evacuations each leave a start and an end, alarm
trips, acknowledgements and clears, silences and output faults are records of their own, and
the chain verifies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.app.daemon import Daemon
from gateway.core.clock import iso
from gateway.ledger.audit import verify
from rules.events import Ack, Silence
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x)["record"] for x in path.read_text().splitlines()]


async def test_three_evacuations_each_leave_their_records_despite_hazard_deduplication(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config())
        audit = d.state_dir / "audit.jsonl"
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15, what="running")
            for loop in range(3):
                p.tank.set_value("o2", 19.0)
                await wait_for(lambda: p.relay.coils[HORN], 5, what=f"evacuate {loop}")
                d.inbox.put(Silence("tank-t101", "op-1", iso(d.clock.utc())))
                await wait_for(lambda: not p.relay.coils[HORN], 5, what=f"silenced {loop}")
                p.tank.set_value("o2", 20.9)
                await wait_for(lambda: d.state.signals["t101_o2"].value > 20.5, 5, what=f"back in range {loop}")
                d.inbox.put(Ack("*", "op-1", "operator", iso(d.clock.utc()), "tank-t101"))
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what=f"cleared {loop}")
            assert d.state.hazards.suppressed > 0  # the ledger saw the repeats de-duplicated ...

            def ends() -> int:
                return sum(1 for r in records(audit) if r["kind"] == "evacuation" and r["active"] is False)

            await wait_for(lambda: ends() >= 3, 10, what="three evacuation ends audited")
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
    recs = records(audit)
    evac = [r["active"] for r in recs if r["kind"] == "evacuation"]
    assert evac.count(True) >= 3 and evac.count(False) >= 3  # ... the chain did not
    o2 = [r["severity"] for r in recs if r["kind"] == "alarm" and r["signal"] == "t101_o2"]
    assert o2.count("evacuate") >= 3 and o2.count("normal") >= 3
    assert sum(1 for r in recs if r["kind"] == "zone_silenced") == 3
    assert sum(1 for r in recs if r["kind"] == "alarm" and r.get("acked_by") == "op-1") >= 3
    assert verify(audit).ok
