"""Hot work in bay 2 of the simulated plant (tests.support.plant): the welder and the fire watch
with their BLE badges, a signed permit HW-7, a face terminal, and the permit's checklist as the
status API shows it. Used by the hot-work, faults and permit-revision integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.ledger.permit_codec import sign_permit
from firmware_sim.ble_badges import MockBluezBadges, ibeacon_frame
from firmware_sim.face_terminal import FaceTerminalSim, write_hmac_secret
from firmware_sim.permits import approval, competency, gas_test, permit_doc, person
from tests.support.plant import Plant

UUID = "e5ca1ade-f007-ba11-0000-000000000000"
WELDER, WATCH = ("E10", 10, "C0:00:00:00:00:10"), ("E20", 20, "C0:00:00:00:00:20")
"""(person id, iBeacon minor, badge MAC)."""


def permit_body(now_utc: float) -> dict[str, Any]:
    """HW-7 for bay 2, active from ten minutes ago for four hours, gas-tested five minutes ago."""
    return permit_doc(
        "HW-7",
        "bay-2",
        site_id="demo-plant",
        valid_from=now_utc - 600,
        valid_to=now_utc + 4 * 3600,
        people=[person(WELDER[0], "operator"), person(WATCH[0], "fire_watch"), person("E99", "issuer")],
        gas_tests=[gas_test(now_utc - 300, "E99", bump_at=now_utc - 3600, cal_due=now_utc + 30 * 86400)],
        approvals=[approval("E99", now_utc - 900)],
        competencies=[competency(WELDER[0], "HW-C-1", now_utc + 86400)],
    )


def setup_config(p: Plant, tmp: Path) -> Path:
    """The plant's config with people, badges, the hci0 receiver in bay 2, the face terminal, the
    ledger key and HW-7 signed in a permits folder; written to `tmp/gw.toml`."""
    key = Ed25519PrivateKey.generate()
    (tmp / "ledger.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    permits = tmp / "permits"
    permits.mkdir()
    (permits / "HW-7.json").write_text(json.dumps(sign_permit(permit_body(time.time()), key)))
    write_hmac_secret(tmp / "ft-bay2.key", bytes(range(32)))
    raw = p.raw
    raw["people"] = [{"id": x[0], "name": x[0]} for x in (WELDER, WATCH)] + [{"id": "E99", "name": "issuer"}]
    raw["badges"] = [{"beacon": f"ibeacon:{UUID}:1:{x[1]}", "person": x[0]} for x in (WELDER, WATCH)]
    raw["receivers"] = [{"id": "gw-hci0", "zone": "bay-2", "kind": "bluez", "adapter": "hci0"}]
    raw["presence"] = {"absent_after_s": 3.0, "switch_hold_s": 1.0}
    raw["face_terminals"] = [
        {"id": "ft-bay2", "zone": "bay-2", "alg": "hmac-sha256", "key_file": str(tmp / "ft-bay2.key")}
    ]
    raw["ledger"] = {"public_key_file": str(tmp / "ledger.pub")}
    raw["permits"] = {"dir": str(permits)}
    # Site rule: hot work stops at 5 %LEL, below the 10 %LEL alarm 1 (which latches until acknowledged).
    next(s for s in raw["signals"] if s["id"] == "bay2_lel")["thresholds"] = {"hot_work_max": 5.0}
    return p.write(tmp / "gw.toml")


class Crew:
    """The welder and the fire watch in bay 2 (RSSI wobbles: BlueZ reports only changes)."""

    def __init__(self, sim: MockBluezBadges) -> None:
        self.sim = sim
        self.paths = {
            x[0]: sim.add_badge("hci0", x[2], manufacturer_data={0x004C: ibeacon_frame(UUID, 1, x[1])}, rssi=-58)
            for x in (WELDER, WATCH)
        }
        self.present = {WELDER[0], WATCH[0]}

    async def run(self) -> None:
        flip = 0
        while True:
            flip ^= 1
            for pid in list(self.present):
                await asyncio.to_thread(self.sim.set_rssi, self.paths[pid], -58 - flip)
            await asyncio.sleep(0.4)


@contextlib.asynccontextmanager
async def crew_walking(sim: MockBluezBadges) -> AsyncIterator[Crew]:
    """The welder and the fire watch in bay 2, heard by hci0 (badges added to the adapter now)."""
    crew = Crew(sim)
    task = asyncio.create_task(crew.run())
    try:
        yield crew
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # the adapter may be gone under it
            await task


async def face(term: FaceTerminalSim, port: int) -> int:
    """The welder verified at the bay's face terminal: the HTTP status of the post."""
    async with aiohttp.ClientSession() as http:
        status, _ = await term.post(http, f"http://127.0.0.1:{port}/face/events", term.event(WELDER[0]))
        return status


async def api_state(port: int) -> dict[str, Any]:
    """/api/state of the daemon on `port` (it must answer 200)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


def hw7_checklist(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """HW-7's checklist in a state document, by condition ({} while the permit is not shown)."""
    permit = next((x for x in state["permits"] if x["id"] == "HW-7"), None)
    return {c["condition"]: c for c in permit["checklist"]} if permit else {}


async def all_but_face(port: int) -> bool:
    """Every condition of HW-7 holds except the face verification (and the re-arm it gives)."""
    try:
        c = hw7_checklist(await api_state(port))
    except aiohttp.ClientError:  # the status server is not listening yet
        return False
    return bool(c) and all(x["ok"] for name, x in c.items() if name not in ("face_verified", "rearm"))
