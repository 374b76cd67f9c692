"""Secrets are read from files, used, and never shown: not in the logs, /api/state, /metrics,
the audit log or any file of the state directory.

The daemon runs as a real process at debug level against a mosquitto that refuses anonymous
clients (password file made with mosquitto_passwd), the reference ledger that wants a bearer
token, an HMAC-signing face terminal and a status page user. Each secret is *used*
(connected, records accepted, face accepted, login done), so a test that sees none of them
proves they were handled, not merely absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware_sim.face_terminal import FaceTerminalSim, write_hmac_secret
from gateway.status.auth import hash_password
from tests.support.ledger import running_ledger
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, mosquitto, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Secrets:
    def __init__(self) -> None:
        tag = secrets.token_hex(6)
        self.mqtt_password = f"mqtt-pw-{tag}-Xq7"
        self.ledger_token = f"ledger-token-{tag}-Zr9"
        self.hmac_key = secrets.token_bytes(32)
        self.login_password = f"op-login-{tag}-Kd3"
        self.wrong_password = f"not-the-pw-{tag}-Wv5"  # a failed login must not show what was typed either
        self.password_hash = hash_password(self.login_password)

    def strings(self) -> dict[str, str]:
        salt_and_key = self.password_hash.split("$", 4)[4]
        return {
            "mqtt password": self.mqtt_password,
            "ledger token": self.ledger_token,
            "face HMAC key (hex)": self.hmac_key.hex(),
            "face HMAC key (HEX)": self.hmac_key.hex().upper(),
            "login password": self.login_password,
            "failed login password": self.wrong_password,
            "password hash": salt_and_key,
        }


@pytest.fixture
def secret() -> Secrets:
    return Secrets()


@pytest.fixture
def locked_broker(tmp_path: Path, secret: Secrets) -> Iterator[Mosquitto]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (Debian: mosquitto)")
    pw = tmp_path / "mosquitto.passwd"
    subprocess.run([tool, "-b", "-c", str(pw), "gw", secret.mqtt_password], check=True, capture_output=True)
    # `user root`: a broker started as root would otherwise switch to "mosquitto" and not read tmp_path.
    with mosquitto(f"allow_anonymous false\npassword_file {pw}\n" + ("user root\n" if os.geteuid() == 0 else "")) as b:
        yield b


def _leaks(text: str, secret: Secrets) -> list[str]:
    return [name for name, s in secret.strings().items() if s in text]


async def test_secrets_are_read_from_files_used_and_never_shown(
    locked_broker: Mosquitto, tmp_path: Path, secret: Secrets
) -> None:
    # The broker really refuses a client without the password (so "connected" below proves it was used).
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", locked_broker.port, identifier="anon", timeout=5):
            pass

    files = tmp_path / "secrets"
    files.mkdir(mode=0o700)
    (files / "mqtt.pw").write_text(secret.mqtt_password + "\n")
    (files / "ledger.token").write_text(secret.ledger_token + "\n")
    write_hmac_secret(files / "ft-bay2.key", secret.hmac_key)
    for f in files.iterdir():
        f.chmod(0o640)
    state = tmp_path / "state"

    async with running_ledger(token=secret.ledger_token) as ledger, plant(locked_broker.port, state) as p:
        pub = Ed25519PublicKey.from_public_bytes(ledger.public_key)
        (files / "ledger.pub").write_bytes(pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        raw = p.raw
        raw["mqtt"] |= {"username": "gw", "password_file": str(files / "mqtt.pw")}
        raw["ledger"] = {
            "url": ledger.url,
            "token_file": str(files / "ledger.token"),
            "public_key_file": str(files / "ledger.pub"),
            "permit_poll_s": 1.0,
        }
        raw["people"] = [{"id": "E10", "name": "welder"}]
        raw["face_terminals"] = [
            {"id": "ft-bay2", "zone": "bay-2", "alg": "hmac-sha256", "key_file": str(files / "ft-bay2.key")}
        ]
        raw["status"]["users"] = [{"user": "otto", "role": "operator", "password_hash": secret.password_hash}]
        cfg = p.write(tmp_path / "gw.toml")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.app.cli", "--log-level", "debug", "run", "--config", str(cfg),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        captured = asyncio.gather(proc.stdout.read(), proc.stderr.read())  # read to EOF while it runs
        base = f"http://127.0.0.1:{p.http_port}"
        seen: dict[str, str] = {}
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:

                async def get(path: str) -> str:
                    async with http.get(base + path) as r:
                        return await r.text()

                async def mqtt_connected() -> bool:
                    with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
                        return bool(json.loads(await get("/api/state"))["connectivity"]["mqtt"]["connected"])
                    return False

                await wait_for(mqtt_connected, 20, interval=0.2, what="daemon connected to the locked broker")
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")

                # The status page password: a failed and a good login, then an acknowledged alarm.
                async with http.post(
                    f"{base}/api/login", json={"user": "otto", "password": secret.wrong_password}
                ) as r:
                    assert r.status == 401
                async with http.post(
                    f"{base}/api/login", json={"user": "otto", "password": secret.login_password}
                ) as r:
                    assert r.status == 200
                    csrf = (await r.json())["csrf"]
                p.tank.set_value("o2", 18.5)
                await wait_for(lambda: p.relay.coils[HORN], 5, what="alarm")
                p.tank.set_value("o2", 20.9)
                ack = {"zone": "tank-t101", "target": "*"}

                async def acked() -> bool:
                    async with http.post(f"{base}/api/ack", json=ack, headers={"X-CSRF-Token": csrf}) as r:
                        assert r.status == 202
                    await asyncio.sleep(0.2)
                    return bool(p.relay.coils[PERMISSIVE])

                await wait_for(acked, 10, interval=0.3, what="acknowledged and cleared")

                # The ledger token: the hazard reached the ledger, which answers 401 without it.
                await wait_for(lambda: bool(ledger.records("hazards")), 15, what="hazard delivered with the token")
                # The terminal key: a signed face event is accepted.
                term = FaceTerminalSim("ft-bay2", "hmac-sha256", secret.hmac_key)
                status, _ = await term.post(http, f"{base}/face/events", term.event("E10"))
                assert status == 202
                forged = FaceTerminalSim("ft-bay2", "hmac-sha256", b"\x01" * 32, seq=100)
                status, _ = await term.post(http, f"{base}/face/events", forged.event("E10"))
                assert status in (401, 403, 422)

                for path in ("/api/state", "/metrics", "/api/session", "/healthz", "/"):
                    seen[path] = await get(path)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            out, err = await asyncio.wait_for(captured, 10)

    logs = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
    assert proc.returncode == 0, logs[-3000:]
    # The logs are there and say what happened (else "no secret in them" would prove nothing).
    for evt in ("mqtt_connected", "login_failed", '"login"', "status_page_listening"):
        assert evt in logs, f"{evt} not logged; the log capture is broken:\n{logs[-2000:]}"
    assert not _leaks(logs, secret), f"secrets in the logs: {_leaks(logs, secret)}"
    for path, text in seen.items():
        assert not _leaks(text, secret), f"secrets in {path}: {_leaks(text, secret)}"
    audit = state / "audit.jsonl"
    assert "web_write" in audit.read_text() and "login" in audit.read_text()
    for f in sorted(x for x in state.rglob("*") if x.is_file()):  # audit log, outbox, state file, sequences
        text = f.read_bytes().decode("latin-1")
        assert not _leaks(text, secret), f"secrets in {f.name}: {_leaks(text, secret)}"


def test_face_mqtt_source_uses_the_broker_credentials(tmp_path: Path, secret: Secrets) -> None:
    from gateway.config.loader import parse
    from gateway.core.inputs import face_gate, face_mqtt
    from tests.support.clock import FakeClock
    from tests.support.plant import DEMO, raw_config

    (tmp_path / "mqtt.pw").write_text(secret.mqtt_password + "\n")
    write_hmac_secret(tmp_path / "ft.key", secret.hmac_key)
    raw = raw_config(1, 2, 3, 1883, 8080, tmp_path / "state")
    raw["mqtt"] |= {"username": "gw", "password_file": str(tmp_path / "mqtt.pw")}
    raw["face_terminals"] = [{"id": "ft", "zone": "bay-2", "key_file": str(tmp_path / "ft.key")}]
    cfg = parse(raw, "test", DEMO.parent)

    gate = face_gate(cfg, tmp_path, tmp_path / "state", lambda ev: None, FakeClock())
    # A fix may give face_mqtt the config's base directory, and keep the credentials beside the url.
    build: Any = face_mqtt
    src = build(cfg, gate, tmp_path) if "base" in inspect.signature(build).parameters else build(cfg, gate)
    assert src is not None
    user = getattr(src, "username", None) or src.broker.username
    password = getattr(src, "password", None) or src.broker.password
    assert (user, password) == ("gw", secret.mqtt_password)
