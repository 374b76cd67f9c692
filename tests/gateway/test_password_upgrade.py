"""Passwords (issue 18.5): hashes at N=2^17; an older N=2^14 hash still logs in and is upgraded at
that login, kept in the state directory (the config is never written), used after a restart,
and dropped once the admin puts a new hash in the config. Over the real status server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.status.auth import SCRYPT_N, hash_password, parse_cost, verify_password
from gateway.status.web import StatusServer
from tests.support.procs import free_port
from tests.support.statusview import MinimalView

OLD = hash_password("correct horse battery", n=2**14)


async def login(port: int, password: str) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"http://127.0.0.1:{port}/api/login", json={"user": "otto", "password": password}) as r:
            return r.status


def view(tmp: Path, password_hash: str) -> Any:
    from gateway.config.models import Status

    v = MinimalView()
    v.status = Status(users=({"user": "otto", "role": "operator", "password_hash": password_hash},))
    v.state_dir = tmp
    return v


async def serve(v: Any) -> tuple[StatusServer, int]:
    port = free_port()
    s = StatusServer(v, "127.0.0.1", port)
    await s.start()
    return s, port


@pytest.mark.slow
async def test_an_old_hash_logs_in_and_is_upgraded_and_kept_until_the_config_changes(tmp_path: Path) -> None:
    assert parse_cost(OLD) == 2**14 < SCRYPT_N == 2**17
    s, port = await serve(view(tmp_path, OLD))
    try:
        assert await login(port, "wrong password!!") == 401
        assert not (tmp_path / "password-upgrades.json").exists()  # a failed login upgrades nothing
        assert await login(port, "correct horse battery") == 200
    finally:
        await s.close()
    kept = json.loads((tmp_path / "password-upgrades.json").read_text())["otto"]
    assert kept["from"] == OLD and parse_cost(kept["to"]) == SCRYPT_N
    assert verify_password("correct horse battery", kept["to"])

    # A restart with the same config uses the upgraded hash.
    s, port = await serve(view(tmp_path, OLD))
    try:
        assert s.auth is not None and s.auth.users["otto"].password_hash == kept["to"]
        assert await login(port, "correct horse battery") == 200
    finally:
        await s.close()

    # The admin sets a new password in the config: the kept upgrade no longer applies.
    new = hash_password("a brand new passphrase")
    s, port = await serve(view(tmp_path, new))
    try:
        assert await login(port, "correct horse battery") == 401
        assert await login(port, "a brand new passphrase") == 200
    finally:
        await s.close()
