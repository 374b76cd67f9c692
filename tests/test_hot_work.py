"""The hot-work interlock over the real protocols, with the daemon as a real process.

Modbus gas simulator (bay 2), BLE badges through bleak against the mock BlueZ, a signed
permit (Ed25519, as the ledger signs it), signed face events (HMAC) posted by a simulated
terminal, and the relay module simulator with its host watchdog. Release happens; LEL
rising drops the relay within one poll period + 50 ms; the operator walking out drops it;
kill -9 of the daemon lets the module's own watchdog drop the coil within its timeout; after
a restart the relay stays off until every condition holds again (a new face verification).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.ledger.permit_codec import sign_permit
from firmware_sim.ble_badges import MockBluezBadges, ibeacon_frame
from firmware_sim.face_terminal import FaceTerminalSim, write_hmac_secret
from tests.support.bluez import bluez_with_adapter
from tests.support.plant import IGNITION, Plant, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
UUID = "e5ca1ade-f007-ba11-0000-000000000000"
WELDER, WATCH = ("E10", 10, "C0:00:00:00:00:10"), ("E20", 20, "C0:00:00:00:00:20")
POLL_S = 0.5


@pytest.fixture
def bluez() -> Iterator[MockBluezBadges]:
    with bluez_with_adapter("hci0") as sim:
        yield sim


def permit_body(now_utc: float) -> dict[str, Any]:
    return {
        "permit_id": "HW-7",
        "revision": 1,
        "type": "hot_work",
        "grade": "second",
        "site_id": "demo-plant",
        "zone_id": "bay-2",
        "state": "active",
        "valid_from": int(now_utc - 600),
        "valid_to": int(now_utc + 4 * 3600),
        "people": [
            {"id": WELDER[0], "role": "operator"},
            {"id": WATCH[0], "role": "fire_watch"},
            {"id": "E99", "role": "issuer"},
        ],
        "gas_tests": [
            {
                "at": int(now_utc - 300),
                "tester": "E99",
                "o2": 20.9,
                "lel": 0,
                "h2s": 0,
                "co": 0,
                "instrument": "GX-1",
                "bump_at": int(now_utc - 3600),
                "cal_due": int(now_utc + 30 * 86400),
            }
        ],
        "approvals": [{"signer": "E99", "role": "issuer", "at": int(now_utc - 900), "signature": "x"}],
        "competencies": [
            {"person": WELDER[0], "certificate_id": "HW-C-1", "kind": "hot_work", "expires": int(now_utc + 86400)}
        ],
    }


def setup_config(p: Plant, tmp: Path) -> Path:
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


async def start_daemon(cfg: Path, bus: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.app.cli", "--log-level", "warning", "run", "--config", str(cfg),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def face(term: FaceTerminalSim, port: int) -> int:
    async with aiohttp.ClientSession() as http:
        status, _ = await term.post(http, f"http://127.0.0.1:{port}/face/events", term.event(WELDER[0]))
        return status


async def checklist(port: int) -> dict[str, bool]:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
            s = await r.json()
    except aiohttp.ClientError:
        return {}
    permits = [x for x in s.get("permits", []) if x["id"] == "HW-7"]
    return {c["condition"]: c["ok"] for c in permits[0].get("checklist", [])} if permits else {}


async def test_release_drop_on_lel_walk_out_kill9_and_restart(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    bus = os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    async with plant(broker.port, tmp_path) as p:
        cfg = setup_config(p, tmp_path)
        p.bay.set_dates(int(time.time()) - 3600, int(time.time()) - 30 * 86400)  # bump-tested today, calibrated
        crew = Crew(bluez)
        crew_task = asyncio.create_task(crew.run())
        term = FaceTerminalSim("ft-bay2", "hmac-sha256", bytes(range(32)))
        proc = await start_daemon(cfg, bus)
        try:
            # Everything but the face holds: no release yet.
            await wait_for(lambda: checklist(p.http_port), 20, interval=0.3, what="permit loaded and checklist shown")
            await wait_for(
                lambda: _ok_except_face(checklist(p.http_port)), 15, interval=0.3, what="all but the face hold"
            )
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="ignition released")

            # LEL rises past the hot-work limit: the relay drops within one poll period + 50 ms.
            t0 = time.monotonic()
            p.bay.set_value("lel", 7.0)
            await wait_for(lambda: not p.relay.coils[IGNITION], 5, what="drop on LEL")
            drop = next(c for c in reversed(p.relay.changes) if c.coil == IGNITION and not c.value)
            assert drop.at - t0 <= POLL_S + 0.05, f"drop took {1000 * (drop.at - t0):.0f} ms"
            p.bay.set_value("lel", 0.0)

            # Re-arm needs a new face; then the operator walks out: drop.
            await steps_pass(p.http_port, 3 * int(POLL_S / 0.1))  # three polls' worth of engine ticks
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released again after a fresh face")
            crew.present.discard(WELDER[0])
            await wait_for(lambda: not p.relay.coils[IGNITION], 10, what="drop when the operator walks out")
            crew.present.add(WELDER[0])
            await wait_for(lambda: _ok_except_face(checklist(p.http_port)), 15, interval=0.3)
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released again")

            # kill -9: the relay module's own watchdog drops the coil within its timeout (1 s).
            t_kill = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await wait_for(lambda: not p.relay.coils[IGNITION], 3, what="module watchdog drop")
            wd = next(c for c in reversed(p.relay.changes) if c.coil == IGNITION and not c.value)
            assert wd.cause == "watchdog" and wd.at - t_kill <= 1.0 + 0.3

            # Restart: the relay stays off until every condition holds again (a new face).
            proc = await start_daemon(cfg, bus)
            await wait_for(lambda: _ok_except_face(checklist(p.http_port)), 20, interval=0.3)
            await steps_pass(p.http_port, 10)  # the engine decided again with everything but the face
            assert not p.relay.coils[IGNITION]
            assert await face(term, p.http_port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released after restart and a new face")
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 15)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            crew_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await crew_task
        assert not p.relay.coils[IGNITION]


async def steps_pass(port: int, n: int) -> None:
    """`n` more engine steps of the daemon on `port` (absence proven by steps, not by time)."""

    async def steps() -> int:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
            return int((await r.json())["engine"]["steps"])

    start = await steps()

    async def done() -> bool:
        return await steps() >= start + n

    await wait_for(done, 10, interval=0.05, what=f"{n} engine steps")


async def _ok_except_face(c: Any) -> bool:
    items = await c
    return bool(items) and all(ok for name, ok in items.items() if name not in ("face_verified", "rearm"))
