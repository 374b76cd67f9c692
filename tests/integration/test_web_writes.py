"""Writes on the real daemon's status server: refused without a session, done with an operator
login and CSRF token, and every attempt audited (who, what, when)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.app.daemon import Daemon
from gateway.status.auth import hash_password
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


async def test_ack_refused_without_login_then_done_by_an_operator_and_audited(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        p.raw["status"]["users"] = [
            {"user": "otto", "role": "operator", "password_hash": hash_password("correct horse")},
            {"user": "vera", "role": "viewer", "password_hash": hash_password("battery staple")},
        ]
        d = Daemon(p.config())
        run = asyncio.create_task(d.run())
        base = f"http://127.0.0.1:{p.http_port}"
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
            p.tank.set_value("o2", 19.0)
            await wait_for(lambda: p.relay.coils[HORN], 5)
            p.tank.set_value("o2", 20.9)
            await wait_for(lambda: d.state.signals["t101_o2"].value > 20, 5)
            ack = {"zone": "tank-t101", "target": "*"}
            async with aiohttp.ClientSession() as anon:
                async with anon.post(f"{base}/api/ack", json=ack) as r:
                    assert r.status == 401
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:  # an IP host
                async with viewer.post(f"{base}/api/login", json={"user": "vera", "password": "battery staple"}) as r:
                    assert r.status == 200
                async with viewer.get(f"{base}/api/session") as r:
                    csrf = (await r.json())["csrf"]
                async with viewer.post(f"{base}/api/ack", json=ack, headers={"X-CSRF-Token": csrf}) as r:
                    assert r.status == 403  # a viewer may look, not acknowledge
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as op:
                async with op.post(f"{base}/api/login", json={"user": "otto", "password": "wrong"}) as r:
                    assert r.status == 401
                async with op.post(f"{base}/api/login", json={"user": "otto", "password": "correct horse"}) as r:
                    assert r.status == 200
                async with op.post(f"{base}/api/ack", json=ack) as r:
                    assert r.status == 403  # no CSRF token
                async with op.get(f"{base}/api/session") as r:
                    csrf = (await r.json())["csrf"]
                async with op.post(f"{base}/api/ack", json=ack, headers={"X-CSRF-Token": csrf}) as r:
                    assert r.status == 202
                # A body that cannot even be decoded (found by the API fuzzer: it answered 500).
                bad = {"X-CSRF-Token": csrf, "Content-Encoding": "gzip", "Content-Type": "application/json"}
                async with op.post(f"{base}/api/ack", data=b"\x00\x00", headers=bad) as r:
                    assert r.status == 400, await r.text()
            await wait_for(lambda: p.relay.coils[PERMISSIVE] and not p.relay.coils[HORN], 5, what="cleared by ack")
            assert d.state.signals["t101_o2"].acked_by == "otto"
            audit = tmp_path / "state" / "audit.jsonl"
            await wait_for(lambda: audit.exists() and "web_write" in audit.read_text(), 5)
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
        writes = [json.loads(x)["record"] for x in audit.read_text().splitlines()]
        writes = [w for w in writes if w["kind"] == "web_write" and w["action"] == "ack"]
        assert [(w["who"], w["ok"]) for w in writes] == [
            ("-", False),
            ("vera", False),
            ("otto", False),
            ("otto", True),
            ("otto", False),
        ]  # "-": nobody logged in; the last one is the undecodable body
        assert all(w["utc"] for w in writes)
