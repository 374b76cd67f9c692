"""A suspended permit cannot be rolled back (issue 15.3), over the real daemon: BLE badges on a
mock BlueZ, a signing face terminal, signed permits posted by a logged-in operator, a restart.

The acceptance run's scenario: permit v1 ACTIVE -> released; signed v2 SUSPENDED -> dropped;
the genuine v1 posted again -> it was accepted and a fresh face energized ignition on a gas
test older than the suspension. Now v1 is refused (409), survives no restart, and only a newer
revision with a gas test after the suspension resumes the permit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.ledger.permit_codec import sign_permit
from firmware_sim.ble_badges import MockBluezBadges
from firmware_sim.face_terminal import FaceTerminalSim
from gateway.app.daemon import Daemon
from gateway.config.loader import load
from gateway.status.auth import hash_password
from rules.interlock_checks import FACE_HELD
from rules.permit import PermitState
from tests.support.hotwork import all_but_face, crew_walking, face, permit_body, setup_config
from tests.support.plant import IGNITION, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


class Operator:
    """A logged-in operator session on the status server (cookie + CSRF token)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base, self.csrf = http, base, ""

    async def login(self) -> None:
        async with self.http.post(f"{self.base}/api/login", json={"user": "otto", "password": "correct horse"}) as r:
            assert r.status == 200
        async with self.http.get(f"{self.base}/api/session") as r:
            self.csrf = (await r.json())["csrf"]

    async def post_permit(self, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.base}/api/permits", json=doc, headers={"X-CSRF-Token": self.csrf}) as r:
            return r.status, await r.json()


@contextlib.asynccontextmanager
async def operator(port: int) -> AsyncIterator[Operator]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        op = Operator(http, f"http://127.0.0.1:{port}")
        await wait_for(lambda: _listening(port), 15, interval=0.2, what="status server up")
        await op.login()
        yield op


async def _listening(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


async def steps_without_release(d: Daemon, p: Any, n: int = 30) -> None:
    """`n` engine steps pass and ignition stays de-energized (absence proven by steps, not time)."""
    start = d.state.steps
    await wait_for(lambda: d.state.steps >= start + n, 10, what=f"{n} engine steps")
    assert not p.relay.coils[IGNITION]


async def test_a_suspended_permit_cannot_be_rolled_back_by_its_older_revision(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg_path = setup_config(p, tmp_path)
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / "ledger.pub").write_bytes(pub)
        now = time.time()
        v1 = permit_body(now) | {"revision": 1}
        (tmp_path / "permits" / "HW-7.json").write_text(json.dumps(sign_permit(v1, key)))
        otto = {"user": "otto", "role": "operator", "password_hash": hash_password("correct horse")}
        p.raw["status"]["users"] = [otto]
        p.raw["permits"] = {"dir": str(tmp_path / "permits")}
        p.raw["ledger"] = {"public_key_file": str(tmp_path / "ledger.pub")}
        cfg_path = p.write(cfg_path)
        p.bay.set_dates(int(now) - 3600, int(now) - 30 * 86400)
        term = FaceTerminalSim("ft-bay2", "hmac-sha256", bytes(range(32)))

        async with crew_walking(bluez):
            await _first_life(cfg_path, tmp_path, p, term, key, v1)
            # Restart on the same state directory: the permits folder still holds v1; it is refused.
            marks = json.loads((tmp_path / "state" / "permit-revisions.json").read_text())
            assert marks["HW-7"]["revision"] == 2 and marks["HW-7"]["state"] == "suspended"
            await _second_life(cfg_path, tmp_path, p, term, key, v1)
        assert not p.relay.coils[IGNITION]


async def _first_life(cfg_path: Path, tmp_path: Path, p: Any, term: FaceTerminalSim, key: Ed25519PrivateKey,
                      v1: dict[str, Any]) -> None:  # fmt: skip
    port = p.http_port
    d = Daemon(load(cfg_path), base=tmp_path)
    run = asyncio.create_task(d.run())
    try:
        async with operator(port) as op:
            await wait_for(lambda: all_but_face(port), 20, interval=0.2, what="all but the face hold")
            assert await face(term, port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released on v1")
            # What the face covers during a release, as the page shows it (issue 15.5).
            await wait_for(lambda: _face_reason(port, FACE_HELD), 5, what="checklist: face held since release")

            v2 = suspended(v1)
            assert (await op.post_permit(sign_permit(v2, key)))[0] == 202
            await wait_for(lambda: not p.relay.coils[IGNITION], 5, what="dropped on v2 suspended")

            # The genuine v1 again: refused, and the permit stays suspended.
            status, body = await op.post_permit(sign_permit(v1, key))
            assert status == 409 and body["reason"] == "revision_older", body
            assert "revision 1 is older than revision 2" in body["detail"]
            assert d.state.plant.permits["HW-7"].permit.state is PermitState.SUSPENDED
            assert await face(term, port) == 202  # a fresh face changes nothing
            await steps_without_release(d, p)

            # v3 resumes without a gas test after the suspension: refused too.
            status, body = await op.post_permit(sign_permit(v2 | {"revision": 3, "state": "active"}, key))
            assert status == 409 and body["reason"] == "resume_without_gas_test", body
            # The same revision 2 with other content: a conflict.
            status, body = await op.post_permit(sign_permit(v2 | {"grade": "first"}, key))
            assert status == 409 and body["reason"] == "revision_conflict", body
            await steps_without_release(d, p)
    finally:
        d.request_stop()
        assert await asyncio.wait_for(run, 20) == 0


async def _second_life(cfg_path: Path, tmp_path: Path, p: Any, term: FaceTerminalSim, key: Ed25519PrivateKey,
                       v1: dict[str, Any]) -> None:  # fmt: skip
    port = p.http_port
    d = Daemon(load(cfg_path), base=tmp_path)
    run = asyncio.create_task(d.run())
    try:
        async with operator(port) as op:
            await wait_for(lambda: d.ready, 10, what="ready after restart")
            assert "HW-7" not in d.state.plant.permits  # v1 from the folder was refused at start
            assert d.state.rejected.get("permit_revision_older") == 1
            assert await face(term, port) == 202
            await steps_without_release(d, p)

            # The ledger's way back: a newer revision with a gas test taken after the suspension.
            fresh = int(time.time()) + 1
            v4 = suspended(v1) | {"revision": 4, "state": "active",
                                  "gas_tests": [v1["gas_tests"][0] | {"at": fresh, "bump_at": fresh - 3600}]}
            status, body = await op.post_permit(sign_permit(v4, key))
            assert status == 202, body
            await wait_for(lambda: all_but_face(port), 20, interval=0.2, what="all but the face hold on v4")
            assert await face(term, port) == 202
            await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released on v4")
    finally:
        d.request_stop()
        assert await asyncio.wait_for(run, 20) == 0


async def _face_reason(port: int, reason: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
        permit = next((x for x in (await r.json())["permits"] if x["id"] == "HW-7"), None)
    items = {c["condition"]: c for c in permit["checklist"]} if permit else {}
    return bool(items) and items["face_verified"] == {"condition": "face_verified", "ok": True, "reason": reason}


def suspended(v1: dict[str, Any]) -> dict[str, Any]:
    """v2: the ledger suspends the permit (history records when)."""
    at = int(v1["valid_from"]) + 590  # after v1's gas test (valid_from + 300), before now
    return v1 | {"revision": 2, "state": "suspended",
                 "history": [{"from": "active", "to": "suspended", "at": at, "reason": "crew break"}]}  # fmt: skip
