"""Northbound MQTT: the JSON topic contract under `{prefix}/{site}/{gateway}/`.

- `status` is retained: birth "online" on every connect, the broker's LWT "offline".
- Safety messages (alarm, evacuation, interlock, permit, hazard) are QoS 1, never
  dropped: they wait in order while the broker is away and go out first on reconnect.
- Retained state is re-sent on every reconnect, so a broker that restarted without
  persistence is repopulated with the gateway's current truth.
- Telemetry is QoS 0 and coalesced per topic under back-pressure (latest wins).
Every payload carries the gateway id, a per-gateway sequence number, the UTC time of the
fact and its age in seconds (monotonic-derived, computed when sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import structlog

from gateway.config import Mqtt
from gateway.config.loader import read_secret, resolve_path
from gateway.core.clock import Clock, iso

log = structlog.get_logger("mqtt_out")

NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Socket options for every client the gateway publishes with. paho leaves Nagle's algorithm on:
an alarm written right after a telemetry message then waits for the broker's delayed ACK, up to
40 ms on Linux (measured: alarm -> subscriber p99 44 ms; 2-3 ms without). Brokers should set
it too (mosquitto: set_tcp_nodelay true; docs/deploy.md)."""

TELEMETRY_BURST = 32
"""Telemetry messages sent before the drain lets the other tasks run (profiled; docs/performance.md)."""


@dataclass(slots=True)
class Message:
    topic: str
    body: dict[str, Any]
    at: float
    """Monotonic time of the fact (age is computed from it when sent)."""
    retain: bool
    qos: int
    spilled: bool = False
    """Moved to the spill file (it is sent from there, in order, not re-sent from memory)."""


def broker_tls(cfg: Mqtt, base: Path) -> ssl.SSLContext | None:
    """The TLS context for mqtts:// (CA, and a client certificate for mutual TLS); None for mqtt://."""
    if urlparse(cfg.url).scheme != "mqtts":
        return None
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=str(resolve_path(base, tls.ca_file)) if tls and tls.ca_file else None)
    if tls and tls.cert_file and tls.key_file:
        ctx.load_cert_chain(str(resolve_path(base, tls.cert_file)), str(resolve_path(base, tls.key_file)))
    return ctx


def broker_password(cfg: Mqtt, base: Path) -> str | None:
    """Read from its file each time a connection is made (never logged, never kept in the config)."""
    return read_secret(base, cfg.password_file)


class Spill:
    """Safety messages beyond the in-memory bound, on disk as JSON lines, oldest first.

    The wire payload is written (with its age fixed at spill time relative to UTC), so a
    message read back is sent exactly as it would have been. A file left by a previous run
    is sent first on the next connection: those messages were accepted and must not be lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.count = 0
        if path.exists():
            self.count = sum(1 for _ in path.open("rb"))
            if self.count:
                log.warning("mqtt_spill_found", path=str(path), messages=self.count)

    def push(self, m: Message, utc_offset: float) -> None:
        line = json.dumps(
            {"topic": m.topic, "retain": m.retain, "body": {**m.body, "spilled": True}, "at_utc": m.at + utc_offset}
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.count += 1

    def peek(self) -> tuple[str, bytes, bool] | None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            line = f.readline()
        try:
            d = json.loads(line)
            return d["topic"], json.dumps(d["body"], separators=(",", ":")).encode(), bool(d["retain"])
        except (ValueError, KeyError, TypeError):
            log.error("mqtt_spill_line_unreadable", path=str(self.path), offset=self._offset)
            return None

    def pop(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            self._offset += len(f.readline())
        self.count -= 1
        if self.count <= 0:
            self.path.unlink(missing_ok=True)
            self._offset, self.count = 0, 0


class MqttOut:
    def __init__(
        self,
        cfg: Mqtt,
        site: str,
        gateway: str,
        clock: Clock,
        base: Path = Path("."),
        version: str = "",
        spill: Path | None = None,
        max_in_memory: int = 10_000,
    ) -> None:
        self.cfg = cfg
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self.base = base
        self.version = version
        self.root = f"{cfg.prefix}/{site}/{gateway}"
        self._seq = 0
        self._safety: deque[Message] = deque()
        self._spill = Spill(spill) if spill is not None else None
        self._max_mem = max_in_memory
        self._retained: dict[str, Message] = {}
        self._telemetry: dict[str, tuple[float, str, float]] = {}
        """Signal -> (value, unit, monotonic time of the reading): the latest only, until its round.
        The message is built when sent, so a reading coalesced away costs a dict store and nothing more."""
        self._telemetry_root = self.topic("telemetry", "")
        self._tel_sending: deque[tuple[str, tuple[float, str, float]]] = deque()
        """The round of telemetry being sent (taken from `_telemetry` once per telemetry_interval_s)."""
        self._next_round = 0.0
        self._wake = asyncio.Event()
        self.connected = False
        self.sent = 0
        self.telemetry_coalesced = 0
        self.last_error = ""

    # ---- what the engine asks for -------------------------------------------------
    def topic(self, kind: str, *parts: str) -> str:
        return "/".join((self.root, kind, *parts))

    def _envelope(self, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return {"gateway": self.gateway, "seq": self._seq, "utc": iso(self.clock.utc()), **body}

    def state(self, kind: str, parts: tuple[str, ...], body: dict[str, Any], at: float) -> None:
        """A retained safety state (alarm, evacuation, interlock, permit)."""
        m = Message(self.topic(kind, *parts), self._envelope(body), at, retain=True, qos=1)
        self._retained[m.topic] = m
        self._queue_safety(m)

    def event(self, kind: str, body: dict[str, Any], at: float) -> None:
        """A safety event (hazard): QoS 1, not retained, never dropped."""
        self._queue_safety(Message(self.topic(kind), self._envelope(body), at, retain=False, qos=1))

    def _queue_safety(self, m: Message) -> None:
        """Safety messages are never dropped: past the in-memory bound the oldest go to disk, in order."""
        self._safety.append(m)
        while self._spill is not None and len(self._safety) > self._max_mem:
            old = self._safety.popleft()
            old.spilled = True
            self._spill.push(old, self.clock.utc().timestamp() - self.clock.monotonic())
        self._wake.set()

    def telemetry(self, signal: str, value: float, unit: str, at: float) -> None:
        """A good reading; `at` is its monotonic time (the message's `utc` and `age_s` are taken from it)."""
        tel = self._telemetry
        if not tel:
            self._wake.set()  # with readings pending, the drain is already sending or timed for the next round
        elif signal in tel:
            self.telemetry_coalesced += 1
        tel[signal] = (value, unit, at)

    def _telemetry_wire(self, signal: str, value: float, unit: str, at: float) -> tuple[str, bytes]:
        self._seq += 1
        now = self.clock.monotonic()
        utc = self.clock.utc() - timedelta(seconds=max(0.0, now - at))
        body = {
            "gateway": self.gateway,
            "seq": self._seq,
            "utc": iso(utc),
            "value": value,
            "unit": unit,
            "quality": "good",
            "age_s": round(max(0.0, now - at), 3),
        }
        return self._telemetry_root + signal, json.dumps(body, separators=(",", ":")).encode()

    def retained_active(self, topic: str) -> bool:
        """Whether the last retained state on `topic` was anything but normal/inactive."""
        m = self._retained.get(topic)
        return m is not None and m.body.get("severity", "normal") != "normal"

    @property
    def pending(self) -> int:
        return (len(self._safety) + len(self._telemetry) + len(self._tel_sending)
                + (self._spill.count if self._spill else 0))

    # ---- the connection -------------------------------------------------------------
    def _status(self, online: bool) -> bytes:
        body = {"gateway": self.gateway, "site": self.site, "state": "online" if online else "offline"}
        if online:
            body |= {"utc": iso(self.clock.utc()), "version": self.version}
        return json.dumps(body).encode()

    def _client(self) -> aiomqtt.Client:
        u = urlparse(self.cfg.url)
        return aiomqtt.Client(
            hostname=u.hostname or "127.0.0.1",
            port=u.port or (8883 if u.scheme == "mqtts" else 1883),
            identifier=self.cfg.client_id or f"edge-gateway-{self.site}-{self.gateway}",
            username=self.cfg.username or None,
            password=broker_password(self.cfg, self.base),
            will=aiomqtt.Will(self.topic("status"), self._status(False), qos=1, retain=True),
            keepalive=self.cfg.keepalive_s,
            tls_context=broker_tls(self.cfg, self.base),
            timeout=10,
            socket_options=NO_DELAY,
        )

    def _wire(self, m: Message) -> bytes:
        age = max(0.0, self.clock.monotonic() - m.at)
        return json.dumps({**m.body, "age_s": round(age, 3)}, separators=(",", ":")).encode()

    def _set_connected(self, up: bool, reason: str = "") -> None:
        if up != self.connected:
            self.connected = up
            if up:
                log.info("mqtt_connected", url=self.cfg.url)
            else:
                log.warning("mqtt_disconnected", url=self.cfg.url, reason=reason, pending=self.pending)

    async def run(self) -> None:
        """Forever: connect, send birth and retained state, then drain safety before telemetry."""
        delay = 0.2
        while True:
            try:
                async with self._client() as client:
                    self._set_connected(True)
                    delay = 0.2
                    await client.publish(self.topic("status"), self._status(True), qos=1, retain=True)
                    queued = {id(m) for m in self._safety}
                    spilling = self._spill is not None and self._spill.count > 0
                    for m in list(self._retained.values()):
                        if id(m) not in queued and not (m.spilled and spilling):
                            await client.publish(m.topic, self._wire(m), qos=1, retain=True)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                self._set_connected(False, str(exc))
            except OSError as exc:  # TLS files unreadable, socket errors outside aiomqtt's wrapping
                self.last_error = str(exc)
                self._set_connected(False, str(exc))
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)

    async def _drain(self, client: aiomqtt.Client) -> None:
        burst = 0
        while True:
            if self._spill is not None and self._spill.count:
                item = self._spill.peek()  # spilled messages are older than anything in memory
                if item is not None:
                    topic, payload, retain = item
                    await client.publish(topic, payload, qos=1, retain=retain)
                self._spill.pop()
                self.sent += 1
            elif self._safety:
                m = self._safety[0]
                await client.publish(m.topic, self._wire(m), qos=m.qos, retain=m.retain)
                self._safety.popleft()  # only once the broker acknowledged it (QoS 1)
                self.sent += 1
            elif self._tel_sending or (self._telemetry and self.clock.monotonic() >= self._next_round):
                if not self._tel_sending:
                    # One round: the latest value of every signal that changed since the last round.
                    self._tel_sending.extend(self._telemetry.items())
                    self._telemetry = {}
                    self._next_round = self.clock.monotonic() + self.cfg.telemetry_interval_s
                signal, (value, unit, at) = self._tel_sending.popleft()
                topic, payload = self._telemetry_wire(signal, value, unit, at)
                await client.publish(topic, payload, qos=0)
                self.sent += 1
                burst += 1
                if burst >= TELEMETRY_BURST:
                    # A QoS 0 publish that goes straight to the socket does not yield: without this the
                    # drain would send a whole round in one go while the engine waits.
                    burst = 0
                    await asyncio.sleep(0)
            else:
                self._wake.clear()
                wait = self._next_round - self.clock.monotonic() if self._telemetry else None
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def goodbye(self) -> None:
        """On a clean shutdown: flush safety messages and say offline (a clean disconnect sends no LWT)."""
        try:
            async with asyncio.timeout(3):
                async with self._client() as client:
                    while self._safety:
                        m = self._safety.popleft()
                        await client.publish(m.topic, self._wire(m), qos=m.qos, retain=m.retain)
                    await client.publish(self.topic("status"), self._status(False), qos=1, retain=True)
        except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
            log.warning("mqtt_goodbye_failed", error=str(exc), unsent_safety=len(self._safety))
