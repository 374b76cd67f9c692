"""A simulated face-ID terminal: signs numbered events and pushes them over HTTP or MQTT.

It does its own canonicalisation and signing (as a terminal vendor would, from the
documented wire format in drivers/face/codec.py) rather than calling the gateway's code,
so a mismatch between the two shows up in the tests.

Knobs (`Fault`) produce bad events on purpose: wrong key, replayed sequence, stale time
(past or future), wrong verify mode, unknown terminal, garbage bytes, oversize body, and
the pre-RFC 8785 signed form of an old firmware.

    python -m firmware_sim.face_terminal keys --alg ed25519 --out /tmp/ft-1
    python -m firmware_sim.face_terminal send --terminal ft-1 --alg ed25519 \\
        --key /tmp/ft-1/ft-1.key --http http://127.0.0.1:8080/face/events --person E1 --count 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class Fault(StrEnum):
    """What to get wrong in the next event."""

    NONE = "none"
    WRONG_KEY = "wrong_key"
    REPLAY = "replay"
    """Send the previous event again, byte for byte."""
    STALE_PAST = "stale_past"
    STALE_FUTURE = "stale_future"
    WRONG_MODE = "wrong_mode"
    UNKNOWN_TERMINAL = "unknown_terminal"
    GARBAGE = "garbage"
    OVERSIZE = "oversize"
    OLD_CANON = "old_canon"
    """Sign the pre-RFC 8785 form (no "canon", Python's sorted-key json.dumps), as an old firmware did."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def canonical(body: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes of a flat event body, from the wire format in drivers/face/codec.py.

    Members sorted by the UTF-16 code units of their names; values (strings, integers within
    +-(2**53 - 1), booleans, null: the only ones the wire format allows) are written as
    json.dumps(ensure_ascii=False) writes them, which for these is RFC 8785's form. Written
    here rather than taken from the gateway, as a terminal vendor would.
    """
    for k, v in body.items():
        if isinstance(v, float | list | dict) or (isinstance(v, int) and abs(v) > 2**53 - 1):
            raise ValueError(f"{k}: {type(v).__name__} {v!r:.20} is not allowed in a signed face event")
    members = sorted(body.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    text = ",".join(json.dumps(k, ensure_ascii=False) + ":" + json.dumps(v, ensure_ascii=False) for k, v in members)
    return ("{" + text + "}").encode("utf-8")


def write_hmac_secret(path: Path, secret: bytes | None = None) -> bytes:
    """Write a shared secret as hex text (the gateway's key file format); returns it."""
    secret = secret if secret is not None else os.urandom(32)
    path.write_text(secret.hex() + "\n")
    path.chmod(0o600)
    return secret


def write_ed25519_pair(private_path: Path, public_path: Path) -> bytes:
    """Write a fresh Ed25519 pair as PEM; returns the 32-byte private seed for the simulator."""
    key = Ed25519PrivateKey.generate()
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def read_signing_key(path: Path, alg: str) -> bytes:
    """The simulator's own key: hex HMAC secret, or an Ed25519 private key PEM -> raw seed."""
    if alg == "hmac-sha256":
        return bytes.fromhex(path.read_text().strip())
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path}: not an Ed25519 private key")
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


class FaceTerminalSim:
    """One terminal: its id, key, sequence counter and clock."""

    def __init__(
        self,
        terminal: str,
        alg: str,
        signing_key: bytes,
        *,
        seq: int = 0,
        clock: Callable[[], datetime] = _utc_now,
        stale_by_s: float = 120.0,
        seed: int = 0,
    ) -> None:
        """`signing_key`: the HMAC secret, or the 32-byte Ed25519 private seed."""
        if alg not in ("hmac-sha256", "ed25519"):
            raise ValueError(f"alg must be hmac-sha256 or ed25519, got {alg!r}")
        self.terminal = terminal
        self.alg = alg
        self._key = signing_key
        self.seq = seq
        """The last sequence number used; the next event gets seq + 1."""
        self._clock = clock
        self.stale_by_s = stale_by_s
        self._rng = random.Random(seed)
        self._last: bytes | None = None

    def _sign(self, canonical: bytes, key: bytes) -> str:
        if self.alg == "hmac-sha256":
            return hmac.new(key, canonical, hashlib.sha256).hexdigest()
        sig = Ed25519PrivateKey.from_private_bytes(key).sign(canonical)
        return base64.b64encode(sig).decode("ascii")

    def _random_key(self) -> bytes:
        return bytes(self._rng.getrandbits(8) for _ in range(32))

    def event(
        self,
        person: str,
        *,
        fault: Fault = Fault.NONE,
        verify_mode: str = "face",
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """The next event's bytes (numbered, timed and signed), spoiled as `fault` says."""
        if fault is Fault.REPLAY:
            if self._last is None:
                raise ValueError("nothing to replay yet: send one event first")
            return self._last
        if fault is Fault.GARBAGE:
            return bytes(self._rng.getrandbits(8) for _ in range(self._rng.randint(1, 300)))
        t = self._clock()
        if fault is Fault.STALE_PAST:
            t -= timedelta(seconds=self.stale_by_s)
        elif fault is Fault.STALE_FUTURE:
            t += timedelta(seconds=self.stale_by_s)
        self.seq += 1
        body: dict[str, Any] = {
            "terminal": self.terminal + ("-rogue" if fault is Fault.UNKNOWN_TERMINAL else ""),
            "person": person,
            "verify_mode": "card" if fault is Fault.WRONG_MODE else verify_mode,
            "time": t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "seq": self.seq,
            "canon": "jcs",
            "score": "0.97",
            **(extra or {}),
        }
        if fault is Fault.OVERSIZE:
            body["photo"] = "A" * 8192
        if fault is Fault.OLD_CANON:
            del body["canon"]
            signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        else:
            signed = canonical(body)
        key = self._random_key() if fault is Fault.WRONG_KEY else self._key
        body["signature"] = self._sign(signed, key)
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        self._last = raw
        return raw

    @property
    def topic(self) -> str:
        return f"face/{self.terminal}/events"

    async def post(self, session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST one event; returns the HTTP status and the JSON answer."""
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.json(content_type=None)
            return resp.status, answer if isinstance(answer, dict) else {}

    async def publish(self, client: aiomqtt.Client, body: bytes, topic: str | None = None) -> None:
        """Publish one event (QoS 1) on the terminal's topic."""
        await client.publish(topic or self.topic, body, qos=1)


async def _send(args: argparse.Namespace) -> int:
    sim = FaceTerminalSim(args.terminal, args.alg, read_signing_key(Path(args.key), args.alg), seq=args.seq)
    fault = Fault(args.fault)
    if args.http:
        async with aiohttp.ClientSession() as session:
            for _ in range(args.count):
                status, answer = await sim.post(session, args.http, sim.event(args.person, fault=fault))
                print(status, json.dumps(answer))
                await asyncio.sleep(args.interval)
    else:
        parts = urlsplit(args.mqtt)
        async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883) as client:
            for _ in range(args.count):
                await sim.publish(client, sim.event(args.person, fault=fault))
                print("published", sim.topic, sim.seq)
                await asyncio.sleep(args.interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="face_terminal", description="Simulated signing face terminal")
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys", help="write a key (pair) for a terminal")
    k.add_argument("--alg", choices=("hmac-sha256", "ed25519"), required=True)
    k.add_argument("--out", required=True, help="directory")
    k.add_argument("--terminal", default="ft-1")
    s = sub.add_parser("send", help="send events")
    s.add_argument("--terminal", required=True)
    s.add_argument("--alg", choices=("hmac-sha256", "ed25519"), required=True)
    s.add_argument("--key", required=True, help="hex HMAC secret file, or Ed25519 private key PEM")
    s.add_argument("--person", default="E1")
    s.add_argument("--seq", type=int, default=0, help="last sequence number already used")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--interval", type=float, default=1.0)
    s.add_argument("--fault", choices=[f.value for f in Fault], default="none")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--http", help="e.g. http://127.0.0.1:8080/face/events")
    dest.add_argument("--mqtt", help="e.g. mqtt://127.0.0.1:1883")
    args = p.parse_args(argv)
    if args.cmd == "keys":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.alg == "hmac-sha256":
            write_hmac_secret(out / f"{args.terminal}.secret")
            print(f"shared secret (terminal and gateway): {out / f'{args.terminal}.secret'}")
        else:
            write_ed25519_pair(out / f"{args.terminal}.key", out / f"{args.terminal}.pub")
            print(f"terminal: {out / f'{args.terminal}.key'}  gateway: {out / f'{args.terminal}.pub'}")
        return 0
    return asyncio.run(_send(args))


if __name__ == "__main__":
    sys.exit(main())
