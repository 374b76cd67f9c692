"""A small MQTT 3.1.1 subscriber on an asyncio Protocol: the input path's transport.

Why not aiomqtt here (it stays for everything the gateway publishes): paho reads a packet
with several `recv` calls and aiomqtt hands each message through a queue and a Message
object. Profiled on this machine, receiving alone cost 37 us per message and saturated a
core below 20,000 messages/s; parsing whole socket reads in one pass costs ~7 us
(docs/performance.md). The input needs only a small part of the protocol, and that part is
here: CONNECT (clean session, user/password, keepalive), SUBSCRIBE, PUBLISH at QoS 0 and 1
(PUBACK sent on receipt), PINGREQ/PINGRESP, DISCONNECT, over TCP or TLS.

Protocol violations, a refused CONNECT, a missing PINGRESP and a lost connection all raise
`WireError` from the `Connection` methods; the caller reconnects. A packet longer than
`max_packet` is a violation (the connection is closed rather than buffering without end).
Reading pauses while more than `high_water` messages wait for the consumer, so a slow
consumer pushes back on the broker (TCP) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, cast

MAX_PACKET: Final = 32 * 1024 * 1024
"""Largest packet accepted (a 1.5 MB waveform frame fits with room)."""
HIGH_WATER: Final = 20_000
"""Messages waiting for the consumer before reading pauses (resumes below half)."""

CONNACK_CODES: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class WireError(Exception):
    """The connection is unusable (refused, lost, or the broker broke the protocol)."""


@dataclass(frozen=True, slots=True)
class Publish:
    """One received PUBLISH. `topic` is None when its bytes were not UTF-8 (a protocol error
    the caller counts and refuses, rather than closing the connection for everyone)."""

    topic: str | None
    payload: bytes
    retain: bool
    qos: int


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError(f"string of {len(b)} bytes does not fit an MQTT string")
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id: str, keepalive_s: int, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    tail = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        tail += _utf8(username)
        if password is not None:
            flags |= 0x40
            tail += _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive_s) + tail
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(packet_id: int, subs: list[tuple[str, int]]) -> bytes:
    body = struct.pack(">H", packet_id) + b"".join(_utf8(f) + bytes([q]) for f, q in subs)
    return b"\x82" + _varint(len(body)) + body


class _Protocol(asyncio.Protocol):
    def __init__(self, high_water: int, max_packet: int) -> None:
        self.messages: deque[Publish] = deque()
        self.wake = asyncio.Event()
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.subacks: dict[int, asyncio.Future[bytes]] = {}
        self.closed: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self.last_heard = asyncio.get_running_loop().time()
        self._buf = bytearray()
        self._high = high_water
        self._max = max_packet
        self._paused = False

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's is always one

    def data_received(self, data: bytes) -> None:
        self.last_heard = asyncio.get_running_loop().time()
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        got = False
        try:
            while end - pos >= 2:
                head = buf[pos]
                length, mult, i, complete = 0, 1, pos + 1, False
                while i < end:
                    b = buf[i]
                    i += 1
                    length += (b & 0x7F) * mult
                    if not b & 0x80:
                        complete = True
                        break
                    mult <<= 7
                    if mult > 1 << 21:
                        raise WireError("malformed remaining length (more than 4 bytes)")
                if not complete:
                    break  # the length itself is not all here yet
                if length > self._max:
                    raise WireError(f"packet of {length} bytes exceeds the limit of {self._max}")
                if i + length > end:
                    break
                kind = head >> 4
                if kind == 3:
                    self._publish(head, buf, i, i + length)
                    got = True
                else:
                    self._control(kind, bytes(buf[i : i + length]))
                pos = i + length
        except WireError as exc:
            self._fail(exc)
            return
        if pos:
            del buf[:pos]
        if got:
            self.wake.set()
            if not self._paused and len(self.messages) >= self._high and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()

    def _publish(self, head: int, buf: bytearray, start: int, end: int) -> None:
        qos = (head >> 1) & 0x03
        if qos == 3:
            raise WireError("PUBLISH with QoS 3")
        if qos == 2:
            raise WireError("PUBLISH with QoS 2 (subscriptions ask for at most 1)")
        if end - start < 2:
            raise WireError("PUBLISH too short")
        tlen = (buf[start] << 8) | buf[start + 1]
        p = start + 2 + tlen
        if p > end or (qos and p + 2 > end):
            raise WireError("PUBLISH topic longer than the packet")
        try:
            topic: str | None = buf[start + 2 : p].decode()
        except UnicodeDecodeError:
            topic = None
        if qos:
            if self.transport is not None:
                self.transport.write(b"\x40\x02" + bytes(buf[p : p + 2]))  # PUBACK with its packet id
            p += 2
        self.messages.append(Publish(topic, bytes(buf[p:end]), bool(head & 0x01), qos))

    def _control(self, kind: int, body: bytes) -> None:
        if kind == 2:  # CONNACK
            if len(body) != 2:
                raise WireError("malformed CONNACK")
            if not self.connack.done():
                self.connack.set_result(body[1])
        elif kind == 9:  # SUBACK
            if len(body) < 3:
                raise WireError("malformed SUBACK")
            fut = self.subacks.pop(struct.unpack(">H", body[:2])[0], None)
            if fut is not None and not fut.done():
                fut.set_result(body[2:])
        elif kind == 13:  # PINGRESP
            pass
        else:
            raise WireError(f"unexpected packet type {kind} from the broker")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(WireError(f"connection lost: {exc}" if exc else "connection closed by the broker"))

    def _fail(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
        for fut in (self.connack, *self.subacks.values()):
            if not fut.done():
                fut.set_exception(self.closed)
                fut.exception()  # retrieved: nobody may be waiting any more
        self.subacks.clear()
        self.wake.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def resume_if_drained(self) -> None:
        if self._paused and len(self.messages) <= self._high // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()


class Connection:
    """One connected, subscribed session. Use `open()`; `close()` is safe to call twice."""

    def __init__(self, proto: _Protocol, keepalive_s: int) -> None:
        self._p = proto
        self._keepalive_s = keepalive_s
        self._next_id = 1
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        keepalive_s: int,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        high_water: int = HIGH_WATER,
        max_packet: int = MAX_PACKET,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        made: list[_Protocol] = []

        def factory() -> _Protocol:
            made.append(_Protocol(high_water, max_packet))
            return made[-1]

        try:
            async with asyncio.timeout(timeout_s):
                _, proto = await loop.create_connection(
                    factory,
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
                if proto.transport is None:
                    raise ConnectionError(f"mqtt {host}:{port}: connected without a transport")
                sock = proto.transport.get_extra_info("socket")
                if sock is not None:  # PUBACKs and pings are tiny: never hold them back (Nagle)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                proto.transport.write(connect_packet(client_id, keepalive_s, username, password))
                code = await proto.connack
        except BaseException as exc:
            for pr in made:  # connected but not accepted (timeout, refused, cancelled): do not leak the socket
                if pr.transport is not None and not pr.transport.is_closing():
                    pr.transport.abort()
            if isinstance(exc, TimeoutError):
                raise WireError(f"no CONNACK from {host}:{port} within {timeout_s:g} s") from exc
            if isinstance(exc, OSError | ssl.SSLError):
                raise WireError(f"cannot connect to {host}:{port}: {exc}") from exc
            raise
        conn = cls(proto, keepalive_s)
        if code != 0:
            conn.close()
            raise WireError(f"broker refused the connection: {CONNACK_CODES.get(code, f'code {code}')}")
        if keepalive_s > 0:
            conn._pinger = asyncio.create_task(conn._ping(), name="mqtt_in[ping]")
        return conn

    async def subscribe(self, subs: list[tuple[str, int]], timeout_s: float = 10.0) -> list[int]:
        """Subscribe; returns the granted codes (0-2, or 0x80 for a refusal) in order."""
        p = self._p
        if p.closed is not None or p.transport is None:
            raise WireError(f"not connected: {p.closed}")
        pid = self._next_id
        self._next_id = self._next_id % 0xFFFF + 1
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        p.subacks[pid] = fut
        p.transport.write(subscribe_packet(pid, subs))
        try:
            async with asyncio.timeout(timeout_s):
                codes = await fut
        except TimeoutError as exc:
            raise WireError(f"no SUBACK within {timeout_s:g} s") from exc
        if len(codes) != len(subs):
            raise WireError(f"SUBACK has {len(codes)} codes for {len(subs)} filters")
        return list(codes)

    async def batch(self, max_n: int) -> list[Publish]:
        """Up to `max_n` received messages, oldest first; waits for at least one. Raises WireError
        once the connection is gone (messages received before that are returned first)."""
        p = self._p
        while not p.messages:
            if p.closed is not None:
                raise WireError(str(p.closed))
            p.wake.clear()
            await p.wake.wait()
        msgs = p.messages
        out = [msgs.popleft() for _ in range(min(max_n, len(msgs)))]
        p.resume_if_drained()
        return out

    async def _ping(self) -> None:
        """PINGREQ every keepalive/2; a broker silent for 1.5 x keepalive is taken as gone."""
        p = self._p
        loop = asyncio.get_running_loop()
        every = self._keepalive_s / 2
        while p.closed is None and p.transport is not None:
            await asyncio.sleep(every)
            if loop.time() - p.last_heard > 1.5 * self._keepalive_s:
                p._fail(WireError(f"no answer from the broker for {1.5 * self._keepalive_s:g} s"))
                return
            if not p.transport.is_closing():
                p.transport.write(b"\xc0\x00")

    def close(self) -> None:
        """DISCONNECT (when still connected) and close."""
        if self._pinger is not None:
            self._pinger.cancel()
        t = self._p.transport
        if t is not None and not t.is_closing():
            t.write(b"\xe0\x00")
            t.close()
        if self._p.closed is None:
            self._p.closed = WireError("closed by us")
