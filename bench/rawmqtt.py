"""A minimal MQTT 3.1.1 client over a plain socket, for load generation and counting.

A paced Python publisher on aiomqtt tops out near 8k messages/s on this machine (see
../shared/recipes/README.md), below the rates the throughput search needs; pre-built
QoS 0 PUBLISH packets written in batches reach well over 100k/s, so the generator is
never the bottleneck. Only what the bench needs: CONNECT, SUBSCRIBE (QoS 0), PUBLISH
(QoS 0) and reading PUBLISH packets. 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable


class MqttProtocolError(Exception):
    """The broker answered something this small client does not expect."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"rawmqtt: {what}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def publish_packet(topic: str, payload: bytes) -> bytes:
    """One QoS 0, non-retained PUBLISH packet."""
    body = _str(topic) + payload
    return b"\x30" + _varint(len(body)) + body


def connect_packet(client_id: str, keepalive_s: int = 0) -> bytes:
    """CONNECT, clean session, no credentials (keepalive 0: the broker never times us out)."""
    body = _str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive_s) + _str(client_id)
    return b"\x10" + _varint(len(body)) + body


def connect(port: int, client_id: str, keepalive_s: int = 120) -> socket.socket:
    """Connect (clean session) to 127.0.0.1:port and wait for CONNACK."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id, keepalive_s))
    ack = _read_exact(sock, 4)
    if ack[0] != 0x20 or ack[3] != 0:
        raise MqttProtocolError(f"CONNACK refused: {ack.hex()}")
    return sock


def subscribe(sock: socket.socket, topic_filter: str) -> None:
    body = struct.pack(">H", 1) + _str(topic_filter) + b"\x00"
    sock.sendall(b"\x82" + _varint(len(body)) + body)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise MqttProtocolError("connection closed")
        buf += chunk
    return bytes(buf)


class Reader:
    """Parses the packet stream of a subscriber; calls `on_publish(topic, payload)` per PUBLISH."""

    def __init__(self, on_publish: Callable[[bytes, bytes], None]) -> None:
        self._buf = bytearray()
        self._on_publish = on_publish
        self.publishes = 0

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            head = buf[pos]
            mult, length, i = 1, 0, pos + 1
            while True:
                if i >= end:
                    self._buf = buf[pos:]
                    return
                b = buf[i]
                length += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if i + length > end:
                break
            if head >> 4 == 3:
                tlen = (buf[i] << 8) | buf[i + 1]
                skip = 2 if head & 0x06 else 0  # packet id for QoS > 0
                topic = bytes(buf[i + 2:i + 2 + tlen])
                payload = bytes(buf[i + 2 + tlen + skip:i + length])
                self.publishes += 1
                self._on_publish(topic, payload)
            pos = i + length
        self._buf = buf[pos:]
