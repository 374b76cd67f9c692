"""The daemon and the central ledger: signed permits are pulled and used; hazards are delivered once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from firmware_sim.ledger import ReferenceLedger
from gateway.daemon import Daemon
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


def permit(now: float) -> dict[str, object]:
    return {
        "permit_id": "HW-9",
        "type": "hot_work",
        "grade": "second",
        "site_id": "demo-plant",
        "zone_id": "bay-2",
        "state": "active",
        "valid_from": int(now - 60),
        "valid_to": int(now + 3600),
        "people": [
            {"id": "E1", "role": "operator"},
            {"id": "E2", "role": "fire_watch"},
            {"id": "E9", "role": "issuer"},
        ],
        "gas_tests": [],
        "approvals": [{"signer": "E9", "role": "issuer", "at": int(now - 300), "signature": "x"}],
        "competencies": [{"person": "E1", "certificate_id": "C-1", "kind": "hot_work", "expires": int(now + 86400)}],
    }


async def test_permits_pulled_and_hazards_delivered(broker: Mosquitto, tmp_path: Path) -> None:
    ledger = ReferenceLedger(port=0)
    await ledger.start()
    try:
        ledger.add_permit(permit(time.time()))
        (tmp_path / "ledger.pub").write_bytes(ledger.public_key)
        async with plant(broker.port, tmp_path / "state") as p:
            p.raw["ledger"] = {"url": ledger.url, "public_key_file": str(tmp_path / "ledger.pub"), "permit_poll_s": 1.0}
            d = Daemon(p.config())
            run = asyncio.create_task(d.run())
            try:
                await wait_for(lambda: "HW-9" in d.state.plant.permits, 15, what="permit pulled from the ledger")
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
                p.tank.set_value("o2", 19.0)
                await wait_for(lambda: p.relay.coils[HORN], 5)

                def delivered() -> list[dict[str, object]]:
                    return [r for r in ledger.records("hazards") if r.get("zone") == "tank-t101"]

                await wait_for(lambda: len(delivered()) >= 2, 15, what="gas + evacuation hazards at the ledger")
                cats = sorted(str(r["category"]) for r in delivered())
                assert cats == ["confined_space", "gas"]
                assert all(r["gateway"] == "gw-demo" and r["site"] == "demo-plant" for r in delivered())
            finally:
                d.request_stop()
                assert await asyncio.wait_for(run, 20) == 0
    finally:
        await ledger.stop()
