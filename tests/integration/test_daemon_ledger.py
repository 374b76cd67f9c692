"""The daemon and the central ledger: signed permits are pulled and used; hazards are delivered once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from firmware_sim.ledger import ReferenceLedger
from firmware_sim.permits import approval, competency, permit_doc, person
from gateway.app.daemon import Daemon
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


def permit(now: float) -> dict[str, object]:
    """HW-9 for bay 2, active for the hour, no gas test on it."""
    return permit_doc(
        "HW-9",
        "bay-2",
        site_id="demo-plant",
        valid_from=now - 60,
        valid_to=now + 3600,
        people=[person("E1", "operator"), person("E2", "fire_watch"), person("E9", "issuer")],
        approvals=[approval("E9", now - 300)],
        competencies=[competency("E1", "C-1", now + 86400)],
    )


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


async def test_a_refused_record_is_listed_as_parked_and_an_admin_retry_delivers_it(
    broker: Mosquitto, tmp_path: Path
) -> None:
    import aiohttp

    from gateway.status.auth import hash_password

    ledger = ReferenceLedger(port=0)
    await ledger.start()
    try:
        async with plant(broker.port, tmp_path / "state") as p:
            p.raw["ledger"] = {"url": ledger.url}
            p.raw["status"]["users"] = [{"user": "ada", "role": "admin", "password_hash": hash_password("pw-ada-1")}]
            d = Daemon(p.config())
            run = asyncio.create_task(d.run())
            base = f"http://127.0.0.1:{p.http_port}"
            try:
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
                ledger.reject_next(1, status=422)  # the first hazard is refused: parked, not retried
                p.tank.set_value("o2", 19.0)

                async def parked() -> list[dict[str, object]]:
                    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/state") as r:
                        return list((await r.json())["outbox"]["parked_records"])

                found: list[dict[str, object]] = []

                async def some_parked() -> bool:
                    found[:] = await parked()
                    return bool(found)

                await wait_for(some_parked, 15, interval=0.3, what="a parked record on the page")
                rid = found[0]["id"]
                assert found[0]["stream"] == "hazards" and found[0]["reason"]
                jar = aiohttp.CookieJar(unsafe=True)
                async with aiohttp.ClientSession(cookie_jar=jar) as http:
                    async with http.post(f"{base}/api/login", json={"user": "ada", "password": "pw-ada-1"}) as r:
                        csrf = (await r.json())["csrf"]
                    async with http.post(
                        f"{base}/api/outbox/retry", json={"id": rid}, headers={"X-CSRF-Token": csrf}
                    ) as r:
                        assert r.status == 202, await r.text()
                await wait_for(
                    lambda: len([x for x in ledger.records("hazards") if x.get("zone") == "tank-t101"]) >= 2, 15
                )

                async def none_parked() -> bool:
                    return not await parked()

                await wait_for(none_parked, 15, interval=0.3, what="parked list emptied")
            finally:
                d.request_stop()
                assert await asyncio.wait_for(run, 20) == 0
    finally:
        await ledger.stop()
